/* The inetd shape: a server forks, puts the accepted socket on descriptors 0
 * and 1 of the child and execs a program that reads stdin and writes stdout.
 * (a) the client writes a line and shuts its write side at once, maybe
 *     before the server accepts, then waits in poll(): the program reads to
 *     EOF and then answers (like sort); the client gets every byte, then EOF.
 * (b) the program answers, closes stdin, then writes once more on stdout:
 *     the client gets it all, not an early EOF.
 * Each case runs over kernel TCP and with both ends opted in, 20 times. */
#include <poll.h>

#include "helpers.h"

static int program(const char *what)
{
    char buf[4096];
    ssize_t n;
    size_t got = 0;   /* sort: everything read, kept in buf */
    if (!strcmp(what, "sort")) {
        while ((n = read(0, buf + got, sizeof buf - got)) > 0)
            got += (size_t)n;
        if (n < 0)
            return 3;
        usleep(10000);   /* the client takes the answer meanwhile */
        return write_full(1, buf, got) == (ssize_t)got ? 0 : 2;
    }
    /* "close-stdin" */
    if (read_full(0, buf, 4) != 4 || write_full(1, "pong", 4) != 4)
        return 4;
    close(0);
    usleep(10000);
    return write_full(1, "late", 4) == 4 ? 0 : 5;
}

/* Accepts one connection and runs this program as `what` on it. */
static pid_t serve(int listener, const char *self, const char *what, int delay_us)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(20);
        usleep((useconds_t)delay_us);
        int c = accept(listener, NULL, NULL);
        if (c < 0 || dup2(c, 0) < 0 || dup2(c, 1) < 0)
            _exit(90);
        close(c);
        close(listener);
        execl(self, self, "program", what, (char *)NULL);
        _exit(91);
    }
    return pid;
}

static void case_shut_at_once(int optin, const char *self, int round)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t srv = serve(l, self, "sort", round % 2 ? 5000 : 0);
    close(l);
    int fd = connect_to(&addr, len, optin);
    char line[64], back[64];
    int n = snprintf(line, sizeof line, "hello %d\n", round);
    CHECK(write_full(fd, line, (size_t)n) == n, "write");
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK(poll(&p, 1, 10000) == 1, "poll");
    ssize_t got = read_full(fd, back, sizeof back);
    CHECK(got == n && !memcmp(back, line, (size_t)n), "%s, round %d: reply of %zd bytes (want %d)",
          optin ? "loopfast" : "kernel", round, got, n);
    CHECK(read(fd, back, 1) == 0, "EOF after the reply");
    CHECK(child_status(srv) == 0, "%s: program status", optin ? "loopfast" : "kernel");
    close(fd);
}

static void case_close_stdin(int optin, const char *self, int round)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t srv = serve(l, self, "close-stdin", 0);
    close(l);
    int fd = connect_to(&addr, len, optin);
    char b[4];
    CHECK(write_full(fd, "ping", 4) == 4, "write");
    CHECK(read_full(fd, b, 4) == 4 && !memcmp(b, "pong", 4), "answer");
    ssize_t got = read_full(fd, b, 4);
    CHECK(got == 4 && !memcmp(b, "late", 4), "%s, round %d: after close(0): %zd bytes",
          optin ? "loopfast" : "kernel", round, got);
    CHECK(read(fd, b, 1) == 0, "EOF");
    CHECK(child_status(srv) == 0, "program status");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "program"))
        return program(argv[2]);
    alarm(28);
    signal(SIGPIPE, SIG_IGN);
    for (int optin = 0; optin <= 1; optin++)
        for (int round = 0; round < 20; round++) {
            case_shut_at_once(optin, argv[0], round);
            case_close_stdin(optin, argv[0], round);
        }
    return 0;
}
