/*
 * trim.c - giving a ring's pages back once its connection is idle, as the
 * kernel frees a socket's buffers once their bytes are read.
 *
 * A ring's pages are allocated as they are first written and would stay
 * until the connection closes: 1000 idle connections that once moved 2 MiB
 * each way would keep 2 GB.  A hole punched in the memfd frees a page for
 * both processes at once.  A later write faults a fresh zeroed page in,
 * which costs tens of microseconds a page on a virtual machine, so only
 * rings that stopped moving are trimmed, never a busy one.
 *
 * Who may punch: the ring's writer, whole pages inside its free region
 * [head, tail + size).  Only the writer writes there and the reader only
 * reads [tail, head) (it publishes each part of its tail after copying
 * it; we load it with acquire), so the punch races with no reader.  Writers of this end
 * are held off: this process's by the tx lock (tried, never waited for) and
 * by blocking signals (a handler may write), other processes by punching
 * only while this process is the end's only holder (fork() counts the
 * child before it exists, and the atfork handler waits for a round in
 * progress).  Every range comes from two checked indices and is masked into
 * the ring: a peer lying about its tail can only make us punch bytes it has
 * not read yet, its own data.
 *
 * When: a ring whose writer wrote more than TRIM_KEEP since its last punch
 * is watched (conn.c's write path calls trim_note_write).  Before a thread
 * sleeps (reap_now, and the sleeping loops of wait.c, poll.c and epoll.c
 * through trim_before_sleep), a round looks at every watched ring, one
 * round every ROUND_NS at most: a ring whose indices did not move since the
 * previous round is idle, and its free region is punched.  A ring whose
 * reader still holds unread bytes stays watched until it drains.  While
 * rings are watched one thread, the keeper, has its sleeps cut short at the
 * next round, so a program that sleeps in loopfast gives an idle
 * connection's pages back within about two rounds; one that sleeps where
 * loopfast cannot see (nanosleep, waitpid, a read on a pipe) does so when
 * it next waits in loopfast.  Only one: cutting every sleeper's sleep woke
 * each idle thread of a pool 2.5 times a second for one busy connection.
 * The keeper holds a lease it renews at each of its sleeps; the others
 * sleep to its end, and the first to sleep after it ran out (the keeper
 * exited or sleeps elsewhere) takes it.
 * The same rounds punch the slots of closed connections kept warm for
 * the next one (link.c) once they have stayed free long enough.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define ROUND_NS     (400ull * 1000000)    /* between two looks at a ring */
#define ROUND_MAX_NS (1200ull * 1000000)   /* the same while nothing moves */
#define RESUME_NS    (10ull * 1000000)     /* a round cut short goes on after this */
#define LOOKS_PER_CALL 64                  /* the cost bound of one call */
#define LEASE_NS     (5000ull * 1000000)   /* a keeper away this long left the rounds */
#define COARSE_LAG_NS (10ull * 1000000)     /* one tick of the coarse clock at HZ 100 */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lf_conn *first, *last;       /* the watched rings, oldest look first */
static unsigned round_no;
static int round_open, round_moved;
static uint64_t round_gap = ROUND_NS;
static uint64_t next_round = UINT64_MAX;   /* UINT64_MAX: nothing watched */

static void lock_for_fork(void) { lf_lock(&lock); }
static void unlock_after_fork(void) { lf_unlock(&lock); }

__attribute__((constructor)) static void trim_init(void)
{
    /* A fork waits for a punch in progress: the child is counted as a
     * holder before, so no punch starts while it can write. */
    lf_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

static void unlink_conn(struct lf_conn *c)
{
    struct trim_state *t = &c->trim;
    *(t->prev ? &t->prev->trim.next : &first) = t->next;
    *(t->next ? &t->next->trim.prev : &last) = t->prev;
    t->prev = t->next = NULL;
    __atomic_store_n(&t->listed, 0, __ATOMIC_RELAXED);
}

static void append(struct lf_conn *c)
{
    c->trim.prev = last;
    c->trim.next = NULL;
    *(last ? &last->trim.next : &first) = c;
    last = c;
}

void trim_watch(struct lf_conn *c)
{
    lf_lock(&lock);
    if (!c->trim.listed) {
        __atomic_store_n(&c->trim.listed, 1, __ATOMIC_RELAXED);
        c->trim.seen_head = UINT64_MAX;   /* the first look only takes note */
        c->trim.round = 0;
        append(c);
        if (__atomic_load_n(&next_round, __ATOMIC_RELAXED) == UINT64_MAX)
            __atomic_store_n(&next_round, monotonic_ns() + ROUND_NS, __ATOMIC_RELAXED);
    }
    lf_unlock(&lock);
}

void trim_forget(struct lf_conn *c)
{
    lf_lock(&lock);
    if (c->trim.listed)
        unlink_conn(c);
    lf_unlock(&lock);
}

/* Punches the whole pages of bytes [start, start + len) of the mapping. */
static void punch(struct lf_conn *c, uint64_t start, uint64_t len)
{
    static uint64_t page;
    if (!page)
        page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t lo = (start + page - 1) & ~(page - 1), hi = (start + len) & ~(page - 1);
    if (hi <= lo || hi > c->map_len)
        return;
    off_t at = (off_t)(link_slot_offset(c->link, c->slot) + lo);
    int old = nocancel_begin();   /* the tx lock is held */
    if (fallocate(c->link->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, (off_t)(hi - lo)) < 0)
        madvise((char *)c->sh + lo, hi - lo, MADV_REMOVE);
    nocancel_end(old);
}

/* The writer's free region [head, tail + size), in at most two pieces; its
 * places counted from the ring's origin, which only a writer moves (we hold
 * them off). */
static void punch_free(struct lf_conn *c, uint64_t head, uint64_t tail)
{
    const struct ring *r = &c->tx;
    uint64_t at = (uint64_t)(r->data - (unsigned char *)c->sh);
    uint64_t origin = __atomic_load_n(&r->ctl->base, __ATOMIC_RELAXED);
    uint64_t len = tail + r->size - head, off = (head - origin) & (r->size - 1);
    uint64_t piece = r->size - off < len ? r->size - off : len;
    punch(c, at + off, piece);
    punch(c, at, len - piece);
    ring_pages_punched(&c->tx);   /* to be paid for again under a memory limit, and mapped again */
}

/* Did the ring's indices move since the last look?  Noted for the next. */
static int moved_since_look(struct lf_conn *c, uint64_t head, uint64_t tail)
{
    struct trim_state *t = &c->trim;
    if (head == t->seen_head && tail == t->seen_tail)
        return 0;
    t->seen_head = head;
    t->seen_tail = tail;
    round_moved = 1;
    return 1;
}

static int ring_moved(struct lf_conn *c)
{
    return moved_since_look(c, __atomic_load_n(&c->tx.ctl->head, __ATOMIC_ACQUIRE),
                            __atomic_load_n(&c->tx.ctl->tail, __ATOMIC_ACQUIRE));
}

/* One look at a ring whose writer this process holds alone, tx lock held:
 * 1 while it must stay watched. */
static int look_locked(struct lf_conn *c)
{
    struct trim_state *t = &c->trim;
    struct ring *r = &c->tx;
    if (__atomic_load_n(&c->sh->side[c->me].holders, __ATOMIC_ACQUIRE) != 1)
        return 0;   /* forked holders may write it: not ours alone to trim */
    uint64_t head = __atomic_load_n(&r->ctl->head, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE);
    if (head - tail > r->size)
        return 0;   /* corrupt: the next call on it says so */
    if (moved_since_look(c, head, tail))
        return 1;
    uint64_t touched = head - t->kept_from;
    /* (unread bytes below the origin sit where the origin before placed
     * them, outside what punch_free counts as free: not now) */
    uint64_t from = __atomic_load_n(&r->ctl->base_from, __ATOMIC_RELAXED);
    if (touched > TRIM_KEEP && tail != t->kept_from && tail - from <= head - from) {
        punch_free(c, head, tail);
        __atomic_store_n(&t->kept_from, tail, __ATOMIC_RELAXED);
        touched = head - tail;
    }
    return touched > TRIM_KEEP;   /* unread bytes hold pages: wait for the reader */
}

static int look(struct lf_conn *c)
{
    signals_hold();
    if (pthread_mutex_trylock(&c->tx_lock) != 0) {
        signals_release();
        round_moved = 1;   /* a writer is at work: not idle */
        return 1;
    }
    tsan_acquire(&c->tx_lock);
    /* a thread that owns the direction writes without the lock: a ring
     * still moving is left to it, an idle one taken back (quick.c) */
    struct lf_bias *b = &c->bias[0];   /* the tx direction's */
    int keep = 1;
    if ((!quick_owned_elsewhere(b) || !ring_moved(c)) && quick_try_take_back(b))
        keep = look_locked(c);
    lf_unlock(&c->tx_lock);
    return keep;
}

/* Looks at up to LOOKS_PER_CALL rings not yet seen this round; lock held. */
static void run_round(uint64_t now)
{
    if (!round_open) {
        round_open = 1;
        round_moved = 0;
        round_no++;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int looks = 0;
    while (first && first->trim.round != round_no && looks++ < LOOKS_PER_CALL) {
        struct lf_conn *c = first;
        unlink_conn(c);
        if (look(c)) {
            __atomic_store_n(&c->trim.listed, 1, __ATOMIC_RELAXED);
            c->trim.round = round_no;
            append(c);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    uint64_t next = UINT64_MAX;
    if (first && first->trim.round != round_no) {
        next = now + RESUME_NS;
    } else {
        round_open = 0;
        round_gap = round_moved ? ROUND_NS : (round_gap * 2 < ROUND_MAX_NS ? round_gap * 2 : ROUND_MAX_NS);
        if (first)
            next = now + round_gap;
    }
    __atomic_store_n(&next_round, next, __ATOMIC_RELAXED);
}

/* The next round's time, or the next closed slot's to be punched (link.c's
 * warm slots), whichever comes first. */
static uint64_t next_due(void)
{
    uint64_t round = __atomic_load_n(&next_round, __ATOMIC_RELAXED), warm = link_warm_due();
    return round < warm ? round : warm;
}

void trim_idle(void)
{
    /* fallocate is outside a sandbox's allow-list (sandbox.c): no trims there */
    uint64_t due = next_due();
    if (due == UINT64_MAX || lf_confined)
        return;
    /* Every epoll_wait and poll that may wait passes here: the exact clock
     * costs 20-30 ns on a VM (a fifth of a write, epoll_wait and read of
     * one message), the coarse one a few, and it trails by a tick at most.
     * Near the round the exact one decides, so that a keeper woken for it
     * finds it due. */
    if (coarse_ns() + COARSE_LAG_NS < due)
        return;
    uint64_t now = monotonic_ns();
    if (now < due)
        return;
    link_cool(now);
    if (now < __atomic_load_n(&next_round, __ATOMIC_RELAXED))
        return;
    lf_lock(&lock);
    if (now >= next_round)
        run_round(now);
    lf_unlock(&lock);
}

static __thread char this_thread;          /* its address names the thread */
static const char *keeper;                 /* the thread that keeps the rounds */
static uint64_t keeper_slept;              /* when it last went to sleep */

/* When this thread's sleep must end for the rounds due at `due`: then for
 * the keeper, at the end of its lease for any other thread.  A thread that
 * finds the lease run out takes it; two that race both take it for one
 * sleep, which costs one extra wake-up. */
static uint64_t rounds_wake_at(uint64_t due, uint64_t now)
{
    const char *k = __atomic_load_n(&keeper, __ATOMIC_RELAXED);
    uint64_t lease_end = __atomic_load_n(&keeper_slept, __ATOMIC_RELAXED) + LEASE_NS;
    if (k == &this_thread || now >= lease_end) {
        __atomic_store_n(&keeper, &this_thread, __ATOMIC_RELAXED);
        __atomic_store_n(&keeper_slept, now, __ATOMIC_RELAXED);
        return due;
    }
    return lease_end > due ? lease_end : due;
}

int trim_before_sleep(int timeout_ms)
{
    if (timeout_ms == 0 || lf_confined)
        return timeout_ms;
    trim_idle();
    uint64_t due = next_due();
    if (due == UINT64_MAX)
        return timeout_ms;
    uint64_t now = monotonic_ns();
    due = rounds_wake_at(due, now);
    uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 1;
    return timeout_ms < 0 || ms < (uint64_t)timeout_ms ? (int)ms : timeout_ms;
}
