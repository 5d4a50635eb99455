/*
 * bench.h - `loopfast bench`: the transports it compares and what it
 * measures of each.
 */
#ifndef LOOPFAST_BENCH_H
#define LOOPFAST_BENCH_H

#include <stddef.h>
#include <sys/socket.h>

enum transport { T_TCP, T_UNIX, T_LOOPFAST, T_RING, T_COUNT };

/* One message size on one transport. */
struct size_result {
    size_t size;
    double rtt_median_us, rtt_p99_us;   /* ping-pong of `size` bytes */
    double stream_gbps;                 /* `size`-byte writes one way */
};

/* The moments at which a connection's cost is sampled: after its set-up
 * (connect and a 1-byte echo), after it moved COST_BUSY_BYTES each way, and
 * after COST_IDLE_S with both processes waiting in epoll_wait. */
enum cost_phase { PH_SETUP, PH_BUSY, PH_IDLE, PH_COUNT };
enum cost_end { END_CLIENT, END_SERVER, END_COUNT };

/* What one connection costs, as growth over the moment before the first one,
 * divided by their number.  NAN: not measured (--quick, the ring). */
struct conn_cost {
    int n;                              /* connections open at once; 0: not measured */
    int fast;                           /* of them, fast at the client */
    double fds[END_COUNT];              /* open descriptors, /proc/PID/fd */
    double rss_kib[PH_COUNT][END_COUNT];   /* /proc/PID/smaps_rollup */
    double pss_kib[PH_COUNT][END_COUNT];
    double shmem_kib[PH_COUNT];         /* machine-wide, /proc/meminfo */
    double slab_kib[PH_COUNT];          /* the same: kernel objects such as sockets */
};

/* What a stream's reader asks for per call, for every transport and the
 * bare ring alike: a reader with a 1 MiB buffer copied 2 MiB (ring and
 * buffer) through a 1 MiB cache per lap where the ring's 64 KiB reader kept
 * its buffer hot, and loopfast streamed 81-85% of the ring against 92% with
 * equal reads (3 alternated pairs of `bench --quick`). */
#define SINK_READ_BYTES (64u << 10)

/* loopfast and the ring measured in alternated rounds (bench.c): the host's
 * speed moves in phases (a vCPU placed near or far from the other), so each
 * round's loopfast/ring ratio compares like with like. */
#define CEILING_MAX_ROUNDS 12
enum ceiling_metric { CM_LATENCY, CM_MSGS, CM_STREAM, CM_COUNT };
struct ceiling {
    int rounds;
    double ratio[CM_COUNT][CEILING_MAX_ROUNDS];   /* loopfast / ring, per round */
};

struct bench_result {
    double rtt_median_us, rtt_p99_us;   /* 64 B */
    double msgs_per_s;                  /* 64 B one way */
    double stream_gbps;                 /* 64 KiB one way */
    double connect_us;                  /* connect, 1-byte echo, close; NAN: none (ring) */
    double connect_cpu_us;              /* the same: CPU time of both processes */
    double connect2_us;                 /* connect, two 1-byte echoes, close: loopfast switches */
    double rtt_nospin_us;               /* loopfast only: LOOPFAST_SPIN_US=0 */
    int fast;                           /* tcp, loopfast: loopfast_fd_is_fast() after warm-up */
    int nsizes;
    struct size_result sizes[8];
    struct conn_cost cost;              /* tcp, unix, loopfast */
    struct ceiling ceiling;             /* loopfast only */
};

struct bench_opts {
    double seconds;          /* per measurement */
    int json;
    int sweep;               /* --sizes: 64 B .. 1 MiB */
    int quick;               /* --quick: also no busy or idle memory samples */
};

extern const size_t sweep_sizes[];
extern const int nsweep_sizes;

int bench_main(int argc, char **argv);
const char *transport_name(enum transport t);

/* bench_report.c: the results of all T_COUNT transports, on stdout. */
void print_table(const struct bench_result *r);
void print_json(const struct bench_result *r);
/* The median of n values (sorted in place). */
double median_of(double *v, int n);

/* bench_sock.c's sockets: a listener for transport t (its address goes into
 * *addr), a connected client, TCP_NODELAY; they die on errors. */
int sock_listen(enum transport t, struct sockaddr_storage *addr, socklen_t *len);
int sock_dial(enum transport t, const struct sockaddr_storage *addr, socklen_t len);
void sock_nodelay(enum transport t, int fd);

/* Each returns 0, or -1 when the transport failed. */
int sock_rtt(enum transport t, const struct bench_opts *o, size_t size, double *median,
             double *p99, int *fast);
int sock_stream(enum transport t, const struct bench_opts *o, size_t size, double *bytes_per_s);
/* Time per short connection, and the CPU both processes spent on each. */
/* `exchanges` 1-byte echoes per connection */
int sock_connect_cost(enum transport t, const struct bench_opts *o, int exchanges, double *us,
                      double *cpu_us);
/* Descriptors and memory of many connections open at once (bench_cost.c);
 * `memory` adds the busy and idle samples. */
int sock_conn_cost(enum transport t, int memory, struct conn_cost *c);
int ring_rtt(const struct bench_opts *o, size_t size, double *median, double *p99);
int ring_stream(const struct bench_opts *o, size_t size, double *bytes_per_s);

#endif
