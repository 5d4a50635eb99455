/*
 * bench.h - `loopfast bench`: the transports it compares and what it
 * measures of each.
 */
#ifndef LOOPFAST_BENCH_H
#define LOOPFAST_BENCH_H

enum transport { T_TCP, T_UNIX, T_LOOPFAST, T_RING, T_COUNT };

struct bench_result {
    double rtt_median_us, rtt_p99_us;
    double msgs_per_s;
    double stream_gbps;      /* GB/s at the reader */
    int fast;                /* loopfast_fd_is_fast() after warm-up */
    int ok;
};

struct bench_opts {
    double seconds;          /* per measurement */
    int json;
};

int bench_main(int argc, char **argv);
int bench_transport(enum transport t, const struct bench_opts *o, struct bench_result *r);
const char *transport_name(enum transport t);

#endif
