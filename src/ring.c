/*
 * ring.c - the byte ring between two processes (see ring.h for the rules).
 *
 * A load of the peer's index happens at most once per call, through an
 * atomic acquire load into a local, and is checked before it is used.
 */
#include "ring.h"
#include "ring_inline.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <errno.h>

#include "internal.h"   /* coarse_ns */

/* The writer's origin for this call (docs/design.md, 5: the ring's origin):
 * moved to head when the ring is empty, head went REWIND_AT past it, and
 * the last hunt for an empty ring began REWIND_GAP_NS ago.  The gap keeps a
 * fast connection walking the ring: a line written again while the reader
 * still caches it costs the writer a trip to the reader's core (a 64 B round trip went from
 * 1.07x to 1.2x the bare ring's with a 16 KiB window), where a line a lap
 * old comes from memory, ahead of need.  Whether the gap is over is read
 * from the clock once per REWIND_LOOK bytes; once it is, the writer hunts
 * for an empty ring, loading tail at each write (a request's reply finds it
 * empty at its first write, not at one of its later ones) for at most
 * HUNT_LOOKS writes, so that a writer whose reader never drains pays a load
 * per message only for that many. */
#define REWIND_GAP_NS (100u * 1000000)

int ring_size_valid(uint64_t size)
{
    return size >= RING_MIN_SIZE && size <= RING_MAX_SIZE && (size & (size - 1)) == 0;
}

void ring_init(struct ring *r, struct ring_ctl *ctl, void *data, uint64_t size)
{
    r->ctl = ctl;
    r->data = data;
    r->size = size;
    r->tail_seen = r->head_seen = 0;   /* any value is safe: a stale one is loaded again */
    r->base_seen = r->from_seen = r->mid_base_seen = r->mid_from_seen = r->old_base_seen = 0;
    r->places_seen = UINT64_MAX;   /* never a count: loaded at the first read */
    r->rewind_look = r->hunted_at = 0;
    r->hunt = 0;
    r->rewind_gap = REWIND_GAP_NS;
    r->hold = size;
    r->own_bound = 0;
    r->budget = NULL;
    r->window = 0;
    r->populated[0] = r->populated[1] = 0;
    r->punches_seen = __atomic_load_n(&ctl->punches, __ATOMIC_RELAXED);
}

/* Published for the reader, which must not wait for more bytes than the
 * window lets come (conn.c, SO_RCVLOWAT). */
static void window_set(struct ring *r, uint64_t window)
{
    __atomic_store_n(&r->window, window, __ATOMIC_RELAXED);
    uint32_t shown = window < r->size ? (uint32_t)window : 0;
    if (__atomic_load_n(&r->ctl->writer_window, __ATOMIC_RELAXED) != shown)
        __atomic_store_n(&r->ctl->writer_window, shown, __ATOMIC_RELAXED);
}

void ring_limit(struct ring *r, int64_t *budget)
{
    r->budget = budget;
    if (budget)
        window_set(r, RING_WINDOW_MIN < r->size ? RING_WINDOW_MIN : r->size);
}

void ring_pages_punched(struct ring *r)
{
    r->populated[1] = 0;   /* punched: its pages are to be mapped again, the reader's too */
    __atomic_store_n(&r->ctl->punches, __atomic_load_n(&r->ctl->punches, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    if (r->budget)
        window_set(r, RING_WINDOW_MIN < r->size ? RING_WINDOW_MIN : r->size);
}

uint64_t ring_capacity(const struct ring *r)
{
    return ring_capacity_inline(r);
}

void ring_hold(struct ring *r, uint64_t hold)
{
    r->hold = hold && hold < r->size ? hold : r->size;
}

/* ---- the places of the bytes ----
 *
 * A byte's place is its index minus an origin, masked.  Mostly one origin,
 * `base`, serves every byte.  A paced writer (RING_PACE) starts again at
 * the ring's start at the end of its first RING_PACE bytes while bytes
 * below are unread: from then on (base_from) new bytes are placed from a new
 * origin, the unread ones keep theirs (mid_base).  If its reader then stops
 * reading and the writer goes on to its whole capacity, new bytes go after
 * the unread ones' end, up to the ring's end, from a third origin (the
 * oldest then old_base).  So at most three origins are in use, and a move
 * needs the reader to be past the move before the one before it: ring.c's
 * writer_room.  The words change together under a count the reader checks
 * (a seqlock): a reader loads them after head, only when the count moved. */
static void places_set(struct ring *r, uint64_t from, uint64_t origin, int keep_older)
{
    struct ring_ctl *k = r->ctl;
    uint64_t count = __atomic_load_n(&k->places, __ATOMIC_RELAXED);
    __atomic_store_n(&k->places, count + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);   /* the odd count before the words */
    if (keep_older) {
        __atomic_store_n(&k->old_base, __atomic_load_n(&k->mid_base, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
        __atomic_store_n(&k->mid_base, __atomic_load_n(&k->base, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
        __atomic_store_n(&k->mid_from, __atomic_load_n(&k->base_from, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(&k->old_base, origin, __ATOMIC_RELAXED);
        __atomic_store_n(&k->mid_base, origin, __ATOMIC_RELAXED);
        __atomic_store_n(&k->mid_from, from, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&k->base_from, from, __ATOMIC_RELAXED);
    __atomic_store_n(&k->base, origin, __ATOMIC_RELAXED);
    __atomic_store_n(&k->places, count + 2, __ATOMIC_RELEASE);
}

/* A writer that died between the two counts leaves them odd: after this
 * many looks the reader takes the words as they are (a garbled stream of a
 * dead writer at worst, never a place outside the ring). */
#define PLACES_LOOKS 64

__attribute__((noinline)) void ring_places_copy(struct ring *r, uint64_t count)
{
    const struct ring_ctl *k = r->ctl;
    for (int looks = 0;; looks++) {
        r->base_seen = __atomic_load_n(&k->base, __ATOMIC_RELAXED);
        r->from_seen = __atomic_load_n(&k->base_from, __ATOMIC_RELAXED);
        r->mid_base_seen = __atomic_load_n(&k->mid_base, __ATOMIC_RELAXED);
        r->mid_from_seen = __atomic_load_n(&k->mid_from, __ATOMIC_RELAXED);
        r->old_base_seen = __atomic_load_n(&k->old_base, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);   /* the words before the count again */
        uint64_t again = __atomic_load_n(&k->places, __ATOMIC_RELAXED);
        if ((again == count && !(count & 1)) || looks == PLACES_LOOKS)
            break;
        count = load_acquire(&k->places);
    }
    r->places_seen = count;
}

uint64_t ring_pace(const struct ring *r)
{
    return pace_for(r, ring_capacity(r));
}

/* Reads both indices once; returns the bytes in use or -1 when corrupt. */
static int64_t ring_used(const struct ring *r, uint64_t *head, uint64_t *tail)
{
    *head = load_acquire(&r->ctl->head);
    *tail = load_acquire(&r->ctl->tail);
    uint64_t used = *head - *tail;
    return used <= r->size ? (int64_t)used : -1;
}

ssize_t ring_readable(const struct ring *r)
{
    uint64_t head, tail;
    return ring_used(r, &head, &tail);
}

/* The capacity, or a lower limit a caller keeps to. */
static uint64_t capacity_upto(const struct ring *r, uint64_t limit)
{
    uint64_t cap = ring_capacity(r);
    return limit && limit < cap ? limit : cap;
}

ssize_t ring_writable(struct ring *r)
{
    return ring_writable_upto(r, 0);
}

/* The writer's room with at most `limit` bytes in flight, and in *used
 * what is in flight now, from one reading of the indices; -1 corrupt. */
static ssize_t room_and_used(struct ring *r, uint64_t limit, int64_t *used)
{
    uint64_t head, tail;
    *used = ring_used(r, &head, &tail);
    if (*used < 0)
        return -1;
    uint64_t room = room_for(capacity_upto(r, limit), (uint64_t)*used);
    uint64_t base = __atomic_load_n(&r->ctl->base, __ATOMIC_RELAXED);
    if (__builtin_expect(r->budget != NULL, 0) && room)
        room = ring_window_room(r, head, tail, &base, room, 1, 1);
    if (room)
        room = writer_room(r, head, tail, &base, room, 1, limit, 1);
    return (ssize_t)room;
}

ssize_t ring_writable_upto(struct ring *r, uint64_t limit)
{
    int64_t used;
    return room_and_used(r, limit, &used);
}

/* A program that polls for POLLOUT and then writes more than the room
 * blocks in its write, and reads nothing meanwhile: socat relaying a
 * 200 MB echo through stunnel, where every ring on the way filled and each
 * process waited in a write for the next one, for good.  The kernel says
 * POLLOUT only once the free space is at least half of what is queued, so
 * a write after it rarely blocks. */
int ring_poll_writable(struct ring *r)
{
    return ring_poll_writable_upto(r, 0);
}

int ring_poll_writable_upto(struct ring *r, uint64_t limit)
{
    int64_t used;
    ssize_t room = room_and_used(r, limit, &used);
    if (room < 0)
        return -1;
    return room > 0 && (uint64_t)room >= (uint64_t)used / 2;
}

/* ---- pages mapped ahead of the copies ----
 *
 * A page of the ring first touched by a copy costs a fault in each
 * process, 14 us for the writer and 8 us for the reader on a virtual
 * machine that traps them (PVM); madvise(MADV_POPULATE_*) maps a page for
 * 2.9 us, 1.0 us a page sixteen at a time.  A fresh slot's first lap and
 * every burst after a trim paid them: 64 KiB after 700 ms idle took
 * 727-901 us against the kernel's 245-363.  So a copy that reaches past
 * the pages this process has mapped first maps up to there and some ahead
 * (the writer: as much again as it has, at most POPULATE_AHEAD more, so
 * that a connection that moves little keeps few pages; the reader: none,
 * as a page the writer has not written would be allocated).  Under a
 * memory limit never past the window (its pages are paid for from the
 * budget).  Not in a sandbox, where madvise may be outside the allow-list;
 * not at all once the kernel says it has no such advice (before 5.14). */
#define POPULATE_AHEAD (64u << 10)
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#define PAGE 4096u

static int populate_unknown;   /* the kernel refused the advice */

void ring_populate(struct ring *r, uint64_t need, int for_write)
{
    uint64_t have = r->populated[for_write], to = need;
    if (for_write) {
        uint64_t step = have < POPULATE_AHEAD ? (have ? have : PAGE) : POPULATE_AHEAD;
        if (to < have + step)
            to = have + step;
        if (r->budget) {   /* the window's pages are paid for, no further */
            uint64_t window = __atomic_load_n(&r->window, __ATOMIC_RELAXED);
            if (to > window)
                to = window > need ? window : need;
        }
    }
    to = (to + PAGE - 1) & ~(uint64_t)(PAGE - 1);
    if (to > r->size)
        to = r->size;
    r->populated[for_write] = to;   /* even if refused: the copies then fault as before */
    if (lf_confined || __atomic_load_n(&populate_unknown, __ATOMIC_RELAXED) || to <= have)
        return;
    int advice = for_write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
    if (madvise(r->data + have, to - have, advice) < 0 &&
        (errno == EINVAL || errno == ENOSYS || errno == EPERM))
        __atomic_store_n(&populate_unknown, 1, __ATOMIC_RELAXED);
}

/* copy_in of a buffer that may be long, the head published every RING_STEP
 * bytes but the last (the caller's). */
void ring_copy_in_steps(struct ring *r, uint64_t base, uint64_t head, const unsigned char *src,
                          size_t len, uint64_t *given)
{
    for (size_t k = 0; k < len;) {
        size_t piece = len - k < RING_STEP ? len - k : RING_STEP;
        copy_in(r, base, head + k, src + k, piece);
        k += piece;
        if (head + k - *given >= RING_STEP && k < len)
            store_release(&r->ctl->head, *given = head + k);
    }
}

/* Bytes below from_seen keep their places from the origins before (the
 * places, below): `below` of them are from pos on.  A part of no bytes is
 * not copied: its place, from an origin past it, lies near the ring's end,
 * and populated_for would map every page up to there for this reader (a
 * paced stream's reader allocated its whole 8 MiB ring, zeroed). */
__attribute__((noinline)) void ring_copy_out_places(struct ring *r, uint64_t pos,
                                                      unsigned char *dst, size_t len,
                                                      uint64_t below)
{
    size_t n = below < len ? (size_t)below : len;
    uint64_t below_mid = r->mid_from_seen - pos;
    if (below_mid - 1 < (uint64_t)INT64_MAX) {   /* pos < mid_from_seen */
        size_t k = below_mid < n ? (size_t)below_mid : n;
        copy_placed(r, r->old_base_seen, pos, dst, k);
        pos += k, dst += k, len -= k, n -= k;
    }
    if (n)
        copy_placed(r, r->mid_base_seen, pos, dst, n);
    pos += n, dst += n, len -= n;
    if (len)
        copy_placed(r, r->base_seen, pos, dst, len);
}

/* copy_out's twin of copy_in_steps: the tail published every RING_STEP
 * bytes but the last (the caller's), unless only peeking. */
void ring_copy_out_steps(struct ring *r, uint64_t tail, unsigned char *dst, size_t len,
                           uint64_t *given, int peek)
{
    for (size_t k = 0; k < len;) {
        size_t piece = len - k < RING_STEP ? len - k : RING_STEP;
        copy_out(r, tail + k, dst + k, piece);
        k += piece;
        if (!peek && tail + k - *given >= RING_STEP && k < len)
            store_release(&r->ctl->tail, *given = tail + k);
    }
}

static size_t iov_total(const struct iovec *iov, int iovcnt, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt && n < cap; i++)
        n += iov[i].iov_len < cap - n ? iov[i].iov_len : cap - n;
    return n;
}

/* The rare part of writer_base: a look due, or a hunt on. */
__attribute__((noinline)) uint64_t ring_writer_rebase(struct ring *r, uint64_t head,
                                                       uint64_t tail, uint64_t base)
{
    if (!r->hunt) {
        r->rewind_look = head + REWIND_LOOK;
        uint64_t now = coarse_ns();
        if (now - r->hunted_at < r->rewind_gap)
            return base;
        r->hunted_at = now;   /* a hunt that finds nothing waits the gap too */
        r->hunt = HUNT_LOOKS;
    }
    if (tail != head && load_acquire(&r->ctl->tail) != head) {
        r->hunt--;
        return base;
    }
    r->hunt = 0;
    r->tail_seen = head;
    places_set(r, head, head, 0);
    return head;
}

/* Under a memory limit (memlimit.c): of `room`, what needs no page the
 * budget cannot pay for.  The writer keeps to the ring's first `window`
 * bytes from the origin, and grows the window by whole pages while the
 * budget lasts; once it is spent, at the window's end it waits for the
 * reader to empty the ring and starts again at the origin (moved to head:
 * the reader has no byte left whose place could change).  Growing comes
 * first: starting again at every empty ring would write lines the reader
 * still caches (64 B messages: 55% of the bare ring's rate against 77%).
 * `want`: the bytes the call would write.  dry: only say what a write
 * would find (readiness), change nothing. */
__attribute__((noinline)) uint64_t ring_window_room(struct ring *r, uint64_t head,
                                                      uint64_t tail, uint64_t *base,
                                                      uint64_t room, uint64_t want, int dry)
{
    uint64_t window = __atomic_load_n(&r->window, __ATOMIC_RELAXED);
    uint64_t off = (head - *base) & (r->size - 1), take = want < room ? want : room;
    uint64_t need = off + take < r->size ? off + take : r->size;
    if (need > window && window < r->size) {
        uint64_t grown = memlimit_take(r->budget, ((need + 4095) & ~4095ull) - window, dry);
        window += grown;
        if (!dry && grown)
            window_set(r, window);
    }
    if (window >= r->size)
        return room;   /* every page paid for: the whole ring */
    if (off && (off >= window || window - off < take) &&
        (tail == head || load_acquire(&r->ctl->tail) == head)) {
        off = 0;
        if (!dry) {
            r->tail_seen = head;
            places_set(r, head, head, 0);
            *base = head;
        }
    }
    return off >= window ? 0 : window - off < room ? window - off : room;
}

/* The reader's index as it is now; a dry look (a waiter's, without the
 * lock) keeps it to itself. */
static uint64_t fresh_tail(struct ring *r, int dry)
{
    uint64_t tail = load_acquire(&r->ctl->tail);
    if (!dry)
        r->tail_seen = tail;
    return tail;
}

/* A writer that keeps to `limit` bytes in flight (RING_PACE) keeps their
 * places within the ring's first `limit` bytes from the origin too, so that
 * the lines it writes are the ones its reader has just read, in the caches,
 * not those of a lap of the whole ring (8 MiB: a stream at 20 against 30
 * GB/s).  At that end it starts again at the ring's start (the places,
 * above): at once when the ring is empty, otherwise once every unread byte
 * is placed from the current origin and no byte since it wrapped.  Then the
 * new bytes' places, below limit - used, lie before the oldest unread
 * byte's, at (head - base) - used >= limit - used.  It starts again only
 * up to 2 * limit past the origin, so that an unpaced writer (its reader
 * stopped: conn.c's pace) still finds its whole capacity after the unread
 * bytes' end (ring_pace asks for capacity + 2 * limit <= size). */
__attribute__((noinline)) uint64_t ring_placed_room(struct ring *r, uint64_t head,
                                                     uint64_t tail, uint64_t *base,
                                                     uint64_t room, uint64_t take,
                                                     uint64_t limit, int dry)
{
    const struct ring_ctl *k = r->ctl;
    uint64_t from = __atomic_load_n(&k->base_from, __ATOMIC_RELAXED), since = head - *base;
    if (tail - from > head - from)   /* an old look may place the reader before from */
        tail = fresh_tail(r, dry);
    if (tail - from <= head - from) {   /* every unread byte placed from base */
        if (!limit)
            return room;   /* the usual ring: at most its capacity in flight, masked */
        /* "Bytes unread far past the origin: no room" must be so now: span()
         * loads the tail only when the last one seen leaves too little room,
         * and an old one said so to a paced writer whose reader had read
         * everything, while its waiter's fresh look said room: the writer
         * spun between the two for seconds (iperf2, SO_SNDTIMEO). */
        if (tail != head && since > 2 * (uint64_t)limit)
            tail = fresh_tail(r, dry);
        if (tail != head && (since < limit || since > 2 * (uint64_t)limit))
            return since < limit ? (limit - since < room ? limit - since : room) : 0;
        if (tail != head && room > tail - *base)
            room = tail - *base;   /* (the paced capacity keeps to it already) */
        if (!dry) {
            places_set(r, head, head, tail != head);
            *base = head;
        }
        return room;
    }
    uint64_t mid_base = __atomic_load_n(&k->mid_base, __ATOMIC_RELAXED);
    if (*base != from)   /* grown past the unread bytes' end: up to the ring's end */
        return since < r->size ? (r->size - since < room ? r->size - since : room) : 0;
    /* started again at the ring's start: below the oldest unread byte's place */
    uint64_t oldest = (tail - mid_base) & (r->size - 1);
    uint64_t below = oldest > since ? oldest - since : 0;
    if (below >= take || limit)
        return below < room ? below : room;
    uint64_t end = from - mid_base;   /* the unread bytes' end: where the writer started again */
    if (end >= r->size)
        return below < room ? below : room;   /* not a start of ours: a scribbled origin */
    if (!dry) {
        places_set(r, head, head - end, 1);
        *base = head - end;
    }
    return r->size - end < room ? r->size - end : room;
}

ssize_t ring_writev(struct ring *r, const struct iovec *iov, int iovcnt)
{
    return ring_writev_upto(r, iov, iovcnt, 0);
}

/* The room a writer of `want` bytes has now, with at most `limit` in
 * flight (cap: capacity_upto's), and where its bytes go: *head, and *base
 * (ring_writev_upto's and ring_write_file's common start); -1 corrupt. */
static inline __attribute__((always_inline)) int64_t
room_to_write(struct ring *r, uint64_t cap, size_t want, uint64_t limit, uint64_t *head,
              uint64_t *base)
{
    uint64_t tail;
    int64_t used = span(r, head, &tail, 1, want, cap);
    if (used < 0)
        return -1;
    uint64_t room = room_for(cap, (uint64_t)used);
    *base = room ? writer_base(r, *head, tail) : 0;
    if (__builtin_expect(r->budget != NULL, 0) && room)
        room = ring_window_room(r, *head, tail, base, room, want, 0);
    if (room)
        room = writer_room(r, *head, tail, base, room, want, limit, 0);
    return (int64_t)room;
}

ssize_t ring_writev_upto(struct ring *r, const struct iovec *iov, int iovcnt, uint64_t limit)
{
    uint64_t head, base, cap = capacity_upto(r, limit);
    int64_t got = room_to_write(r, cap, iov_total(iov, iovcnt, cap), limit, &head, &base);
    if (got < 0)
        return -1;
    size_t room = (size_t)got, done = 0;
    uint64_t given = head;
    for (int i = 0; i < iovcnt && done < room; i++) {
        size_t n = iov[i].iov_len < room - done ? iov[i].iov_len : room - done;
        ring_copy_in_steps(r, base, head + done, iov[i].iov_base, n, &given);
        done += n;
    }
    if (done)
        store_release(&r->ctl->head, head + done);
    return (ssize_t)done;
}

/* pread() of up to len bytes at pos straight into the ring at index at,
 * no further than the ring's end: the bytes read, 0 at the file's end, -1
 * with errno; *asked: how many it asked for. */
static ssize_t read_in(struct ring *r, uint64_t base, uint64_t at, int fd, off_t pos, size_t len,
                       size_t *asked)
{
    size_t off = (at - base) & (r->size - 1);
    *asked = r->size - off < len ? r->size - off : len;
    populated_for(r, off, *asked, 1);
    ssize_t n;
    do
        n = pread(fd, r->data + off, *asked, pos);
    while (n < 0 && errno == EINTR);
    return n;
}

ssize_t ring_write_file(struct ring *r, int fd, off_t pos, size_t len, uint64_t limit, int *err)
{
    uint64_t head, base;
    int64_t got = room_to_write(r, capacity_upto(r, limit), len, limit, &head, &base);
    if (got < 0)
        return -1;
    size_t room = (size_t)got < len ? (size_t)got : len, done = 0;
    uint64_t given = head;
    *err = 0;
    while (done < room) {
        size_t asked, piece = room - done < RING_STEP ? room - done : RING_STEP;
        ssize_t n = read_in(r, base, head + done, fd, pos + (off_t)done, piece, &asked);
        if (n <= 0) {
            *err = n < 0 ? errno : 0;
            break;
        }
        done += (size_t)n;
        if ((size_t)n < asked)
            break;   /* the file's end, most likely: the next call says */
        if (head + done - given >= RING_STEP && done < room)
            store_release(&r->ctl->head, given = head + done);
    }
    if (done)
        store_release(&r->ctl->head, head + done);
    else if (room)
        return RING_SOURCE_END;
    return (ssize_t)done;
}

ssize_t ring_write_whole(struct ring *r, const void *buf, size_t len, uint64_t window)
{
    return ring_write_whole_inline(r, buf, len, window);
}

ssize_t ring_write(struct ring *r, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return ring_writev(r, &iov, 1);
}

ssize_t ring_readv(struct ring *r, const struct iovec *iov, int iovcnt, int peek)
{
    uint64_t head, tail;
    int64_t avail = span(r, &head, &tail, 0, iov_total(iov, iovcnt, r->size), r->size);
    if (avail < 0)
        return -1;
    punches_look(r);
    size_t done = 0;
    uint64_t given = tail;
    for (int i = 0; i < iovcnt && done < (size_t)avail; i++) {
        size_t n = iov[i].iov_len < (size_t)avail - done ? iov[i].iov_len : (size_t)avail - done;
        ring_copy_out_steps(r, tail + done, iov[i].iov_base, n, &given, peek);
        done += n;
    }
    if (done && !peek)
        store_release(&r->ctl->tail, tail + done);
    return (ssize_t)done;
}

/* ring_readv of one buffer, without the iovec's loops: a 64 B read() took
 * 185 instructions through them. */
ssize_t ring_read(struct ring *r, void *buf, size_t len, int peek)
{
    return ring_read_inline(r, buf, len, peek);
}

void ring_arm(uint32_t *flag, uint32_t how)
{
    __atomic_fetch_or(flag, how, __ATOMIC_SEQ_CST);   /* the barrier follows (ring.h) */
}


