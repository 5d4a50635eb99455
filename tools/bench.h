/*
 * bench.h - `loopfast bench`: the transports it compares and what it
 * measures of each.
 */
#ifndef LOOPFAST_BENCH_H
#define LOOPFAST_BENCH_H

#include <stddef.h>

enum transport { T_TCP, T_UNIX, T_LOOPFAST, T_RING, T_COUNT };

/* One message size on one transport. */
struct size_result {
    size_t size;
    double rtt_median_us, rtt_p99_us;   /* ping-pong of `size` bytes */
    double stream_gbps;                 /* `size`-byte writes one way */
};

struct bench_result {
    double rtt_median_us, rtt_p99_us;   /* 64 B */
    double msgs_per_s;                  /* 64 B one way */
    double stream_gbps;                 /* 64 KiB one way */
    double connect_us;                  /* connect, 1-byte echo, close; NAN: none (ring) */
    double connect_cpu_us;              /* the same: CPU time of both processes */
    double rtt_nospin_us;               /* loopfast only: LOOPFAST_SPIN_US=0 */
    int fast;                           /* tcp, loopfast: loopfast_fd_is_fast() after warm-up */
    int nsizes;
    struct size_result sizes[8];
};

struct bench_opts {
    double seconds;          /* per measurement */
    int json;
    int sweep;               /* --sizes: 64 B .. 1 MiB */
};

extern const size_t sweep_sizes[];
extern const int nsweep_sizes;

int bench_main(int argc, char **argv);
const char *transport_name(enum transport t);

/* bench_report.c: the results of all T_COUNT transports, on stdout. */
void print_table(const struct bench_result *r);
void print_json(const struct bench_result *r);

/* Each returns 0, or -1 when the transport failed. */
int sock_rtt(enum transport t, const struct bench_opts *o, size_t size, double *median,
             double *p99, int *fast);
int sock_stream(enum transport t, const struct bench_opts *o, size_t size, double *bytes_per_s);
/* Time per short connection, and the CPU both processes spent on each. */
int sock_connect_cost(enum transport t, const struct bench_opts *o, double *us, double *cpu_us);
int ring_rtt(const struct bench_opts *o, size_t size, double *median, double *p99);
int ring_stream(const struct bench_opts *o, size_t size, double *bytes_per_s);

#endif
