/*
 * fdtable.c - which descriptors are loopfast's, and what each one is.
 *
 * A two-level table maps a descriptor number to its struct lf_sock (dup'ed
 * descriptors share one).  A lookup is two loads, so calls on descriptors
 * that are not ours cost next to nothing.
 *
 * lf_sock memory is type-stable: it is recycled through a free list and never
 * returned to malloc, so a lookup racing with close() may touch a recycled
 * struct but never freed memory.  `users` counts table slots plus calls in
 * flight (and the creator's reference, which sock_new returns and the creator
 * drops with sock_put); the struct is torn down when it drops to zero, and a
 * lookup that finds it dead or moved backs off.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK_BITS FDTABLE_CHUNK_BITS
#define CHUNK_SIZE FDTABLE_CHUNK
#define TOP_SIZE   FDTABLE_TOP
#define DEAD       (-(1 << 30))

/* A slot's value while a threaded close() of its number is between our
 * forgetting the socket and the kernel's close (fdtable_entomb): a call
 * that finds it waits for the close, then gets the kernel's answer. */
#define TOMB FDTABLE_TOMB

struct lf_sock **fdtable_top[FDTABLE_TOP];

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lf_sock *free_list;
static struct lf_sock *kept_list;   /* socks whose TCP socket is kept for blocked calls */

/* The slot of fd if its chunk exists: two loads, inlined into every call. */
static inline __attribute__((always_inline)) struct lf_sock **slot_if_any(int fd)
{
    if (fd < 0 || (unsigned)fd >= (unsigned)TOP_SIZE * CHUNK_SIZE)
        return NULL;
    struct lf_sock **chunk = __atomic_load_n(&fdtable_top[fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    return chunk ? &chunk[fd & (CHUNK_SIZE - 1)] : NULL;
}

/* The slot's socket, once no close of its number is under way: that close
 * takes a few system calls, and is never waited for by its own thread
 * (signals are held over it). */
static __thread struct lf_sock **own_tomb LF_TLS_IE;   /* the closing thread's: not waited for */

static inline __attribute__((always_inline)) struct lf_sock *slot_load(struct lf_sock **slot)
{
    struct lf_sock *s = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (__builtin_expect(s == TOMB, 0) && slot == own_tomb)
        return NULL;   /* its own close looking at the number: forgotten */
    for (unsigned i = 0; __builtin_expect(s == TOMB, 0); i++) {
        struct timespec t = { 0, i < 64 ? 0 : 20000 };
        if (i < 64)
            cpu_relax();
        else
            nanosleep(&t, NULL);
        s = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    }
    return s;
}

/* The slot of fd, its chunk made if need be; NULL when out of range or memory. */
static struct lf_sock **slot_made(int fd)
{
    struct lf_sock **slot = slot_if_any(fd);
    if (slot || fd < 0 || (unsigned)fd >= (unsigned)TOP_SIZE * CHUNK_SIZE)
        return slot;
    lf_lock(&table_lock);
    struct lf_sock **chunk = fdtable_top[fd >> CHUNK_BITS];
    if (!chunk) {
        chunk = calloc(CHUNK_SIZE, sizeof *chunk);
        if (chunk)
            __atomic_store_n(&fdtable_top[fd >> CHUNK_BITS], chunk, __ATOMIC_RELEASE);
    }
    lf_unlock(&table_lock);
    return chunk ? &chunk[fd & (CHUNK_SIZE - 1)] : NULL;
}

struct lf_sock *fdtable_acquire(int fd)
{
    struct lf_sock **slot = slot_if_any(fd);
    if (!slot)
        return NULL;
    for (;;) {
        struct lf_sock *s = slot_load(slot);
        if (!s)
            return NULL;
        int u = __atomic_add_fetch(&s->users, 1, __ATOMIC_ACQ_REL);
        if (u > 0 && __atomic_load_n(slot, __ATOMIC_ACQUIRE) == s)
            return s;
        if (u > 0)
            sock_put(s);
        else
            __atomic_sub_fetch(&s->users, 1, __ATOMIC_ACQ_REL);
    }
}

/* call_begin's rare part (internal.h). */
struct lf_sock *call_begin_slow(int fd)
{
    if (!__libc_single_threaded)
        return fdtable_acquire(fd);
    struct lf_sock **slot = slot_if_any(fd);
    return slot ? slot_load(slot) : NULL;
}

/* A quick call's lookup: the hazard stored, then the slot loaded again,
 * so that a teardown that cleared it sees the hazard (quick.c). */
int fdtable_quick_take(int fd, struct lf_sock **out)
{
    struct lf_sock **slot = slot_if_any(fd);
    struct lf_sock *s = slot ? slot_load(slot) : NULL;
    if (!s)
        return 0;
    if (!quick_hazard_set(s) || __atomic_load_n(slot, __ATOMIC_ACQUIRE) != s) {
        quick_hazard_drop();
        return 0;
    }
    *out = s;
    return 1;
}

/* Does fd name s now?  A look, no reference taken. */
int fdtable_holds(int fd, struct lf_sock *s)
{
    struct lf_sock **slot = slot_if_any(fd);
    return slot && slot_load(slot) == s;
}

static void sock_destroy(struct lf_sock *s)
{
    quick_wait_hazards(s);   /* a quick call on it copies on */
    if (s->kept_fd >= 0) {   /* closed under a blocked call, which has returned */
        if (s->conn && sock_kind(s) == LF_FAST)
            conn_close(s, s->kept_fd);
        lf_lock(&table_lock);
        struct lf_sock **p = &kept_list;
        while (*p && *p != s)
            p = &(*p)->kept_next;
        if (*p)
            *p = s->kept_next;
        lf_unlock(&table_lock);
        ownfd_close(&s->kept_fd);
    }
    if (s->dst.ss_family && !s->conn)   /* a client end that offered and never switched */
        shortlived_unswitched(&s->dst);
    handshake_keep_region(s);
    handshake_give_up(s);
    ownfd_close(&s->spare_inner);
    if (s->conn) {
        /* An unread proof holds the client's socket open (no FIN): now. */
        handshake_unanswered(s->conn);
        ownfd_close(&s->conn->proof_fd);
        reap_conn(s->conn);
    }
    s->conn = NULL;
    pthread_mutex_destroy(&s->lock);
    lf_lock(&table_lock);
    s->next_free = free_list;
    free_list = s;
    lf_unlock(&table_lock);
}

void sock_put(struct lf_sock *s)
{
    tsan_release(&s->users);   /* see lf_lock: TSan may be ignoring these atomics */
    if (__atomic_sub_fetch(&s->users, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    int zero = 0;
    if (__atomic_compare_exchange_n(&s->users, &zero, DEAD, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        tsan_acquire(&s->users);
        sock_destroy(s);
    }
}

struct lf_sock *sock_new(int kind)
{
    lf_lock(&table_lock);
    struct lf_sock *s = free_list;
    if (s)
        free_list = s->next_free;
    lf_unlock(&table_lock);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->users = 1;
    } else {
        /* Wait out lookups that raced onto the dead struct, then revive it. */
        int dead = DEAD;
        while (!__atomic_compare_exchange_n(&s->users, &dead, 1, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
            dead = DEAD;
    }
    s->refs = 0;
    s->kind = kind;
    s->offer_fd = -1;
    s->spare_inner = s->spare_inner_fd = -1;
    for (int i = 0; i < 4; i++)
        s->candidates[i] = -1;
    s->pending_tx = s->pending_rx = 0;
    s->pending_shut_wr = 0;
    s->pending_shut_rd = 0;
    s->pending_calls = 0;
    s->tcp_readers = 0;
    s->bound_state = BOUND_UNKNOWN;
    s->nonblock_seen = -1;
    s->stdio = 0;
    s->later_error = 0;
    s->desc_own = 0;   /* born_shares: set with it (sock_born_here) */
    s->timeo_seen[0] = s->timeo_seen[1] = s->linger_seen = -2;
    s->timeo_confined[0] = s->timeo_confined[1] = -1;
    s->conn = NULL;
    s->req_link = NULL;
    s->req_slot = -1;
    s->held = NULL;
    s->held_tries = 0;
    s->settling = 0;
    s->zc_next = s->zc_first = 0;
    s->dst.ss_family = AF_UNSPEC;
    s->dst_alone = 0;
    s->born_forks = __atomic_load_n(&lf_forks, __ATOMIC_RELAXED);
    s->reuseport = -1;
    s->waiting = 0;
    s->kept_fd = -1;
    s->next_free = NULL;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

int fdtable_set(int fd, struct lf_sock *s)
{
    struct lf_sock **slot = slot_made(fd);
    if (!slot)
        return -1;
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
    __atomic_add_fetch(&s->users, 1, __ATOMIC_ACQ_REL);
    struct lf_sock *old = __atomic_exchange_n(slot, s, __ATOMIC_ACQ_REL);
    if (old && old != TOMB) {   /* (a tomb: the kernel gave the number out again) */
        __atomic_sub_fetch(&old->refs, 1, __ATOMIC_ACQ_REL);
        sock_put(old);
    }
    return 0;
}

static int slot_empty(int fd, struct lf_sock *to)
{
    struct lf_sock **slot = slot_if_any(fd);
    if (!slot)
        return -1;
    struct lf_sock *old = slot_load(slot);
    while (old && !__atomic_compare_exchange_n(slot, &old, to, 0, __ATOMIC_ACQ_REL,
                                               __ATOMIC_ACQUIRE))
        if (old == TOMB)
            old = slot_load(slot);
    if (!old)
        return -1;
    int left = __atomic_sub_fetch(&old->refs, 1, __ATOMIC_ACQ_REL);
    sock_put(old);
    return left;
}

int fdtable_clear(int fd)
{
    return slot_empty(fd, NULL);
}

int fdtable_entomb(int fd)
{
    int left = slot_empty(fd, TOMB);
    if (left >= 0)
        own_tomb = slot_if_any(fd);
    return left;
}

void fdtable_unentomb(int fd)
{
    struct lf_sock **slot = slot_if_any(fd);
    struct lf_sock *tomb = TOMB;
    if (slot && slot == own_tomb)
        __atomic_compare_exchange_n(slot, &tomb, NULL, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    own_tomb = NULL;
}

void fdtable_kept(struct lf_sock *s)
{
    lf_lock(&table_lock);
    s->kept_next = kept_list;
    kept_list = s;
    lf_unlock(&table_lock);
}

/* The blocked calls a kept TCP socket waits for are the parent's threads:
 * the child never held the socket (its number was closed), so its copies
 * go, or they would hold the connection's TCP socket open (no FIN) until
 * it exits.  Their socks stay, referenced by calls that are not here. */
void fdtable_kept_after_fork_child(void)
{
    for (struct lf_sock *s = kept_list; s; s = s->kept_next)
        ownfd_close(&s->kept_fd);
    kept_list = NULL;
}

/* fork() must not copy the table lock while another thread holds it. */
void fdtable_lock(void) { lf_lock(&table_lock); }
void fdtable_unlock(void) { lf_unlock(&table_lock); }

/* The one walk of the table: each number from first to last that names a
 * socket, until `visit` says stop; that number, or -1. */
static int table_walk(unsigned first, unsigned last,
                      int (*visit)(int fd, struct lf_sock *s, void *arg), void *arg)
{
    for (unsigned i = first >> CHUNK_BITS; i < TOP_SIZE && i <= last >> CHUNK_BITS; i++) {
        struct lf_sock **chunk = __atomic_load_n(&fdtable_top[i], __ATOMIC_ACQUIRE);
        for (unsigned j = 0; chunk && j < CHUNK_SIZE; j++) {
            unsigned fd = i << CHUNK_BITS | j;
            struct lf_sock *s = __atomic_load_n(&chunk[j], __ATOMIC_ACQUIRE);
            if (fd >= first && fd <= last && s && s != TOMB && visit((int)fd, s, arg))
                return (int)fd;
        }
    }
    return -1;
}

struct fd_visit { void (*fn)(int fd); };

static int visit_fd(int fd, struct lf_sock *s, void *v)
{
    (void)s;
    ((struct fd_visit *)v)->fn(fd);
    return 0;
}

void fdtable_for_each_fd(unsigned first, unsigned last, void (*fn)(int fd))
{
    struct fd_visit v = { fn };
    table_walk(first, last, visit_fd, &v);
}

struct sock_visit { void (*fn)(struct lf_sock *, void *); void *arg; };

static int visit_sock(int fd, struct lf_sock *s, void *v)
{
    (void)fd;
    ((struct sock_visit *)v)->fn(s, ((struct sock_visit *)v)->arg);
    return 0;
}

void fdtable_for_each(void (*fn)(struct lf_sock *, void *), void *arg)
{
    struct sock_visit v = { fn, arg };
    table_walk(0, UINT_MAX, visit_sock, &v);
}

struct number_of { struct lf_sock *s; int other_than; };

static int is_other_number(int fd, struct lf_sock *s, void *v)
{
    const struct number_of *want = v;
    return s == want->s && fd != want->other_than;
}

int fdtable_number_of(struct lf_sock *s, int other_than)
{
    if (__atomic_load_n(&s->refs, __ATOMIC_ACQUIRE) <= 0)
        return -1;   /* no number names it */
    struct number_of want = { s, other_than };
    return table_walk(0, UINT_MAX, is_other_number, &want);
}
