/* epoll_pwait2 (a nanosecond timeout) on a set holding a fast socket sees
 * ring data as epoll_wait does; with nothing to report it times out with 0.
 * Before it was interposed it went to the kernel, which answered for
 * loopfast's inner epoll, not for the program's socket (an event with
 * nothing to read).  Run on a fast pair and,
 * as control, a plain pair. */
#include <sys/epoll.h>

#include "helpers.h"

static void run(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    const char *mode = optin ? "loopfast" : "kernel";
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0, "epoll_ctl (%s)", mode);
    struct timespec short_wait = { 0, 20 * 1000000 }, long_wait = { 5, 0 };
    struct epoll_event out[4];
    CHECK(epoll_pwait2(ep, out, 4, &short_wait, NULL) == 0, "nothing to read yet (%s)", mode);
    CHECK(write_full(c, "ping", 4) == 4, "write (%s)", mode);
    int n = epoll_pwait2(ep, out, 4, &long_wait, NULL);
    CHECK(n == 1 && out[0].data.u64 == 42 && (out[0].events & EPOLLIN),
          "epoll_pwait2 after a write (%s): %d", mode, n);
    char buf[8];
    CHECK(read_full(s, buf, 4) == 4 && !memcmp(buf, "ping", 4), "read (%s)", mode);
    struct timespec bad = { 0, 1000000000 };
    errno = 0;
    CHECK(epoll_pwait2(ep, out, 4, &bad, NULL) == -1 && errno == EINVAL, "bad timeout (%s): %s",
          mode, strerror(errno));
    close(ep);
    close(c);
    close(s);
}

int main(void)
{
    alarm(20);
    run(0);
    run(1);
    return 0;
}
