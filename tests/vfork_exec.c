/* vfork() then exec with a fast connection inherited (dash runs its
 * commands so; system()'s shell): the new image is another process that
 * holds the connection, counted as a holder as a spawned one is.  It
 * writes, closes its copy and exits; the parent then writes and closes,
 * and the client reads both, then end of stream, as over kernel TCP.
 * Uncounted, the child's close was the connection's last: the client got
 * end of stream before the parent's bytes.  Run both ways. */
#include "helpers.h"

#define EXPECTED "[child][parent]"

static void server(int l, const char *self)
{
    int c = accept(l, NULL, NULL);
    char num[16];
    server_switch(c);
    snprintf(num, sizeof num, "%d", c);
    pid_t p = vfork();
    if (p == 0) {
        execl(self, self, "child", num, (char *)NULL);
        _exit(3);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        _exit(4);
    usleep(100000);   /* the client has read [child] and waits: whatever it heard, it hears now */
    if (write_full(c, "[parent]", 8) != 8)
        _exit(5);
    int fast = loopfast_fd_is_fast(c);
    close(c);
    _exit(10 + fast);
}

static void run(const char *self, int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0)
        server(l, self);
    int fd = connect_to(&addr, len, optin);
    char buf[64];
    client_switch(fd);
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    int fast = loopfast_fd_is_fast(fd);
    close(fd);
    int st = child_status(pid);
    fprintf(stderr, "%s: read '%s', server %d, client fast %d\n", optin ? "loopfast" : "kernel",
            buf, st, fast);
    CHECK(!strcmp(buf, EXPECTED), "%s: the client read '%s'", optin ? "loopfast" : "kernel", buf);
    CHECK(st == 10 + optin, "%s: server exit %d", optin ? "loopfast" : "kernel", st);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "child")) {
        int fd = atoi(argv[2]);
        int ok = write_full(fd, "[child]", 7) == 7;
        close(fd);
        return ok ? 0 : 1;
    }
    alarm(20);
    run(argv[0], 0);
    run(argv[0], 1);
    return 0;
}
