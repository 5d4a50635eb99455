/*
 * ring.h - a single-producer single-consumer byte ring in shared memory that
 * the other process may scribble on.
 *
 * Indices are free-running 64-bit byte counts.  The writer owns `head`, the
 * reader owns `tail`.  Each side keeps the peer's index as it last saw it and
 * loads it again (once, with acquire ordering) only when that old value does
 * not leave enough room or data for the call: the peer's index only grows, so
 * an old value is a safe underestimate, and not loading it saves a cache miss
 * per message while the peer keeps up.  Every value is checked
 * (head - tail <= size) before use.  A byte's place is its index minus
 * `base` (moved to head by the writer when it finds the ring empty, so that
 * bytes read as they come reuse the ring's first pages, or at the end of a
 * paced writer's first RING_PACE bytes: then the bytes below it keep their
 * places from the origins before, ring.c's "places"), masked with
 * size - 1, so no value found in shared memory can make a call touch memory
 * outside the ring.  A failed check returns -1: the caller
 * treats the connection as broken.
 */
#ifndef LOOPFAST_RING_H
#define LOOPFAST_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define RING_MIN_SIZE (4u << 10)
#define RING_MAX_SIZE (64u << 20)

/* The shared part: each word on its own cache line, so that the writer's
 * stores do not bounce the reader's line and back.  `head` is alone on its
 * line: the writer's next load there waited for the line its last store
 * was still taking back from the spinning reader (half of a 64 B writer's
 * samples were its loads of `base`), where the words below, changed
 * seldom, stay in both caches. */
struct ring_ctl {
    _Alignas(64) uint64_t head;      /* bytes ever written: the writer's */
    _Alignas(64) uint64_t base;      /* the index at the ring's start: the writer's */
    uint64_t punches;                /* the writer's trims (its pages unmapped): the writer's */
    /* Where bytes below base_from are (a paced writer's new start: ring.c,
     * the places), all the writer's, changed under the count `places` (odd
     * while they change): from base for bytes from base_from on, from
     * mid_base for those from mid_from on, below that from old_base. */
    uint64_t places, base_from, mid_base, mid_from, old_base;
    _Alignas(64) uint64_t tail;      /* bytes ever read: the reader's */
    _Alignas(64) uint32_t reader_armed; /* reader sleeps: ring its doorbell */
    uint32_t writer_armed;              /* writer sleeps: ring its doorbell */
    uint32_t reader_bound;              /* the reader's SO_RCVBUF as the kernel reports it; 0: unset */
    uint32_t reader_wake, writer_wake;  /* futex words of RING_ARM_FUTEX sleepers: bumped, then woken */
    uint64_t reader_name, writer_name;  /* the wake socket of a RING_ARM_NAMED sleeper; 0: none */
    uint32_t writer_window;             /* the writer keeps to this many bytes (a memory limit); 0: none */
};

/* The process-local view; `size` is our own validated copy, never re-read. */
struct ring {
    struct ring_ctl *ctl;
    unsigned char *data;
    uint64_t size;        /* a power of two */
    uint64_t hold;        /* the bytes in flight when no buffer size was set; <= size */
    uint64_t own_bound;   /* writer: our SO_SNDBUF as the kernel reports it; 0: unset */
    uint64_t tail_seen;   /* as the writer last loaded it */
    uint64_t head_seen;   /* as the reader last loaded it */
    /* The reader's copy of the places, loaded after head_seen when `places`
     * changed: where the bytes below head_seen are. */
    uint64_t places_seen, base_seen, from_seen, mid_base_seen, mid_from_seen, old_base_seen;
    uint64_t rewind_look; /* writer: the head at which it next looks whether to rewind */
    uint64_t hunted_at;   /* writer: the coarse clock when it last began to hunt */
    uint64_t rewind_gap;  /* writer: ns between two hunts (ring_init: 100 ms; tests: 0) */
    unsigned hunt;        /* writer: looks left for an empty ring to move base at */
    /* Writer under a memory limit (memlimit.c): new pages come from *budget
     * (NULL: no limit), and the pages it has are the ring's first `window`
     * bytes from the origin. */
    int64_t *budget;
    uint64_t window;
    /* The ring's first populated[1] bytes are mapped for the writer in
     * this process, populated[0] for the reader (ring_populate): writes and
     * reads keep to a prefix of the ring from its origin until they wrap,
     * so one mark says it.  One per role, as the indices seen: a process
     * may hold both ends (tests/unit_ring.c drives one struct from two
     * threads). */
    uint64_t populated[2];
    uint64_t punches_seen;   /* reader: ctl->punches when populated[0] was last right */
};

/* The first bytes of a ring a writer under a memory limit may always use,
 * as TCP keeps a minimal window under memory pressure. */
#define RING_WINDOW_MIN (16u << 10)

/* The pages under [populated[for_write], need) mapped in one call, and
 * some ahead, before a copy touches them (ring.c; for_write 0 or 1).  Out
 * of line: rare. */
void ring_populate(struct ring *r, uint64_t need, int for_write);

/* Sizes allowed for a ring: a power of two within the bounds above. */
int ring_size_valid(uint64_t size);

void ring_init(struct ring *r, struct ring_ctl *ctl, void *data, uint64_t size);

/* Bytes that can be read now, or -1 when the indices are corrupt. */
ssize_t ring_readable(const struct ring *r);
/* The bytes the writer may have in flight, as kernel TCP would hold: its
 * `hold` (ring_hold; the whole ring until set), or, when both ends set
 * their socket buffers, the writer's SO_SNDBUF plus the reader's SO_RCVBUF
 * (both as getsockopt reports them). */
uint64_t ring_capacity(const struct ring *r);
void ring_hold(struct ring *r, uint64_t hold);
/* Bytes of room for the writer now, or -1 when the indices are corrupt;
 * ring_writable_upto: with at most `limit` bytes in flight (0: capacity). */
ssize_t ring_writable(struct ring *r);
ssize_t ring_writable_upto(struct ring *r, uint64_t limit);
/* Writable as poll() says of a TCP socket: room, and at least half as
 * much as is in flight (the kernel's sk_stream_min_wspace); -1 corrupt.
 * ring_poll_writable_upto: with at most `limit` bytes in flight (0:
 * capacity). */
int ring_poll_writable(struct ring *r);
int ring_poll_writable_upto(struct ring *r, uint64_t limit);
/* A writer under a memory limit takes new pages from *budget (memlimit.c)
 * and otherwise keeps to those it has (docs/design.md, 5); NULL: none.
 * ring_pages_punched: the writer gave its free pages back (trim.c): its
 * window starts again, and both ends map the pages again (ring_populate). */
void ring_limit(struct ring *r, int64_t *budget);
void ring_pages_punched(struct ring *r);

/* A writer whose reader drains the ring keeps this many bytes in flight at
 * most, when it may wait (conn.c, tx_ring): a stream then runs within the
 * caches (30 against 20 GB/s here for a ring holding 4 MB).  ring_pace:
 * RING_PACE, or 0 where the ring paces not (too small for it, or a writer
 * under a memory limit, which keeps to its window instead). */
#define RING_PACE (1u << 20)
uint64_t ring_pace(const struct ring *r);

/* Copy up to the iovecs' total length in; returns bytes written (0 when full)
 * or -1 when corrupt.  Publishes the new head with release ordering.
 * ring_writev_upto: with at most `limit` bytes in flight (0: capacity). */
ssize_t ring_writev(struct ring *r, const struct iovec *iov, int iovcnt);
ssize_t ring_writev_upto(struct ring *r, const struct iovec *iov, int iovcnt, uint64_t limit);
ssize_t ring_write(struct ring *r, const void *buf, size_t len);
/* All len bytes, or none (0) when the room is short; -1 when corrupt.  One
 * buffer, no iovec: the common write() of a small message.  It keeps within
 * RING_PACE, or `window` when smaller (0: none): past it, the caller's
 * general path decides whether to wait. */
ssize_t ring_write_whole(struct ring *r, const void *buf, size_t len, uint64_t window);

/* sendfile()'s copy: up to len bytes of the file fd from pos, read into
 * the ring's room with pread() (one copy, not two through a buffer); with
 * at most `limit` bytes in flight (0: capacity).  Returns bytes written, 0
 * when there is no room, -1 when corrupt, or RING_SOURCE_END when the file
 * gave nothing: *err is then pread()'s errno, or 0 at the file's end. */
#define RING_SOURCE_END (-2)
ssize_t ring_write_file(struct ring *r, int fd, off_t pos, size_t len, uint64_t limit, int *err);

/* Copy up to the iovecs' total length out; returns bytes read (0 when empty)
 * or -1 when corrupt.  With peek, the tail is not advanced. */
ssize_t ring_readv(struct ring *r, const struct iovec *iov, int iovcnt, int peek);
ssize_t ring_read(struct ring *r, void *buf, size_t len, int peek);

/* Sleeping protocol: a side that is about to sleep arms (sets its flag),
 * passes a store-load barrier (barrier.c: a fence, and membarrier when its
 * side promised) and re-checks the ring; the other side, after it published
 * progress, takes the flag (exchange to 0) and wakes the sleepers the flag
 * names: RING_ARM_BELL, a poller, by the doorbell; RING_ARM_FUTEX, a thread
 * blocked in one call on this connection, by bumping the direction's wake
 * word and a futex wake on it (docs/design.md, 6).  The sleeper reads the
 * wake word before it looks at the ring, so a bump after that look makes
 * its futex wait return at once; RING_ARM_NAMED, a thread blocked in one
 * call for longer, by a datagram to the wake socket the direction's name
 * word names (written by the sleeper before it arms).  Any other bit set (a
 * peer's scribble) rings the doorbell.  `promise` is the armer's promise to
 * pay for the barrier, or NULL when it may not be relied on (this process is
 * not registered): then the taker fences itself.  Returns the bits taken,
 * 0: none. */
#define RING_ARM_BELL  1u
#define RING_ARM_FUTEX 2u
#define RING_ARM_NAMED 4u
void ring_arm(uint32_t *flag, uint32_t how);

/* Inline: every write and every read that made room calls it (out of line,
 * its call and frame were 15 of the 26 instructions it costs). */
static inline __attribute__((always_inline)) uint32_t ring_take_armed(uint32_t *flag,
                                                                     const uint32_t *promise)
{
    /* Order our index store before the flag load: a fence, unless the armer
     * pays for it (barrier.c).  A promise withdrawn after we looked is seen
     * when we look again below, after the flag: then we fence after all. */
    int light = promise && __atomic_load_n(promise, __ATOMIC_RELAXED);
    if (light)
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    else
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(flag, __ATOMIC_RELAXED) == 0) {
        if (!light || __atomic_load_n(promise, __ATOMIC_ACQUIRE))
            return 0;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(flag, __ATOMIC_RELAXED) == 0)
            return 0;
    }
    return __atomic_exchange_n(flag, 0, __ATOMIC_SEQ_CST);
}

#endif /* LOOPFAST_RING_H */
