/*
 * bench_util.h - small helpers shared by the benchmark's files: clocks,
 * whole reads and writes, latency samples, fatal errors.
 */
#ifndef LOOPFAST_BENCH_UTIL_H
#define LOOPFAST_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

uint64_t now_ns(void);
ssize_t read_full(int fd, void *buf, size_t len);
ssize_t write_full(int fd, const void *buf, size_t len);
/* Prints "loopfast bench: MESSAGE" on stderr, kills the children, exits 1. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);

struct samples {
    uint64_t *v;
    size_t n, cap;
};
void samples_init(struct samples *s, size_t cap);
void samples_add(struct samples *s, uint64_t ns);
void samples_stats(struct samples *s, double *median_us, double *p99_us);
void samples_free(struct samples *s);


#endif
