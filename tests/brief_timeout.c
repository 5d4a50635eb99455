/* select(), pselect(), ppoll() and epoll_pwait2() with a timeout under a
 * millisecond, on a
 * fast connection with nothing to read: the kernel sleeps microseconds;
 * loopfast counted whole milliseconds and slept one on a futex, so wget,
 * which selects for 1 us before each request on a keep-alive connection
 * (has the server closed it?), took 1.1 ms a request, 5x the kernel's time
 * (a helper's sweep).  ROUNDS calls of 1 us each must take less than
 * ROUNDS milliseconds, which the rounded-up waits could not; each must say
 * "nothing" while nothing came, and "readable" once a byte is there; a bad
 * timeout is the kernel's EINVAL.  Both ways (ppoll's 1 us took a
 * millisecond on plain sockets too).  epoll_pwait2 waits on a set holding
 * the connection. */
#include <poll.h>
#include <sys/select.h>

#include "helpers.h"

#define ROUNDS 200

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static int ep = -1;   /* holds the connection, for epoll_pwait2 */

/* One call of each kind with a 1 us timeout: how many said readable. */
static int call(int kind, int fd)
{
    struct epoll_event ev;
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    struct timeval tv = { 0, 1 };
    struct timespec ts = { 0, 1000 };
    struct pollfd p = { .fd = fd, .events = POLLIN };
    switch (kind) {
    case 0: return select(fd + 1, &rs, NULL, NULL, &tv);
    case 1: return pselect(fd + 1, &rs, NULL, NULL, &ts, NULL);
    case 2: return ppoll(&p, 1, &ts, NULL);
    default: return epoll_pwait2(ep, &ev, 1, &ts, NULL);
    }
}

static const char *const names[] = { "select", "pselect", "ppoll", "epoll_pwait2" };

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    struct epoll_event ev = { .events = EPOLLIN };
    ep = epoll_create1(0);
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "epoll: %s", strerror(errno));
    struct timespec brief = { 0, 1000 };
    int kinds = 4;
    if (epoll_pwait2(ep, &ev, 1, &brief, NULL) < 0 && errno == ENOSYS) {
        printf("%s: no epoll_pwait2 here (valgrind?): left out\n", mode);
        kinds = 3;
    }
    for (int kind = 0; kind < kinds; kind++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < ROUNDS; i++)
            CHECK(call(kind, c) == 0, "%s: %s said ready with nothing to read", mode, names[kind]);
        double ms = ms_since(&t0);
        printf("%s: %d %s calls of 1 us: %.1f ms\n", mode, ROUNDS, names[kind], ms);
        CHECK(ms < ROUNDS, "%s: %s's 1 us timeouts took %.1f ms for %d calls", mode,
              names[kind], ms, ROUNDS);
        char b;
        CHECK(write_full(s, "x", 1) == 1, "write");
        int ready = 0;
        for (int i = 0; i < 1000 && !ready; i++)   /* over the kernel, a moment after */
            ready = call(kind, c);
        CHECK(ready == 1 && read_full(c, &b, 1) == 1, "%s: %s never said readable", mode,
              names[kind]);
    }
    struct timeval bad = { 0, -1 };
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(c, &rs);
    errno = 0;
    CHECK(select(c + 1, &rs, NULL, NULL, &bad) == -1 && errno == EINVAL,
          "%s: select with tv_usec -1: %s", mode, strerror(errno));
    close(ep);
    close(c);
    close(s);
}

int main(void)
{
    alarm(30);
    run(0);
    run(1);
    return 0;
}
