/*
 * bench_util.c - clocks, whole reads and writes, latency samples and fatal
 * errors for the benchmark.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bench_proc.h"
#include "bench_util.h"

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return got ? (ssize_t)got : n;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return done ? (ssize_t)done : n;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

void die(const char *fmt, ...)
{
    va_list ap;
    fputs("loopfast bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    children_kill_all();
    exit(1);
}

void samples_init(struct samples *s, size_t cap)
{
    s->v = malloc(cap * sizeof *s->v);
    if (!s->v)
        die("out of memory for %zu latency samples", cap);
    s->n = 0;
    s->cap = cap;
}

void samples_add(struct samples *s, uint64_t ns)
{
    if (s->n < s->cap)
        s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void samples_stats(struct samples *s, double *median_us, double *p99_us)
{
    *median_us = *p99_us = 0;
    if (!s->n)
        return;
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    *median_us = (double)s->v[s->n / 2] / 1000.0;
    *p99_us = (double)s->v[(size_t)((double)s->n * 0.99)] / 1000.0;
}

void samples_free(struct samples *s)
{
    free(s->v);
}
