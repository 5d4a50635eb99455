/* A vfork() child closes and duplicates descriptors before its exec, as
 * Python's subprocess does (close_fds: close_range(3, ~0) or a loop of
 * close(); stdin/stdout given: dup2 onto 0 and 1; each directory of PATH
 * tried in turn).  The child shares the parent's memory but not its
 * descriptor table: its calls must change nothing of the parent's.  Before,
 * the child's close_range told the peer the connection was closed (the
 * parent's next reads timed out), and its dup2 onto 0 and 1 made the
 * parent's stdin and stdout the socket.  Cases:
 *   close_range, close_loop: the child closes everything from 3 and execs
 *     /bin/true; the connection goes on between parent and client;
 *   dup_stdio: the child's stdin and stdout become the connection (after
 *     an exec that fails, then its own image as `cat`), it copies what the
 *     client sent until the client's end of stream, then the parent writes;
 *     the parent's own descriptors 0 and 1 are still not sockets of ours.
 * Each over kernel TCP and with both ends fast; the client's transcript must
 * be the same. */
#include <linux/close_range.h>

#include "helpers.h"

#define ROUNDS 50

static void cat_stdio(void)
{
    char b[256];
    ssize_t n;
    while ((n = read(0, b, sizeof b)) > 0)
        if (write_full(1, b, (size_t)n) != n)
            _exit(6);
    _exit(n == 0 ? 0 : 7);
}

static void child_closes(const char *how)
{
    if (!strcmp(how, "close_range"))
        close_range(3, ~0u, 0);
    else
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
}

/* A vfork child that closes as `how` says and execs /bin/true; 0 once it ended. */
static __attribute__((noinline)) int spawn_true(const char *how)
{
    pid_t p = vfork();
    if (p == 0) {
        child_closes(how);
        execl("/bin/true", "true", (char *)NULL);
        _exit(9);
    }
    return p > 0 && waitpid(p, NULL, 0) == p ? 0 : -1;
}

/* The server's end: echoes ROUNDS rounds, a vfork child acting after the
 * fifth; exit 10 + fast. */
static void server(int l, const char *self, const char *how)
{
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    server_switch(c);
    if (!strcmp(how, "dup_stdio")) {
        pid_t p = vfork();
        if (p == 0) {
            if (dup2(c, 0) != 0 || dup2(c, 1) != 1)
                _exit(3);
            close_range(3, ~0u, 0);
            execl("/nonexistent/cat", "cat", (char *)NULL);   /* as a PATH search fails first */
            execl(self, self, "cat", (char *)NULL);
            _exit(4);
        }
        int st;
        if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(5);
        if (write_full(c, "[parent]", 8) != 8)
            _exit(6);
        /* the parent's 0 and 1 are its own, not the connection */
        if (loopfast_fd_is_fast(0) == 1 || loopfast_fd_is_fast(1) == 1)
            _exit(7);
    } else {
        char b[8];
        for (int i = 0; i < ROUNDS; i++) {
            if (read_full(c, b, sizeof b) != sizeof b)
                _exit(8);
            if (i == 5 && spawn_true(how) < 0)
                _exit(10);
            if (write_full(c, b, sizeof b) != sizeof b)
                _exit(11);
        }
    }
    int fast = loopfast_fd_is_fast(c);
    close(c);
    _exit(20 + fast);
}

static void run(const char *self, const char *how, int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0)
        server(l, self, how);
    int fd = connect_to(&addr, len, optin);
    struct timeval tv = { 5, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    client_switch(fd);
    char got[64] = "";
    if (!strcmp(how, "dup_stdio")) {
        CHECK(write_full(fd, "hello\n", 6) == 6 && shutdown(fd, SHUT_WR) == 0, "send");
        size_t n = 0;
        ssize_t r;
        while (n < sizeof got - 1 && (r = read(fd, got + n, sizeof got - 1 - n)) > 0)
            n += (size_t)r;
        got[n] = 0;
        CHECK(!strcmp(got, "hello\n[parent]"), "%s %s: the client read '%s'", how,
              optin ? "loopfast" : "kernel", got);
    } else {
        for (int i = 0; i < ROUNDS; i++) {
            char b[16], e[8];
            snprintf(b, sizeof b, "r%06d", i % 1000000);   /* 8 bytes with its NUL */
            CHECK(write_full(fd, b, sizeof e) == sizeof e, "%s: write round %d", how, i);
            CHECK(read_full(fd, e, sizeof e) == sizeof e && !memcmp(b, e, sizeof e),
                  "%s %s: round %d not echoed (%s)", how, optin ? "loopfast" : "kernel", i,
                  strerror(errno));
        }
    }
    int st = child_status(pid);
    fprintf(stderr, "%s %s: server exit %d\n", how, optin ? "loopfast" : "kernel", st);
    CHECK(st == 20 + optin, "%s %s: server exit %d, expected %d", how,
          optin ? "loopfast" : "kernel", st, 20 + optin);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "cat"))
        cat_stdio();
    alarm(60);
    static const char *hows[] = { "close_range", "close_loop", "dup_stdio" };
    for (int h = 0; h < 3; h++)
        for (int optin = 0; optin < 2; optin++)
            run(argv[0], hows[h], optin);
    return 0;
}
