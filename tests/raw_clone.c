/* A child made by syscall(SYS_clone, SIGCHLD) (no CLONE_VM: a copy, as
 * fork() makes, but past libc's fork handlers; vsftpd's sessions, with new
 * namespaces) is a forked child to loopfast: before, its closes were taken
 * for a vfork child's, a number it closed and reused for a pipe or a file
 * stayed a socket, and its writes there failed with ENOTSOCK (vsftpd's
 * uploads and log).  Over kernel TCP, then with both ends opted in:
 *  - the child closes one end of a connection, gets its number back from
 *    pipe(), and writes and reads the pipe;
 *  - the child writes on the other end of the connection, the parent reads
 *    it; after the child's exit the connection goes on in the parent, both
 *    ways, and ends with EOF after the parent's close. */
#include <sched.h>
#include <sys/syscall.h>

#include "helpers.h"

static void one(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    const char *how = optin ? "loopfast" : "kernel TCP";
    pid_t child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    CHECK(child >= 0, "clone: %s", strerror(errno));
    if (child == 0) {
        int was = s, p[2], got = 0;
        char b[8];
        close(s);
        for (int i = 0; i < 8 && !got; i++)   /* pipes until one has the socket's number */
            if (pipe(p) != 0)
                _exit(10);
            else
                got = p[0] == was || p[1] == was;
        if (!got || write(p[1], "pipe", 4) != 4 || read(p[0], b, sizeof b) != 4 ||
            memcmp(b, "pipe", 4))
            _exit(11);
        if (write_full(c, "from the child", 14) != 14)
            _exit(12);
        _exit(0);
    }
    int st = child_status(child);
    CHECK(st == 0, "%s: the cloned child failed (%d)", how, st);
    char b[32];
    CHECK(read_full(s, b, 14) == 14 && memcmp(b, "from the child", 14) == 0,
          "%s: the child's bytes did not come", how);
    for (int i = 0; i < 100; i++) {
        CHECK(write_full(c, "ping", 4) == 4 && read_full(s, b, 4) == 4, "%s: c->s %d", how, i);
        CHECK(write_full(s, "pong", 4) == 4 && read_full(c, b, 4) == 4, "%s: s->c %d", how, i);
    }
    if (optin)
        CHECK(loopfast_fd_is_fast(c) == 1, "not fast");
    close(c);
    CHECK(read(s, b, 1) == 0, "%s: no EOF after the close", how);
    close(s);
}

int main(void)
{
#if !defined(__x86_64__)
    SKIP("syscall(SYS_clone) is looked at on x86-64 only");
#endif
    alarm(30);
    one(0);
    one(1);
    return 0;
}
