/* epoll_ctl on a fast socket when the process has no descriptor left (an
 * inner epoll cannot be made) succeeds as the kernel's would, and the
 * registration still reports the data that arrives on the rings while it
 * sleeps; the same over kernel TCP. */
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "helpers.h"

static void run(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    int ep = epoll_create1(0);
    CHECK(ep >= 0, "epoll_create1");
    int fill[64], n = 0;
    while (n < 64 && (fill[n] = open("/dev/null", O_RDONLY)) >= 0)
        n++;
    CHECK(n < 64 && errno == EMFILE, "could not run out of descriptors");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0, "optin %d: ADD: %s", optin, strerror(errno));
    CHECK(epoll_wait(ep, &ev, 1, 0) == 0, "optin %d: ready before data", optin);
    pid_t pid = fork();   /* writes once the parent sleeps in epoll_wait */
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        usleep(50000);
        _exit(write_full(c, "x", 1) == 1 ? 0 : 1);
    }
    CHECK(epoll_wait(ep, &ev, 1, 5000) == 1 && ev.data.u64 == 42 && (ev.events & EPOLLIN),
          "optin %d: no EPOLLIN", optin);
    char b;
    CHECK(read(s, &b, 1) == 1 && b == 'x', "read");
    CHECK(child_status(pid) == 0, "writer");
    ev.events = EPOLLIN | EPOLLOUT;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev) == 0, "optin %d: MOD: %s", optin, strerror(errno));
    CHECK(epoll_wait(ep, &ev, 1, 5000) == 1 && ev.events == EPOLLOUT, "optin %d: EPOLLOUT", optin);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0, "optin %d: DEL: %s", optin, strerror(errno));
    while (n > 0)
        close(fill[--n]);
    close(ep);
    close(c);
    close(s);
}

int main(int argc, char **argv)
{
    (void)argc;
    lift_fd_cap(argv);   /* fast pairs at a tiny limit, beyond the default share */
    struct rlimit rl = { 48, 48 };
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit");
    run(0);
    run(1);
    return 0;
}
