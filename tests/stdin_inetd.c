/* An inetd-style service: the server accepts, forks, puts the connection on
 * the child's stdin and stdout and execs a program that reads requests with
 * fgets(stdin) and answers with printf().  stdio reads with libc's internal
 * read(), which no interposition sees: once the client's writes went to the
 * ring, fgets() waited for ever on TCP.  A server end that lands on stdin
 * (dup2, or inherited there across exec) holds its answer until the program
 * reads it through us; stdio never does, and the connection stays TCP.  A
 * service that reads its stdin with read() (sshd re-exec'd onto its
 * connection) lets the client switch.  80 lines echoed, over kernel TCP
 * and with both ends opted in; the same bytes both ways, and with loopfast
 * the read() service's connection on the rings, the stdio one's not.  The
 * inetd forks, dup2()s and execs, or posix_spawn()s with dup2 file actions
 * (libc's own dup2, not seen: the new image finds the socket on its stdin). */
#include <fcntl.h>
#include <spawn.h>
#include <sys/time.h>

#include "helpers.h"

#define LINES 80   /* past the 64 times a client asks a held answer again (its second may not be) */

/* The exec'd service: echoes lines until EOF. */
static int serve_stdio(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("echo %s", line);
        fflush(stdout);
    }
    return 0;
}

/* The same through read() and write() on stdin's socket. */
static int serve_read(void)
{
    char line[256];
    size_t have = 0;
    for (;;) {
        char *nl = memchr(line, '\n', have);
        if (nl) {
            size_t n = (size_t)(nl - line) + 1;
            if (write_full(1, "echo ", 5) != 5 || write_full(1, line, n) != (ssize_t)n)
                return 1;
            memmove(line, line + n, have - n);
            have -= n;
            continue;
        }
        ssize_t r = read(0, line + have, sizeof line - have);
        if (r <= 0)
            return r < 0;
        have += (size_t)r;
    }
}

extern char **environ;

static void run(const char *self, int optin, int spawn, const char *mode)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {   /* the inetd */
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(2);
        if (spawn) {
            posix_spawn_file_actions_t fa;
            pid_t p;
            char *args[] = { (char *)self, (char *)mode, NULL };
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, c, 0);
            posix_spawn_file_actions_adddup2(&fa, c, 1);
            if (posix_spawn(&p, self, &fa, NULL, args, environ) != 0)
                _exit(4);
            close(c);
            _exit(child_status(p));
        }
        exec_on_stdio(c, l, self, mode);
    }
    close(l);
    int fd = connect_to(&addr, len, optin);
    struct timeval tv = { 5, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    lines_echoed(fd, LINES, "client", optin);
    int fast = loopfast_fd_is_fast(fd);
    int want_fast = optin && !strcmp(mode, "serve-read");
    CHECK(fast == want_fast, "%s, %s: loopfast_fd_is_fast says %d, want %d", mode,
          spawn ? "posix_spawn" : "dup2", fast, want_fast);
    shutdown(fd, SHUT_WR);
    char b;
    CHECK(read(fd, &b, 1) == 0, "EOF after the service ended");
    CHECK(child_status(pid) == 0, "service exit");
    printf("%s, %s: %d lines echoed through %s; %s\n", optin ? "loopfast" : "kernel",
           spawn ? "posix_spawn" : "fork, dup2, exec", LINES,
           strcmp(mode, "serve-read") ? "fgets(stdin)" : "read(0)", fast ? "fast" : "TCP");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "serve-stdio"))
        return serve_stdio();
    if (argc > 1 && !strcmp(argv[1], "serve-read"))
        return serve_read();
    alarm(60);
    char self[4096];
    self_exe(self, sizeof self);
    static const char *const modes[] = { "serve-stdio", "serve-read" };
    for (int m = 0; m < 2; m++)
        for (int spawn = 0; spawn < 2; spawn++)
            for (int optin = 0; optin < 2; optin++)
                run(self, optin, spawn, modes[m]);
    return 0;
}
