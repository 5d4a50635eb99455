/* Under a file-size limit (RLIMIT_FSIZE, `ulimit -f`) loopfast never
 * raises SIGXFSZ.  A region is a memfd sized with ftruncate(), which the
 * limit bounds too: past it the kernel sends SIGXFSZ, whose default action
 * ends the process, and a server under `ulimit -f 1024` died in its first
 * accept() while its client waited for ever.  With the limit at 1 MiB
 * (smaller than any region) the connection must stay plain TCP and echo as
 * over the kernel; at 32 MiB (room for a few slots) it must be fast. */
#include <sys/resource.h>

#include "helpers.h"

/* A server and a client in a process under the limit make their echoes;
 * whether the client's end was fast in *fast. */
static void echo_under_limit(rlim_t limit, int optin, int *fast)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        struct rlimit r = { limit, limit };
        CHECK(setrlimit(RLIMIT_FSIZE, &r) == 0, "setrlimit: %s", strerror(errno));
        signal(SIGXFSZ, SIG_DFL);
        pid_t srv;
        int fd = connect_to_forked(optin, echo_server, &srv);
        client_echo_rounds(fd, 5, "under the limit");
        int is_fast = loopfast_fd_is_fast(fd) == 1;
        close(fd);
        int st = child_status(srv);
        CHECK(st == 10 + is_fast, "server ended with %d (SIGXFSZ is %d)", st, 128 + SIGXFSZ);
        exit(is_fast ? 10 : 11);
    }
    int st = child_status(pid);
    CHECK(st == 10 || st == 11, "client ended with %d (SIGXFSZ is %d)", st, 128 + SIGXFSZ);
    *fast = st == 10;
}

int main(void)
{
    alarm(30);
    int fast;
    echo_under_limit(1 << 20, 0, &fast);
    CHECK(!fast, "kernel TCP: fast");
    echo_under_limit(1 << 20, 1, &fast);
    printf("at 1 MiB: the connection stayed %s\n", fast ? "fast" : "plain TCP");
    CHECK(!fast, "a region cannot fit in 1 MiB, yet the connection was fast");
    echo_under_limit(32 << 20, 1, &fast);
    printf("at 32 MiB: %s\n", fast ? "fast" : "plain TCP");
    CHECK(fast, "at 32 MiB the connection stayed plain");
    return 0;
}
