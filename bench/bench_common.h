/*
 * bench_common.h - what the standalone benchmarks in bench/ share: lifting
 * loopfast's descriptor share, and waiting idle in epoll.
 */
#ifndef LOOPFAST_BENCH_COMMON_H
#define LOOPFAST_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* loopfast keeps at most a quarter of RLIMIT_NOFILE unless LOOPFAST_MAX_FDS
 * says otherwise: a benchmark that wants every connection fast runs again
 * with the cap lifted (the library reads it once, at start). */
static inline void lift_fd_cap(char **argv)
{
    if (getenv("LOOPFAST_MAX_FDS"))
        return;
    setenv("LOOPFAST_MAX_FDS", "1048576", 1);
    execv("/proc/self/exe", argv);
}

/* An epoll set watching every descriptor for input, each under its number;
 * a benchmark that cannot make it ends. */
static inline int epoll_of(const int *fds, int n)
{
    int ep = epoll_create1(0);
    if (ep < 0)
        perror("epoll_create1"), _exit(1);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = { .events = EPOLLIN, .data.fd = fds[i] };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) < 0)
            perror("epoll_ctl"), _exit(1);
    }
    return ep;
}

/* Waits in epoll on every descriptor, forever (until killed): idle
 * connections as an event loop holds them. */
static inline void idle_in_epoll(const int *fds, int n)
{
    int ep = epoll_of(fds, n);
    struct epoll_event out[16];
    for (;;)
        epoll_wait(ep, out, 16, -1);
}

#endif
