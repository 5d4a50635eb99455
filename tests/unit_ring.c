/* The ring: wrap-around with random sizes and a checksum, full, empty, peek,
 * and hostile indices and origins that must be refused or masked without
 * touching memory outside the data area; then 16 MiB of long copies between
 * two threads, whose indices are published in steps while they copy
 * (ring.c, RING_STEP): a step published before its bytes were copied would
 * hand the reader stale bytes.  Both with the writer moving the ring's
 * origin whenever it may (no gap between two moves): a move while the
 * reader still had bytes to copy would garble them.  A paced writer
 * (RING_PACE) keeps its bytes within the ring's first 1 MiB and starts
 * again at the ring's start at its end, the unread bytes keeping their
 * places, also when paced and unpaced writes alternate under a reading
 * thread. */
#include <pthread.h>
#include <sched.h>

#include "helpers.h"
#include "ring.h"

#define SIZE RING_MIN_SIZE
#define GUARD 256

static unsigned char area[GUARD + SIZE + GUARD];
static struct ring_ctl ctl;

static void check_guards(void)
{
    for (int i = 0; i < GUARD; i++)
        CHECK(area[i] == 0xAA && area[GUARD + SIZE + i] == 0xAA, "guard byte %d overwritten", i);
}

#define BIG (256u << 10)
#define BIG_TOTAL (16ull << 20)
static struct ring_ctl big_ctl;
static struct ring big_ring;

/* Random pieces of up to 200 KiB, as one buffer or two iovecs. */
static void *big_writer(void *hash)
{
    static unsigned char in[BIG];
    unsigned seed = 11;
    uint64_t h = FNV_INIT;
    for (uint64_t sent = 0; sent < BIG_TOTAL;) {
        size_t n = 1 + (size_t)rand_r(&seed) % (200u << 10);
        if (n > BIG_TOTAL - sent)
            n = (size_t)(BIG_TOTAL - sent);
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)rand_r(&seed);
        ssize_t w;
        if (n & 1) {
            while ((w = ring_write_whole(&big_ring, in, n, 0)) == 0)
                sched_yield();   /* (valgrind runs one thread at a time) */
        } else {
            struct iovec iov[2] = { { in, n / 3 }, { in + n / 3, n - n / 3 } };
            for (size_t done = 0; done < n; done += (size_t)w) {
                struct iovec rest[2];
                int k = 0;
                for (int i = 0, skip = (int)done; i < 2; i++) {
                    size_t off = (size_t)skip < iov[i].iov_len ? (size_t)skip : iov[i].iov_len;
                    skip -= (int)off;
                    if (iov[i].iov_len > off)
                        rest[k++] = (struct iovec){ (char *)iov[i].iov_base + off, iov[i].iov_len - off };
                }
                w = ring_writev(&big_ring, rest, k);
                CHECK(w >= 0, "writev corrupt");
                if (w == 0)
                    sched_yield();
            }
            w = (ssize_t)n;
        }
        CHECK(w == (ssize_t)n, "long write: %zd of %zu", w, n);
        h = fnv(h, in, n);
        sent += n;
    }
    *(uint64_t *)hash = h;
    return NULL;
}

static void long_copies(void)
{
    static unsigned char area_big[BIG], out[BIG];
    ring_init(&big_ring, &big_ctl, area_big, BIG);
    big_ring.rewind_gap = 0;
    uint64_t hin = 0, hout = FNV_INIT, got = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, big_writer, &hin) == 0, "thread");
    unsigned seed = 5;
    while (got < BIG_TOTAL) {
        size_t m = 1 + (size_t)rand_r(&seed) % BIG, half = m / 2;
        struct iovec iov[2] = { { out, half }, { out + half, m - half } };
        ssize_t n = ring_readv(&big_ring, iov, 2, 0);
        CHECK(n >= 0, "readv corrupt");
        if (n == 0)
            sched_yield();
        hout = fnv(hout, out, (size_t)n);
        got += (uint64_t)n;
    }
    pthread_join(t, NULL);
    CHECK(got == BIG_TOTAL && hin == hout, "long copies between two threads corrupted");
    CHECK(big_ctl.base != 0, "the writer never moved the ring's origin");
}

/* Under a memory limit (ring.c's window): a writer keeps to the pages it
 * has, grows them only from its budget, and starts again at the origin once
 * the reader emptied the ring; readiness says what a write would find.
 * Then a stream between two threads through a window that grows a little. */
static int64_t window_budget;
static struct ring_ctl win_ctl;
static struct ring win_ring;
#define WIN_TOTAL (4ull << 20)

static void *window_writer(void *hash)
{
    static unsigned char in[64u << 10];
    unsigned seed = 3;
    uint64_t h = FNV_INIT;
    for (uint64_t sent = 0; sent < WIN_TOTAL;) {
        size_t n = 1 + (size_t)rand_r(&seed) % sizeof in;
        if (n > WIN_TOTAL - sent)
            n = (size_t)(WIN_TOTAL - sent);
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)rand_r(&seed);
        for (size_t done = 0; done < n;) {
            ssize_t w = ring_write(&win_ring, in + done, n - done);
            CHECK(w >= 0, "window write corrupt");
            if (w == 0)
                sched_yield();
            done += (size_t)w;
        }
        h = fnv(h, in, n);
        sent += n;
    }
    *(uint64_t *)hash = h;
    return NULL;
}

static void memory_window(void)
{
    static unsigned char data[BIG], in[BIG], out[BIG];
    struct ring r;
    ring_init(&r, &win_ctl, data, BIG);
    ring_limit(&r, &window_budget);
    for (size_t i = 0; i < BIG; i++)
        in[i] = (unsigned char)(i * 7);
    CHECK(win_ctl.writer_window == RING_WINDOW_MIN, "window published: %u", win_ctl.writer_window);
    CHECK(ring_write(&r, in, 100000) == RING_WINDOW_MIN && ring_writable(&r) == 0 &&
              ring_write(&r, in, 1) == 0,
          "no budget: the writer keeps to its first %u bytes", RING_WINDOW_MIN);
    CHECK(ring_read(&r, out, 8192, 0) == 8192 && ring_writable(&r) == 0 && ring_write(&r, in, 1) == 0,
          "at the window's end, bytes still unread: no room");
    CHECK(ring_read(&r, out + 8192, BIG, 0) == RING_WINDOW_MIN - 8192 &&
              !memcmp(in, out, RING_WINDOW_MIN),
          "the window's bytes");
    uint64_t head = win_ctl.head;
    CHECK(ring_writable(&r) > 0 && ring_write(&r, in, 1000) == 1000 && win_ctl.base == head &&
              ring_read(&r, out, BIG, 0) == 1000 && !memcmp(in, out, 1000),
          "emptied: again from the origin");
    window_budget = 8192;
    CHECK(ring_write(&r, in, BIG) == RING_WINDOW_MIN + 8192 && window_budget == 0 &&
              win_ctl.writer_window == RING_WINDOW_MIN + 8192,
          "a budget of two pages grows the window by two pages");
    CHECK(ring_read(&r, out, BIG, 0) == RING_WINDOW_MIN + 8192, "drain");
    ring_pages_punched(&r);
    CHECK(win_ctl.writer_window == RING_WINDOW_MIN, "pages given back: the window starts again");
    window_budget = (int64_t)BIG;
    CHECK(ring_write(&r, in, BIG) == BIG && win_ctl.writer_window == 0, "a whole ring paid for");
    CHECK(ring_read(&r, out, BIG, 0) == BIG && !memcmp(in, out, BIG), "the whole ring's bytes");

    ring_init(&win_ring, &(struct ring_ctl){ 0 }, data, BIG);
    win_ring.ctl = &win_ctl;
    memset(&win_ctl, 0, sizeof win_ctl);
    window_budget = 32u << 10;
    ring_limit(&win_ring, &window_budget);
    uint64_t hin = 0, hout = FNV_INIT, got = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, window_writer, &hin) == 0, "thread");
    unsigned seed = 9;
    while (got < WIN_TOTAL) {
        ssize_t n = ring_read(&win_ring, out, 1 + (size_t)rand_r(&seed) % BIG, 0);
        CHECK(n >= 0, "window read corrupt");
        if (n == 0)
            sched_yield();
        hout = fnv(hout, out, (size_t)n);
        got += (uint64_t)n;
    }
    pthread_join(t, NULL);
    CHECK(got == WIN_TOTAL && hin == hout, "a stream through a window corrupted");
    CHECK(win_ring.window <= RING_WINDOW_MIN + (32u << 10) && window_budget == 0,
          "the window outgrew its budget: %llu", (unsigned long long)win_ring.window);
}

#define PACED_SIZE (8u << 20)
#define PACED_HOLD (4u << 20)
#define PACED_TOTAL (64ull << 20)
static unsigned char paced_data[PACED_SIZE];
static struct ring_ctl paced_ctl;
static struct ring paced_ring;

/* Pieces of up to 300 KiB, each paced or not at random, at limits that
 * change between writes as a non-blocking writer's window does (256 KiB,
 * grown to 512 KiB, the pace): a limit that grew while bytes placed from
 * the origin before were unread wrote over them (nginx, sshd, PostgreSQL
 * read corrupt bytes). */
static const uint64_t paced_limits[] = { RING_PACE, 256u << 10, 512u << 10 };

static void *paced_writer(void *hash)
{
    static unsigned char in[300u << 10];
    unsigned seed = 5;
    uint64_t h = FNV_INIT;
    for (uint64_t sent = 0; sent < PACED_TOTAL;) {
        size_t n = 1 + (size_t)rand_r(&seed) % sizeof in;
        if (n > PACED_TOTAL - sent)
            n = (size_t)(PACED_TOTAL - sent);
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(sent + i * 13);
        struct iovec iov = { in, n };
        uint64_t limit = paced_limits[rand_r(&seed) % 3];
        ssize_t w = rand_r(&seed) % 8 ? ring_writev_upto(&paced_ring, &iov, 1, limit)
                  : rand_r(&seed) % 2 ? ring_write_whole(&paced_ring, in, n < 4096 ? n : 4096, limit)
                                      : ring_writev(&paced_ring, &iov, 1);
        CHECK(w >= 0, "paced write corrupt");
        if (w == 0)
            sched_yield();
        h = fnv(h, in, (size_t)w);
        sent += (uint64_t)w;
    }
    *(uint64_t *)hash = h;
    return NULL;
}

/* A paced write after the reader emptied the ring, while the writer's last
 * look at the reader's index was older: "bytes unread, and more than
 * 2 * RING_PACE past the origin: no room", said the write, where a
 * waiter's look at the fresh index said room, and iperf2's writer spun
 * between the two for seconds while its reader slept.  No origin move by
 * time here (the writer hunted just now). */
static void stale_tail_paced(struct ring *r, const unsigned char *in, unsigned char *out)
{
    ring_init(r, &paced_ctl, paced_data, PACED_SIZE);
    ring_hold(r, PACED_HOLD);
    r->rewind_gap = UINT64_MAX / 2;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);   /* ring.c's coarse clock */
    r->hunted_at = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    CHECK(ring_write(r, in, PACED_HOLD - (100u << 10)) == PACED_HOLD - (100u << 10),
          "stale tail: unpaced, nearly the hold");
    size_t keep = 64u << 10, got = 0;
    for (ssize_t n; got < PACED_HOLD - (100u << 10) - keep &&
                    (n = ring_read(r, out, PACED_HOLD - (100u << 10) - keep - got, 0)) > 0;)
        got += (size_t)n;
    /* more than the room the old look leaves: the writer looks again */
    CHECK(ring_write(r, in, 200u << 10) == 200u << 10, "stale tail: a write that looks again");
    while (ring_read(r, out, PACED_SIZE, 0) > 0)
        ;
    CHECK(ring_readable(r) == 0 && ring_writable_upto(r, RING_PACE) > 0,
          "stale tail: emptied, a waiter finds room");
    struct iovec iov = { (void *)in, 128u << 10 };
    CHECK(ring_writev_upto(r, &iov, 1, RING_PACE) == 128u << 10,
          "stale tail: a paced write after the ring emptied found no room where its waiter did");
    CHECK(ring_read(r, out, PACED_SIZE, 0) == 128u << 10 && !memcmp(out, in, 128u << 10),
          "stale tail: its bytes");
}

static void paced(void)
{
    static unsigned char in[PACED_SIZE], out[PACED_SIZE];
    struct ring *r = &paced_ring;
    ring_init(r, &paced_ctl, paced_data, PACED_SIZE);
    ring_hold(r, PACED_HOLD);
    CHECK(ring_pace(r) == RING_PACE, "an 8 MiB ring holding 4 MiB paces");
    for (size_t i = 0; i < PACED_SIZE; i++)
        in[i] = (unsigned char)(i * 5 + (i >> 12));
    struct iovec iov = { in, PACED_SIZE };
    CHECK(ring_writev_upto(r, &iov, 1, RING_PACE) == RING_PACE &&
              ring_writable_upto(r, RING_PACE) == 0 && ring_writable(r) > 0,
          "paced: 1 MiB in flight, the rest of the hold for an unpaced writer");
    uint64_t head = paced_ctl.head, base0 = paced_ctl.base;
    CHECK(ring_read(r, out, 4096, 0) == 4096 && ring_writable_upto(r, RING_PACE) == 4096 &&
              ring_writev_upto(r, &iov, 1, RING_PACE) == 4096 && paced_ctl.base == head &&
              paced_ctl.base_from == head && paced_ctl.mid_base == base0 &&
              ring_writable_upto(r, RING_PACE) == 0,
          "paced: at the window's end, again from the ring's start, bytes unread where they were");
    head = paced_ctl.head;
    CHECK(ring_writev(r, &iov, 1) == PACED_HOLD - RING_PACE && paced_ctl.base_from == head &&
              paced_ctl.base == head - RING_PACE && paced_ctl.old_base == base0,
          "unpaced: on past the unread bytes' end, to the hold");
    CHECK(ring_writable_upto(r, RING_PACE) == 0 && ring_writable(r) == 0, "full");
    size_t got = 0;
    for (ssize_t n; (n = ring_read(r, out + got, 100000, 0)) > 0;)
        got += (size_t)n;
    CHECK(got == PACED_HOLD && !memcmp(out, in + 4096, RING_PACE - 4096) &&
              !memcmp(out + RING_PACE - 4096, in, 4096) &&
              !memcmp(out + RING_PACE, in, PACED_HOLD - RING_PACE),
          "three origins: every byte in order (%zu read)", got);
    head = paced_ctl.head;
    CHECK(ring_writev_upto(r, &iov, 1, RING_PACE) == RING_PACE && paced_ctl.base == head &&
              paced_ctl.base_from == head,
          "emptied: again from the ring's start, one origin");
    CHECK(ring_read(r, out, PACED_SIZE, 0) == RING_PACE && !memcmp(in, out, RING_PACE), "drain");
    stale_tail_paced(r, in, out);

    uint64_t hin = 0, hout = FNV_INIT, total = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, paced_writer, &hin) == 0, "thread");
    unsigned seed = 3;
    while (total < PACED_TOTAL) {
        size_t want = 1 + (size_t)rand_r(&seed) % (512u << 10);
        ssize_t n = ring_read(r, out, want, 0);
        CHECK(n >= 0, "paced read corrupt");
        if (n == 0 || rand_r(&seed) % 64 == 0)
            usleep(n ? 2000 : 0);   /* a reader that stops now and then: unpaced writes grow */
        hout = fnv(hout, out, (size_t)n);
        total += (uint64_t)n;
    }
    pthread_join(t, NULL);
    CHECK(total == PACED_TOTAL && hin == hout, "a stream of paced and unpaced writes corrupted");
}

int main(void)
{
    struct ring r;
    memset(area, 0xAA, sizeof area);
    ring_init(&r, &ctl, area + GUARD, SIZE);
    r.rewind_gap = 0;
    static unsigned char in[3 * SIZE], out[3 * SIZE];
    uint64_t hin = FNV_INIT, hout = FNV_INIT;
    srand(7);
    CHECK(ring_readable(&r) == 0 && ring_read(&r, out, 10, 0) == 0, "empty ring reads 0");
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)rand() % SIZE;
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)rand();
        ssize_t w = ring_write(&r, in, n);
        CHECK(w >= 0 && (size_t)w <= n, "write");
        hin = fnv(hin, in, (size_t)w);
        size_t m = (size_t)rand() % SIZE;
        ssize_t peek = ring_read(&r, out, m, 1);
        ssize_t got = ring_read(&r, out + SIZE, m, 0);
        CHECK(got >= 0, "read: the indices went corrupt");
        CHECK(peek == got && !memcmp(out, out + SIZE, (size_t)got), "peek differs from read");
        hout = fnv(hout, out + SIZE, (size_t)got);
    }
    ssize_t left;
    while ((left = ring_read(&r, out, SIZE, 0)) > 0)
        hout = fnv(hout, out, (size_t)left);
    CHECK(hin == hout, "stream through the ring corrupted");
    CHECK(ctl.base != 0, "the writer never moved the ring's origin");
    /* full */
    CHECK(ring_write(&r, in, 2 * SIZE) == SIZE && ring_writable(&r) == 0 && ring_write(&r, in, 1) == 0,
          "a full ring takes exactly its size");
    /* iovecs */
    CHECK(ring_read(&r, out, SIZE, 0) == SIZE, "drain");
    struct iovec iov[2] = { { in, 5 }, { in + 100, 7 } };
    CHECK(ring_writev(&r, iov, 2) == 12 && ring_read(&r, out, 12, 0) == 12 &&
          !memcmp(out, in, 5) && !memcmp(out + 5, in + 100, 7), "writev/read");
    /* hostile indices */
    uint64_t bad[][2] = { { 100, 200 }, { SIZE + 1, 0 }, { UINT64_MAX, 0 }, { 1ull << 63, 0 } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctl.head = bad[i][0];
        ctl.tail = bad[i][1];
        CHECK(ring_readable(&r) == -1 && ring_writable(&r) == -1, "bad indices %zu accepted", i);
        CHECK(ring_read(&r, out, SIZE, 0) == -1 && ring_write(&r, in, SIZE) == -1, "bad indices %zu used", i);
    }
    /* scribbled origins garble only the stream: every place is masked.
     * (Bytes below a scribbled base_from are placed from the older ones.) */
    uint64_t origins[] = { 1, SIZE - 1, SIZE + 7, UINT64_MAX, 1ull << 63 };
    for (size_t i = 0; i < sizeof origins / sizeof origins[0]; i++) {
        ctl.head = ctl.tail = 1000;
        ctl.base = origins[i];
        ctl.base_from = ctl.mid_from = origins[(i + 2) % 5];
        ctl.mid_base = ctl.old_base = origins[(i + 3) % 5];
        ctl.places += 2;
        struct ring reader = r;   /* a fresh reader loads head, then base */
        reader.head_seen = 0;
        ssize_t w = ring_write(&r, in, SIZE);
        CHECK(w >= 0 && ring_read(&reader, out, SIZE, 0) == w, "origin %zu: %zd bytes written", i, w);
        check_guards();
    }
    /* indices near wrap of the 64-bit counter are fine */
    ctl.head = ctl.tail = UINT64_MAX - 10;
    CHECK(ring_write(&r, in, 100) == 100 && ring_read(&r, out, 100, 0) == 100 && !memcmp(in, out, 100),
          "64-bit wrap");
    check_guards();
    CHECK(ring_size_valid(SIZE) && !ring_size_valid(SIZE + 1) && !ring_size_valid(RING_MIN_SIZE / 2) &&
          !ring_size_valid((uint64_t)RING_MAX_SIZE * 2), "ring_size_valid");
    long_copies();
    memory_window();
    paced();
    return 0;
}
