/*
 * bench_common.h - what the standalone benchmarks in bench/ share: the
 * clock, whole reads and writes, lifting loopfast's descriptor share, and
 * waiting idle in epoll.
 */
#ifndef LOOPFAST_BENCH_COMMON_H
#define LOOPFAST_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* All n bytes, through as many calls as it takes: 0, or -1 at an error or
 * the end of the stream. */
static inline int read_full(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static inline int write_full(int fd, const void *buf, size_t n)
{
    for (size_t put = 0; put < n;) {
        ssize_t w = write(fd, (const char *)buf + put, n - put);
        if (w <= 0)
            return -1;
        put += (size_t)w;
    }
    return 0;
}

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
