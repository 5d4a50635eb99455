/*
 * bench_ring.c - the ceiling: a bare shared-memory ring pair between two
 * busy-polling processes, no sockets, no system calls.  loopfast's distance to
 * this is what its protocol and interposition cost, so the bare ring is as
 * deep as the part of loopfast's ring a stream keeps to (RING_PACE, or a
 * smaller LOOPFAST_RING_KB): a 4 MiB ring streams up to twice as fast as a
 * 1 MiB one on a host whose two vCPUs sit far apart, and less fast where
 * they share a cache that 1 MiB fits in: that is the price of the depth,
 * not of the protocol.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "bench_proc.h"
#include "bench_util.h"
#include "internal.h"

static size_t ring_bytes;   /* a power of two, as loopfast's ring size is */

struct bare_ring {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic int done;
    _Atomic uint64_t total, total_ns;   /* what the sink read after its first take, in how long */
    _Alignas(4096) unsigned char data[];   /* ring_bytes */
};

/* A message deeper than the ring (--sizes with a small LOOPFAST_RING_KB) goes
 * in ring-sized pieces. */
static void put(struct bare_ring *r, const void *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        size_t piece = len - done < ring_bytes ? len - done : ring_bytes;
        uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
        while (ring_bytes - (head - atomic_load_explicit(&r->tail, memory_order_acquire)) < piece)
            ;
        for (size_t i = 0; i < piece;) {
            size_t off = (head + i) & (ring_bytes - 1),
                   n = ring_bytes - off < piece - i ? ring_bytes - off : piece - i;
            memcpy(r->data + off, (const char *)buf + done + i, n);
            i += n;
        }
        atomic_store_explicit(&r->head, head + piece, memory_order_release);
        done += piece;
    }
}

/* Takes up to len bytes; 0 when the ring is empty. */
static size_t take(struct bare_ring *r, void *buf, size_t len)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t avail = atomic_load_explicit(&r->head, memory_order_acquire) - tail;
    if (avail < len)
        len = (size_t)avail;
    for (size_t i = 0; i < len;) {
        size_t off = (tail + i) & (ring_bytes - 1), n = ring_bytes - off < len - i ? ring_bytes - off : len - i;
        memcpy((char *)buf + i, r->data + off, n);
        i += n;
    }
    atomic_store_explicit(&r->tail, tail + len, memory_order_release);
    return len;
}

static void take_full(struct bare_ring *r, void *buf, size_t len)
{
    for (size_t got = 0; got < len;)
        got += take(r, (char *)buf + got, len - got);
}

static void serve_echo(struct bare_ring *in, struct bare_ring *out, size_t size)
{
    char *msg = malloc(size);
    size_t first = size < ring_bytes ? size : ring_bytes;
    while (!atomic_load(&in->done)) {
        if (atomic_load_explicit(&in->head, memory_order_acquire) -
                atomic_load_explicit(&in->tail, memory_order_relaxed) < first)
            continue;
        take_full(in, msg, size);
        put(out, msg, size);
    }
    free(msg);
}

static void serve_sink(struct bare_ring *in)
{
    static char buf[SINK_READ_BYTES];
    uint64_t total = 0, first = 0;
    for (;;) {
        size_t n = take(in, buf, sizeof buf);
        if (n && !first)
            first = now_ns();
        else
            total += n;
        if (!n && atomic_load(&in->done) && atomic_load(&in->head) == atomic_load(&in->tail))
            break;
    }
    atomic_store(&in->total_ns, first ? now_ns() - first : 0);
    atomic_store(&in->total, total);
}

static size_t ring_stride(void)
{
    return sizeof(struct bare_ring) + ring_bytes;
}

/* The pair: [0] from us to the peer, [1] back. */
static struct bare_ring *map_rings(void)
{
    ring_bytes = config_ring_size() < RING_PACE ? config_ring_size() : RING_PACE;
    void *p = mmap(NULL, 2 * ring_stride(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        die("cannot map the ring benchmark's memory");
    return p;
}

static struct bare_ring *ring_at(struct bare_ring *pair, int i)
{
    return (struct bare_ring *)((char *)pair + (size_t)i * ring_stride());
}

static pid_t start(struct bare_ring *r, int echo, size_t size, double seconds)
{
    pid_t pid = child_start(echo ? "ring round trip" : "ring stream", seconds);
    if (pid == 0) {
        if (echo)
            serve_echo(ring_at(r, 0), ring_at(r, 1), size);
        else
            serve_sink(ring_at(r, 0));
        _exit(0);
    }
    return pid;
}

int ring_rtt(const struct bench_opts *o, size_t size, double *median, double *p99)
{
    struct bare_ring *r = map_rings();
    pid_t pid = start(r, 1, size, o->seconds);
    char *msg = calloc(1, size);
    if (!msg)
        die("out of memory for a %zu-byte message", size);
    struct samples s;
    samples_init(&s, 200000);
    for (int i = 0; i < 200; i++) {
        put(ring_at(r, 0), msg, size);
        take_full(ring_at(r, 1), msg, size);
    }
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    while (s.n < s.cap && now_ns() < end) {
        uint64_t t0 = now_ns();
        put(ring_at(r, 0), msg, size);
        take_full(ring_at(r, 1), msg, size);
        samples_add(&s, now_ns() - t0);
    }
    atomic_store(&r->done, 1);
    int rc = child_wait(pid);
    samples_stats(&s, median, p99);
    samples_free(&s);
    free(msg);
    munmap(r, 2 * ring_stride());
    return rc;
}

int ring_stream(const struct bench_opts *o, size_t size, double *bytes_per_s)
{
    struct bare_ring *r = map_rings();
    pid_t pid = start(r, 0, size, o->seconds);
    char *buf = calloc(1, size);
    if (!buf)
        die("out of memory for a %zu-byte message", size);
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    while (now_ns() < end)
        for (int i = 0; i < 16; i++)
            put(r, buf, size);
    atomic_store(&r->done, 1);
    int rc = child_wait(pid);
    uint64_t ns = atomic_load(&r->total_ns);
    if (ns == 0)
        rc = -1;
    *bytes_per_s = rc == 0 ? (double)atomic_load(&r->total) / ((double)ns / 1e9) : 0;
    free(buf);
    munmap(r, 2 * ring_stride());
    return rc;
}
