/*
 * ring_inline.h - the ring's per-message steps, inline in the data calls.
 *
 * A 64 B read() or write() went through four functions (the entry point,
 * socket.c, conn.c, ring.c), and their frames were a quarter of its
 * instructions (docs/performance.md).  So the common steps of ring_read()
 * and ring_write_whole() live here, inline in ring.c and in conn.c's short
 * paths; what is rare (the places, a rewind, a memory limit, a copy longer
 * than RING_STEP) stays out of line in ring.c.  Only ring.c and conn.c
 * include this; the rules are ring.h's.
 */
#ifndef LOOPFAST_RING_INLINE_H
#define LOOPFAST_RING_INLINE_H

#include <string.h>

#include "ring.h"

/* A long copy publishes its index as it goes, every RING_STEP bytes: the
 * peer waiting for bytes or room starts on them while the rest is copied,
 * instead of after the whole copy (a 1 MiB read of a full 1 MiB ring held
 * its writer off for all of it). */
#define RING_STEP (64u << 10)

/* The writer's rewinds (ring.c, the origin): a look only every REWIND_LOOK
 * bytes, past REWIND_AT from the origin. */
#define REWIND_AT     (16u << 10)
#define REWIND_LOOK   (4u << 10)
#define HUNT_LOOKS    64u

/* ring.c's rare parts, out of line */
void ring_places_copy(struct ring *r, uint64_t count);
void ring_copy_out_places(struct ring *r, uint64_t pos, unsigned char *dst, size_t len,
                          uint64_t below);
uint64_t ring_writer_rebase(struct ring *r, uint64_t head, uint64_t tail, uint64_t base);
uint64_t ring_window_room(struct ring *r, uint64_t head, uint64_t tail, uint64_t *base,
                          uint64_t room, uint64_t want, int dry);
uint64_t ring_placed_room(struct ring *r, uint64_t head, uint64_t tail, uint64_t *base,
                          uint64_t room, uint64_t take, uint64_t limit, int dry);
void ring_copy_in_steps(struct ring *r, uint64_t base, uint64_t head, const unsigned char *src,
                        size_t len, uint64_t *given);
void ring_copy_out_steps(struct ring *r, uint64_t tail, unsigned char *dst, size_t len,
                         uint64_t *given, int peek);

static inline uint64_t room_for(uint64_t cap, uint64_t used)
{
    return used < cap ? cap - used : 0;
}

static inline uint64_t load_acquire(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store_release(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline __attribute__((always_inline)) void places_load(struct ring *r)
{
    uint64_t count = load_acquire(&r->ctl->places);
    if (__builtin_expect(count != r->places_seen, 0))
        ring_places_copy(r, count);
}

static inline uint64_t pace_for(const struct ring *r, uint64_t cap)
{
    return !r->budget && cap > RING_PACE && cap + 2 * (uint64_t)RING_PACE <= r->size ? RING_PACE : 0;
}

/* Before a copy of len bytes at ring offset off. */
static inline __attribute__((always_inline)) void populated_for(struct ring *r, size_t off,
                                                                size_t len, int for_write)
{
    uint64_t need = off + len < r->size ? off + len : r->size;
    if (__builtin_expect(need > r->populated[for_write], 0))
        ring_populate(r, need, for_write);
}

/* Copies len bytes into the ring at index pos, wrapping once. */
static inline __attribute__((always_inline)) void copy_in(struct ring *r, uint64_t base, uint64_t pos, const unsigned char *src,
                    size_t len)
{
    size_t off = (pos - base) & (r->size - 1);
    size_t first = r->size - off < len ? r->size - off : len;
    populated_for(r, off, len, 1);
    memcpy(r->data + off, src, first);
    if (len > first)
        memcpy(r->data, src + first, len - first);
}

static inline __attribute__((always_inline)) void copy_placed(struct ring *r, uint64_t base,
                                                              uint64_t pos, unsigned char *dst,
                                                              size_t len)
{
    size_t off = (pos - base) & (r->size - 1);
    size_t first = r->size - off < len ? r->size - off : len;
    populated_for(r, off, len, 0);
    memcpy(dst, r->data + off, first);
    if (len > first)
        memcpy(dst + first, r->data, len - first);
}

/* The common case is one compare, inline (every read copies here); the
 * places' part out of line. */
static inline __attribute__((always_inline)) void copy_out(struct ring *r, uint64_t pos,
                                                           unsigned char *dst, size_t len)
{
    uint64_t below = r->from_seen - pos;
    if (__builtin_expect(below - 1 < (uint64_t)INT64_MAX, 0))   /* pos < from_seen */
        ring_copy_out_places(r, pos, dst, len, below);
    else
        copy_placed(r, r->base_seen, pos, dst, len);
}

/* Bytes between the indices, loading the peer's (the writer's peer owns the
 * tail, the reader's the head) only when the one last seen gives fewer than
 * `want` bytes of room or data; -1 when corrupt.  Our own index is always
 * loaded: forked holders take turns.  Inlined: its frame's stores queued
 * behind the head's on every message (docs/performance.md). */
static inline __attribute__((always_inline)) int64_t
span(struct ring *r, uint64_t *head, uint64_t *tail, int writer, size_t want, uint64_t cap)
{
    uint64_t *own = writer ? head : tail, *peer = writer ? tail : head;
    uint64_t *seen = writer ? &r->tail_seen : &r->head_seen;
    *own = load_acquire(writer ? &r->ctl->head : &r->ctl->tail);
    *peer = *seen;
    uint64_t used = *head - *tail;
    if (used > r->size || (writer ? room_for(cap, used) : used) < want) {
        *peer = *seen = load_acquire(writer ? &r->ctl->tail : &r->ctl->head);
        if (!writer)   /* after head: the places of the bytes below it */
            places_load(r);
        used = *head - *tail;
    }
    return used <= r->size ? (int64_t)used : -1;
}

/* Inlined: called on every write (out of line it cost 1-3 ns of a 20-30 ns one). */
static inline __attribute__((always_inline)) uint64_t writer_base(struct ring *r, uint64_t head,
                                                                 uint64_t tail)
{
    uint64_t base = __atomic_load_n(&r->ctl->base, __ATOMIC_RELAXED);
    uint64_t ahead = r->rewind_look - head;
    if (head - base < REWIND_AT || (!r->hunt && ahead != 0 && ahead <= REWIND_LOOK))
        return base;
    return ring_writer_rebase(r, head, tail, base);
}

/* The room the places leave a writer; the common case is two compares.
 * Within `limit` of the origin only while every unread byte is placed from
 * it: bytes of an origin before lie past the limit at which the writer
 * started again, a limit of that time, and a writer whose limit grew since
 * (a non-blocking writer's window, conn.c) would write over them
 * (placed_room keeps below the oldest). */
static inline __attribute__((always_inline)) uint64_t
writer_room(struct ring *r, uint64_t head, uint64_t tail, uint64_t *base, uint64_t room,
            uint64_t want, uint64_t limit, int dry)
{
    uint64_t take = want < room ? want : room;
    uint64_t from = __atomic_load_n(&r->ctl->base_from, __ATOMIC_RELAXED);
    if (__builtin_expect(tail - from <= head - from, 1) &&
        (!limit || __builtin_expect(((head - *base) & (r->size - 1)) + take <= limit, 1)))
        return room;
    return ring_placed_room(r, head, tail, base, room, take, limit, dry);
}

/* The writer gave pages back since we mapped them: map them again. */
static inline __attribute__((always_inline)) void punches_look(struct ring *r)
{
    uint64_t punches = __atomic_load_n(&r->ctl->punches, __ATOMIC_RELAXED);   /* base's line */
    if (__builtin_expect(punches != r->punches_seen, 0)) {
        r->punches_seen = punches;
        r->populated[0] = 0;
    }
}

static inline __attribute__((always_inline)) uint64_t ring_capacity_inline(const struct ring *r)
{
    /* The reader's word shares the line of the armed flags, which a writer
     * reads after each write anyway; the peer can only shrink its own stream. */
    uint64_t peer = __atomic_load_n(&r->ctl->reader_bound, __ATOMIC_RELAXED);
    uint64_t own = __atomic_load_n(&r->own_bound, __ATOMIC_RELAXED);
    return own && peer && own + peer < r->size ? own + peer : r->hold;
}

/* ring_write_whole (ring.h), inline. */
static inline __attribute__((always_inline)) ssize_t
ring_write_whole_inline(struct ring *r, const void *buf, size_t len, uint64_t window)
{
    uint64_t head, tail, cap = ring_capacity_inline(r), pace = pace_for(r, cap);
    if (pace && window && window < pace)
        pace = window;
    if (pace)
        cap = pace;
    int64_t used = span(r, &head, &tail, 1, len, cap);
    if (used < 0)
        return -1;
    if (room_for(cap, (uint64_t)used) < len)
        return 0;
    uint64_t base = writer_base(r, head, tail);
    if (__builtin_expect(r->budget != NULL, 0) &&
        ring_window_room(r, head, tail, &base, len, len, 0) < len)
        return 0;
    if (writer_room(r, head, tail, &base, len, len, pace, 0) < len)
        return 0;
    if (len <= RING_STEP) {
        copy_in(r, base, head, buf, len);
    } else {
        uint64_t given = head;
        ring_copy_in_steps(r, base, head, buf, len, &given);
    }
    store_release(&r->ctl->head, head + len);
    return (ssize_t)len;
}

/* ring_read (ring.h), inline. */
static inline __attribute__((always_inline)) ssize_t ring_read_inline(struct ring *r, void *buf,
                                                                     size_t len, int peek)
{
    uint64_t head, tail;
    int64_t avail = span(r, &head, &tail, 0, len < r->size ? len : r->size, r->size);
    if (avail < 0)
        return -1;
    punches_look(r);
    size_t n = len < (size_t)avail ? len : (size_t)avail;
    if (n <= RING_STEP) {
        copy_out(r, tail, buf, n);
    } else {
        uint64_t given = tail;
        ring_copy_out_steps(r, tail, buf, n, &given, peek);
    }
    if (n && !peek)
        store_release(&r->ctl->tail, tail + n);
    return (ssize_t)n;
}

#endif /* LOOPFAST_RING_INLINE_H */
