/*
 * kept_rtt.c - loopfast's 64 B round trip against the bare ring's, both
 * kept for the whole run: one opted-in TCP connection and one shared-memory
 * ring pair between the same two processes, measured in alternated slices
 * of SAMPLES round trips each, and the median of each slice's
 * loopfast/ring ratio printed.  `loopfast bench` starts a connection and
 * a peer process for every slice of each; this leaves out what that adds
 * (new processes, new rings, the scheduler's placement of each) and keeps
 * only what a message pays.  The server answers on TCP until a message
 * says "ring", then on the ring until one there says "tcp", so that only
 * one of them is waited on at a time.  CPUs may be given for the client
 * and the server (-1: not pinned), two different ones: on one, the ring's
 * spinning sides would wait for each other's time slices.
 * Run: build/bench_kept_rtt [SLICES [CLIENT_CPU SERVER_CPU]]   (default 10, -1 -1)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "loopfast.h"

#define MSG 64
#define SAMPLES 20000
#define RING_BYTES (1u << 20)   /* loopfast's default ring */
#define MAX_SLICES 1000

static void die(const char *what)
{
    perror(what);
    exit(1);
}

struct ring {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(4096) unsigned char data[RING_BYTES];
};

static void ring_put(struct ring *r, const unsigned char *msg)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (RING_BYTES - (head - atomic_load_explicit(&r->tail, memory_order_acquire)) < MSG)
        ;
    memcpy(r->data + (head & (RING_BYTES - 1)), msg, MSG);
    atomic_store_explicit(&r->head, head + MSG, memory_order_release);
}

static void ring_take(struct ring *r, unsigned char *msg)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    while (atomic_load_explicit(&r->head, memory_order_acquire) - tail < MSG)
        ;
    memcpy(msg, r->data + (tail & (RING_BYTES - 1)), MSG);
    atomic_store_explicit(&r->tail, tail + MSG, memory_order_release);
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("bench_kept_rtt: sched_setaffinity");
}

/* The peer: echoes on TCP, or on the ring between "ring" and "tcp". */
static void serve(int listener, struct ring *rings, int cpu)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pin(cpu);
    int c = accept(listener, NULL, NULL), one = 1;
    if (c < 0)
        _exit(1);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char msg[MSG];
    while (read_full(c, msg, MSG) == 0) {
        if (memcmp(msg, "ring", 4) == 0) {
            do {
                ring_take(&rings[0], msg);
                ring_put(&rings[1], msg);
            } while (memcmp(msg, "tcp", 3) != 0);
        } else if (write_full(c, msg, MSG) != 0) {
            _exit(1);
        }
    }
    _exit(0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median round trip of one slice, on TCP (fd >= 0) or the ring. */
static uint64_t slice(int fd, struct ring *rings)
{
    static uint64_t ns[SAMPLES];
    unsigned char msg[MSG] = { 0 };
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t t0 = now_ns();
        if (fd >= 0) {
            if (write_full(fd, msg, MSG) != 0 || read_full(fd, msg, MSG) != 0)
                die("bench_kept_rtt: the echo over TCP failed");
        } else {
            ring_put(&rings[0], msg);
            ring_take(&rings[1], msg);
        }
        ns[i] = now_ns() - t0;
    }
    qsort(ns, SAMPLES, sizeof ns[0], cmp_u64);
    return ns[SAMPLES / 2];
}

int main(int argc, char **argv)
{
    int slices = argc > 1 ? atoi(argv[1]) : 10;
    int client_cpu = argc > 3 ? atoi(argv[2]) : -1, server_cpu = argc > 3 ? atoi(argv[3]) : -1;
    if (slices < 1 || slices > MAX_SLICES || argc == 3 ||
        (client_cpu >= 0 && client_cpu == server_cpu)) {
        /* one CPU for both: the ring's spinning sides would wait for each
         * other's time slices */
        fprintf(stderr, "usage: bench_kept_rtt [SLICES [CLIENT_CPU SERVER_CPU]] (SLICES 1-%d, "
                "two different CPUs)\n", MAX_SLICES);
        return 2;
    }
    struct ring *rings = mmap(NULL, 2 * sizeof *rings, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rings == MAP_FAILED)
        die("bench_kept_rtt: mmap");
    int l = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (l < 0 ||
        loopfast_ioctl(l, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) != 0 ||
        bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        die("bench_kept_rtt: listener");
    pid_t pid = fork();
    if (pid < 0)
        die("bench_kept_rtt: fork");
    if (pid == 0)
        serve(l, rings, server_cpu);
    close(l);
    pin(client_cpu);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 ||
        loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0)
        die("bench_kept_rtt: connection");
    slice(fd, rings);   /* warm-up: the connection switches in its first messages */
    double ratio[MAX_SLICES];
    uint64_t fast_sum = 0, ring_sum = 0;
    for (int s = 0; s < slices; s++) {
        uint64_t fast = slice(fd, rings);
        unsigned char msg[MSG] = "ring";
        if (write_full(fd, msg, MSG) != 0)
            die("bench_kept_rtt: write");
        uint64_t ring = slice(-1, rings);
        memcpy(msg, "tcp", 4);
        ring_put(&rings[0], msg);
        ring_take(&rings[1], msg);
        ratio[s] = (double)fast / (double)ring;
        fast_sum += fast;
        ring_sum += ring;
    }
    qsort(ratio, (size_t)slices, sizeof ratio[0], cmp_double);
    printf("64 B round trip, p50 of %d slices of %d each: %s %.0f ns, bare ring %.0f ns; "
           "%s/ring %.3f (median of slices, range %.3f-%.3f)\n",
           slices, SAMPLES, loopfast_fd_is_fast(fd) == 1 ? "loopfast" : "kernel TCP (not fast)",
           (double)fast_sum / slices, (double)ring_sum / slices,
           loopfast_fd_is_fast(fd) == 1 ? "loopfast" : "tcp", ratio[slices / 2], ratio[0],
           ratio[slices - 1]);
    close(fd);
    waitpid(pid, NULL, 0);
    return 0;
}
