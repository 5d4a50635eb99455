/* forkpty() in a server whose connection is its stdin and stdout (inetd's
 * shape: telnetd under tcpserver), after the connection switched: the
 * child's terminal is its stdin, and the server keeps reading the client.
 * glibc's login_tty() moves the terminal onto 0-2 with its internal dup2,
 * past ours: the child's shell read the client's bytes from the ring as
 * its stdin, and the server's next read said EOF (telnetd: no prompt, no
 * command echoed; a helper's sweep).  Both ways: the child reads the line
 * typed on its terminal, the server the client's next line. */
#include <pty.h>

#include "helpers.h"

#define TYPED "typed-on-the-pty\n"
#define CLIENT_LINE "client-line\n"

/* The server: the connection on 0 and 1, two echoes, then forkpty(); the
 * child reads a line from its terminal and sends it back on `report`. */
static void pty_server(int l, int report)
{
    int c = accept(l, NULL, NULL);
    if (c < 0 || dup2(c, 0) != 0 || dup2(c, 1) != 1)
        _exit(2);
    close(c);
    char buf[64];
    for (int i = 0; i < 2; i++) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n <= 0 || write(1, buf, (size_t)n) != n)
            _exit(3);
    }
    int master;
    pid_t child = forkpty(&master, NULL, NULL, NULL);
    if (child < 0)
        _exit(4);
    if (child == 0) {
        ssize_t n = read(0, buf, sizeof buf);
        _exit(n > 0 && write(report, buf, (size_t)n) == n ? 0 : 5);
    }
    if (write(master, TYPED, strlen(TYPED)) != (ssize_t)strlen(TYPED) || child_status(child) != 0)
        _exit(6);
    ssize_t n = read_full(0, buf, strlen(CLIENT_LINE));
    _exit(n == (ssize_t)strlen(CLIENT_LINE) && !memcmp(buf, CLIENT_LINE, (size_t)n) ? 0 : 7);
}

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), report[2];
    CHECK(pipe(report) == 0, "pipe");
    pid_t server = fork();
    CHECK(server >= 0, "fork");
    if (server == 0) {
        close(report[0]);
        pty_server(l, report[1]);
    }
    close(l);
    close(report[1]);
    int fd = connect_to(&addr, len, optin);
    char buf[64];
    for (int i = 0; i < 2; i++)
        CHECK(write_full(fd, "ping", 4) == 4 && read_full(fd, buf, 4) == 4, "%s: echo", mode);
    CHECK(loopfast_fd_is_fast(fd) == optin, "%s: fast %d", mode, loopfast_fd_is_fast(fd));
    ssize_t n = read(report[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("%s: the child read from its terminal: %s", mode, n > 0 ? buf : "(nothing)\n");
    CHECK(n == (ssize_t)strlen(TYPED) && !strcmp(buf, TYPED), "%s: the child read %zd bytes", mode, n);
    CHECK(write_full(fd, CLIENT_LINE, strlen(CLIENT_LINE)) == (ssize_t)strlen(CLIENT_LINE), "write");
    int st = child_status(server);
    CHECK(st == 0, "%s: the server's status %d (7: it did not read the client's line)", mode, st);
    close(report[0]);
    close(fd);
}

int main(void)
{
    alarm(30);
    run(0);
    run(1);
    return 0;
}
