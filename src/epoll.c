/*
 * epoll.c - epoll with loopfast descriptors in the set.
 *
 * The kernel cannot see a fast descriptor's readiness, so each registration
 * of one is ours: a small inner epoll holding the connection's doorbell (or,
 * while pending, its offer socket) and its TCP socket is registered in the
 * program's set in place of the descriptor, with our record as data.
 * epoll_wait answers from shared memory first, spins, arms the rings and
 * sleeps; what the kernel returns for an inner epoll is translated back into
 * the program's own epoll_data and events, level-triggered, EPOLLET or
 * EPOLLONESHOT as asked (docs/design.md, 6).
 *
 * Every registration of a tracked socket is recorded, also while it is the
 * kernel's as is (before connect()), so that it follows the socket when its
 * kind changes: to our inner epoll when it becomes pending or fast, back to
 * the kernel with the program's own events and data when it falls back to
 * plain TCP.
 *
 * A wait looks only at the set's active records (news from the kernel, a
 * new or changed registration, ready last time); the others are idle: their
 * rings stay armed, so the peer's next write rings the doorbell and the
 * kernel hands the record back.  An idle connection costs nothing per wait.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "internal.h"

enum reg_mode {
    MODE_KERNEL,   /* the socket itself is in the set, with the program's events and data */
    MODE_INNER,    /* our inner epoll is in the set, with the record as data */
    MODE_DIRECT,   /* the socket (edges only) and its doorbell are in the set (to_direct) */
};

/* MODE_DIRECT's entries carry an address with one of these in its low bits
 * (records and doorbell entries are malloc'ed, so the bits are free): a
 * record's for its TCP socket, an ep_bell's for a region's doorbell. */
enum { TAG_TCP = 0, TAG_BELL = 1, TAG_MASK = 3 };

/* Which records a wait looks at (see the file's first comment). */
enum reg_state {
    REG_OFF,       /* not fast, or a fired EPOLLONESHOT: nothing to look at */
    REG_ACTIVE,    /* on the set's active list: every wait looks at it */
    REG_IDLE,      /* armed, counted in its connection's ep_idle: the kernel wakes us */
};

struct reg_link {
    struct reg_link *prev, *next;
};

struct ep_set;

/* A set's one entry for a region's doorbell (edge-triggered, never read),
 * shared by its direct records on that region's connections: a ring says
 * "look at the region's news bits" (bell_news). */
struct ep_bell {
    struct ep_bell *next;        /* on the set's list, or its free list */
    struct lf_link *link;        /* NULL: free (an event queued for it is stale) */
    int fd;                      /* the doorbell as added, for the DEL */
    int refs;                    /* direct records using it */
};

/* Per region, this process's connections with idle records, by slot: the
 * region's news bits for those slots are ours to take (link->ep_news). */
struct ep_news {
    uint64_t mask[LINK_WORDS];
    uint32_t words;              /* bit w: mask[w] is not 0 */
    struct lf_conn *conn[LINK_SLOTS];
};

struct ep_reg {
    struct ep_reg *next, **pprev;   /* on the set's list (pprev: what points to it) */
    struct ep_set *set;          /* the set it belongs to */
    int fd, inner, kind_seen;
    int mode;                    /* enum reg_mode */
    struct lf_sock *s;           /* a reference is held; NULL: a free record */
    uint32_t events;
    epoll_data_t data;
    int disabled;                /* EPOLLONESHOT fired */
    uint64_t sig_in, sig_out;    /* EPOLLET: what was last reported */
    uint32_t ends_told;          /* EPOLLET: EPOLLHUP/EPOLLERR reported since the ADD or MOD */
    int state;                   /* enum reg_state */
    struct reg_link act;         /* on the set's active list */
    struct lf_conn *idle_conn;   /* REG_IDLE: whose ep_idle counts it, on whose list */
    struct ep_reg *idle_prev, *idle_next;   /* that list (idle_conn->ep_idle_regs) */
    struct ep_reg *just_idled;   /* arm_active's list of records it made idle */
    int ghost;                   /* deleted by the program, kept in the kernel's set (ctl_inner) */
    int orphan;                  /* its number closed, its file open: out of by_fd (orphan_keep) */
    unsigned ready_look;         /* the set's look that last found it ready (collect) */
    int asked;                   /* its last look asked TCP (a system call: reg_ready) */
    int costly;                  /* and found it not ready, free to go idle (collect) */
    struct ep_bell *bell;        /* MODE_DIRECT: its region's doorbell entry in the set */
    uint64_t out_call;           /* add_event: the epoll_wait call that last reported it */
    int out_idx;                 /* and where in that call's array */
};

static struct ep_reg *reg_of_link(struct reg_link *l)
{
    return (struct ep_reg *)((char *)l - __builtin_offsetof(struct ep_reg, act));
}

/* Which pointers are our registrations: epoll_wait must tell them from the
 * program's own epoll_data in O(1), without dereferencing the latter. */
struct ptrset {
    uintptr_t *slot;   /* 0: empty, 1: deleted */
    size_t cap, used;
};

/* A set's records by descriptor (one per descriptor, as in the kernel's
 * set): epoll_ctl and close() find a record in O(1) however many a server
 * holds, where a walk of the list cost microseconds at a few thousand. */
struct regmap {
    struct ep_reg **slot;   /* NULL: empty */
    size_t cap, used;
};

/* Records are never given back to malloc while their set lives: a pointer
 * the kernel returns is then always either ours (in `mine`, perhaps a record
 * freed since the kernel queued it) or the program's. */
struct ep_set {
    struct ep_set *next;
    int epfd;
    struct ep_reg *regs;
    struct regmap by_fd;         /* the same records, found by descriptor */
    struct ep_reg *no_reg;       /* always NULL: find_reg's answer when none */
    struct ep_reg *free_regs;
    struct ptrset mine;          /* every record and ep_bell this set ever had */
    struct ep_bell *bells, *free_bells;
    struct ep_bell *bell_turn;   /* where bells_from_memory goes on; NULL: the first */
    int inner_regs;              /* records in MODE_INNER or MODE_DIRECT: woken by doorbells */
    int watching;                /* the wake-up eventfd is in the set */
    unsigned epoch;              /* kind_epoch when its records were last checked */
    struct reg_link active;      /* the active records, a ring around this head */
    unsigned pokes_seen;         /* epoll_pokes when its idle records were last woken */
    unsigned looks;              /* looks at the active list that did not sleep (collect_locked) */
    int shared;                  /* it existed at a fork(): the child's waits may take its events */
    int orphans;                 /* records whose number closed (orphan_keep) */
    pid_t maker;                 /* the process that made it */
};

static size_t ptr_hash(uintptr_t p, size_t cap)
{
    return (size_t)(((uint64_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
}

static int ptrset_has(const struct ptrset *ps, const void *p)
{
    uintptr_t v = (uintptr_t)p;
    if (!ps->cap || v <= 1)
        return 0;
    for (size_t i = ptr_hash(v, ps->cap);; i = (i + 1) & (ps->cap - 1)) {
        if (ps->slot[i] == v)
            return 1;
        if (ps->slot[i] == 0)
            return 0;
    }
}

static int ptrset_put(struct ptrset *ps, uintptr_t v)
{
    size_t i = ptr_hash(v, ps->cap);
    while (ps->slot[i] > 1)
        i = (i + 1) & (ps->cap - 1);
    ps->slot[i] = v;
    return 0;
}

/* Keeps at most half the slots used (deleted ones count until a rebuild). */
static int ptrset_add(struct ptrset *ps, uintptr_t p)
{
    if ((ps->used + 1) * 2 > ps->cap) {
        struct ptrset n = { .cap = ps->cap ? ps->cap * 2 : 64 };
        n.slot = calloc(n.cap, sizeof *n.slot);
        if (!n.slot)
            return -1;
        for (size_t i = 0; i < ps->cap; i++)
            if (ps->slot[i] > 1) {
                ptrset_put(&n, ps->slot[i]);
                n.used++;
            }
        free(ps->slot);
        *ps = n;
    }
    ptrset_put(ps, p);
    ps->used++;
    return 0;
}

static size_t fd_hash(int fd, size_t cap)
{
    return (size_t)((uint32_t)fd * 0x9e3779b1u) & (cap - 1);
}

static struct ep_reg *regmap_get(const struct regmap *m, int fd)
{
    if (!m->cap)
        return NULL;
    for (size_t i = fd_hash(fd, m->cap);; i = (i + 1) & (m->cap - 1))
        if (!m->slot[i] || m->slot[i]->fd == fd)
            return m->slot[i];
}

static void regmap_put(struct regmap *m, struct ep_reg *r)
{
    size_t i = fd_hash(r->fd, m->cap);
    while (m->slot[i])
        i = (i + 1) & (m->cap - 1);
    m->slot[i] = r;
    m->used++;
}

/* Room for one more, at most half the slots used; -1 without memory. */
static int regmap_reserve(struct regmap *m)
{
    if ((m->used + 1) * 2 <= m->cap)
        return 0;
    struct regmap n = { .cap = m->cap ? m->cap * 2 : 16 };
    n.slot = calloc(n.cap, sizeof *n.slot);
    if (!n.slot)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i])
            regmap_put(&n, m->slot[i]);
    free(m->slot);
    *m = n;
    return 0;
}

/* Linear probing without tombstones: the entries after the hole that
 * belong before it move back into it. */
static void regmap_del(struct regmap *m, const struct ep_reg *r)
{
    size_t mask = m->cap - 1, i = fd_hash(r->fd, m->cap);
    while (m->slot[i] && m->slot[i] != r)
        i = (i + 1) & mask;
    if (!m->slot[i])
        return;
    m->slot[i] = NULL;
    m->used--;
    for (size_t j = (i + 1) & mask; m->slot[j]; j = (j + 1) & mask) {
        size_t home = fd_hash(m->slot[j]->fd, m->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {   /* home at or before the hole */
            m->slot[i] = m->slot[j];
            m->slot[j] = NULL;
            i = j;
        }
    }
}

static struct ep_set *sets;
static pthread_mutex_t ep_lock = PTHREAD_MUTEX_INITIALIZER;

/* What points to fd's record in the set's list; *answer is NULL when the
 * set has none. */
static struct ep_reg **find_reg(struct ep_set *e, int fd)
{
    struct ep_reg *r = regmap_get(&e->by_fd, fd);
    return r ? r->pprev : &e->no_reg;
}

/* The caller reserved room in by_fd. */
static void regs_link(struct ep_set *e, struct ep_reg *r)
{
    r->next = e->regs;
    if (r->next)
        r->next->pprev = &r->next;
    r->pprev = &e->regs;
    e->regs = r;
    regmap_put(&e->by_fd, r);
}

static void regs_unlink(struct ep_set *e, struct ep_reg *r)
{
    *r->pprev = r->next;
    if (r->next)
        r->next->pprev = r->pprev;
    r->pprev = NULL;
    regmap_del(&e->by_fd, r);
}

/* ---- active and idle records ---- */

static unsigned epoll_pokes;   /* bumped when an idle record may have lost its wake-up */
static void watch(struct ep_set *e);
static void wake_sleepers(void);

static void reg_unlink(struct ep_reg *r)
{
    r->act.prev->next = r->act.next;
    r->act.next->prev = r->act.prev;
    r->act.prev = r->act.next = &r->act;
}

static void reg_append(struct ep_set *e, struct ep_reg *r)
{
    r->act.prev = e->active.prev;
    r->act.next = &e->active;
    e->active.prev->next = &r->act;
    e->active.prev = &r->act;
}

/* ---- news: which idle records a ring of a region's doorbell is for ----
 *
 * A region's doorbell serves all its connections, so a ring alone does not
 * say which record to look at.  The writer sets its slot's bit in the
 * region's news words before it rings (link_note_news); a set that hears
 * the ring takes the bits of the slots whose connections have idle records
 * in this process and makes those records active, in every set (each set
 * holding the doorbell heard the ring too, and looks at its active list
 * when it wakes).  Bits of other slots are left for the processes that hold
 * them (a forked child's connections); a connection held by several
 * processes (shared_end) never goes idle here, so no process takes a bit
 * another one needs.  Bits cost a look at the words holding idle slots
 * (at most 15) a ring, whatever the number of idle connections. */
static void idle_list_add(struct ep_reg *r)
{
    struct lf_conn *c = r->idle_conn;
    struct ep_reg *head = c->ep_idle_regs;
    r->idle_prev = NULL;
    r->idle_next = head;
    if (head)
        head->idle_prev = r;
    c->ep_idle_regs = r;
    struct ep_news *st = c->link->ep_news;
    if (!head && st) {   /* its first idle record: its slot's bits are ours */
        st->mask[c->slot / 64] |= 1ull << (c->slot % 64);
        st->words |= 1u << (c->slot / 64);
        st->conn[c->slot] = c;
    }
}

static void idle_list_del(struct ep_reg *r)
{
    struct lf_conn *c = r->idle_conn;
    if (r->idle_prev)
        r->idle_prev->idle_next = r->idle_next;
    else
        c->ep_idle_regs = r->idle_next;
    if (r->idle_next)
        r->idle_next->idle_prev = r->idle_prev;
    r->idle_prev = r->idle_next = NULL;
    struct ep_news *st = c->link->ep_news;
    if (!c->ep_idle_regs && st) {
        st->mask[c->slot / 64] &= ~(1ull << (c->slot % 64));
        if (!st->mask[c->slot / 64])
            st->words &= ~(1u << (c->slot / 64));
        st->conn[c->slot] = NULL;
    }
}

static void reg_set_state(struct ep_set *e, struct ep_reg *r, int state)
{
    if (r->state == state)
        return;
    if (r->state == REG_ACTIVE)
        reg_unlink(r);
    else if (r->state == REG_IDLE) {
        idle_list_del(r);
        __atomic_sub_fetch(&r->idle_conn->ep_idle, 1, __ATOMIC_SEQ_CST);
    }
    if (state == REG_ACTIVE)
        reg_append(e, r);
    else if (state == REG_IDLE) {
        /* counted and listed before the ring is armed: a ring from now on
         * finds its slot's bit ours (bell_news), a doorbell read by anyone
         * else is told to us (bell_drain, epoll_poke), and the set watches
         * the eventfd that wakes its sleepers for it */
        r->idle_conn = r->s->conn;
        idle_list_add(r);
        __atomic_add_fetch(&r->idle_conn->ep_idle, 1, __ATOMIC_SEQ_CST);
        watch(e);
    }
    r->state = state;
}

static void activate(struct ep_set *e, struct ep_reg *r)
{
    reg_set_state(e, r, REG_ACTIVE);
}

/* A ring of l's doorbell: the idle records of the slots with news, active. */
static void bell_news(struct lf_link *l)
{
    struct ep_news *st = l->ep_news;
    if (!st)
        return;
    uint64_t *words = l->region->news[l->role & 1];
    for (uint32_t left = st->words; left; left &= left - 1) {   /* words with idle slots */
        unsigned w = (unsigned)__builtin_ctz(left);
        uint64_t mine = __atomic_load_n(&words[w], __ATOMIC_SEQ_CST) & st->mask[w];
        if (!mine)
            continue;
        __atomic_fetch_and(&words[w], ~mine, __ATOMIC_SEQ_CST);
        for (; mine; mine &= mine - 1) {
            struct lf_conn *c = st->conn[w * 64 + (unsigned)__builtin_ctzll(mine)];
            struct ep_reg *r;
            while (c && (r = c->ep_idle_regs))   /* each activate unlists one */
                activate(r->set, r);
        }
    }
}

/* Whether l's news bits hold one of ours, read from memory: the bits are
 * set before the ring (link_note_news), so they say what the kernel's look
 * at the doorbell would, without the system call. */
static int news_waiting(struct lf_link *l)
{
    const struct ep_news *st = l->ep_news;
    const uint64_t *words = l->region->news[l->role & 1];
    for (uint32_t w = st ? st->words : 0; w; w &= w - 1) {
        unsigned i = (unsigned)__builtin_ctz(w);
        if (__atomic_load_n(&words[i], __ATOMIC_RELAXED) & st->mask[i])
            return 1;
    }
    return 0;
}

/* Every look that will not sleep hears the set's idle records by their
 * news bits, BELLS_PER_LOOK doorbells a look in turn (a server of many
 * client processes has a doorbell for each).  Heard only by the kernel, a
 * spinning wait found a message to an idle record at its next look at the
 * kernel, KERNEL_LOOK_NS apart, after its spin had run out: a server with
 * 100 connections, one busy at a time, burnt its spin on every request and
 * took 2x the kernel's round trip.  The doorbell's edge stays queued and
 * finds no bits left (bell_news). */
#define BELLS_PER_LOOK 8

static void bells_from_memory(struct ep_set *e)
{
    struct ep_bell *b = e->bell_turn ? e->bell_turn : e->bells;
    for (int k = 0; b && k < BELLS_PER_LOOK; k++, b = b->next)
        if (news_waiting(b->link))
            bell_news(b->link);
    e->bell_turn = b;
}

/* Someone other than this record's wait took a doorbell of a connection
 * with idle records (a blocking read, poll(), another set): the peer has
 * disarmed the ring and will not ring again, so every set looks at all its
 * idle records once, a sleeping one woken for it. */
void epoll_poke(void)
{
    __atomic_add_fetch(&epoll_pokes, 1, __ATOMIC_SEQ_CST);
    wake_sleepers();
}

static void wake_all_idle(struct ep_set *e)
{
    unsigned now = __atomic_load_n(&epoll_pokes, __ATOMIC_SEQ_CST);
    if (now == e->pokes_seen)
        return;
    e->pokes_seen = now;
    for (struct ep_reg *r = e->regs; r; r = r->next)
        if (r->state == REG_IDLE)
            activate(e, r);
}

/* ---- waking a sleeping epoll_wait when a registered socket changes kind ---- */

static unsigned kind_epoch;     /* bumped at every change of kind of a recorded socket */
static int sleepers;            /* threads asleep in epoll_wait on a set of ours */
static int wake_fd = -1;        /* an eventfd never read: each write is an edge */
static char wake_tag;           /* its epoll_data.ptr */

/* After a counter bumped with a full barrier: a thread that counted itself
 * a sleeper before it looked at the counter is woken. */
static void wake_sleepers(void)
{
    int w = __atomic_load_n(&wake_fd, __ATOMIC_RELAXED);
    if (w >= 0 && __atomic_load_n(&sleepers, __ATOMIC_SEQ_CST) > 0) {
        uint64_t one = 1;
        int old = nocancel_begin();
        (void)!libc.write(w, &one, sizeof one);
        nocancel_end(old);
    }
}

void epoll_kind_changed(int kind)
{
    __atomic_add_fetch(&kind_epoch, 1, __ATOMIC_SEQ_CST);
    /* Only a socket turning fast leaves a sleeper blind (its data moves to
     * the rings); the others are seen by the next epoll_wait or epoll_ctl. */
    if (kind == LF_FAST)
        wake_sleepers();
}

/* A thread about to sleep in poll() on sockets that may still turn fast
 * (pending: the TCP socket alone is in its set) counts itself among the
 * sleepers before it looks at their kinds, and hears the eventfd through
 * its wait epoll (wait.c): another thread's write that switched such a
 * socket left it asleep on TCP while the peer's answer came on the ring
 * (a Python client with a reader thread in select() hung for good). */
int epoll_kind_sleep_begin(void)
{
    __atomic_add_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&wake_fd, __ATOMIC_ACQUIRE) < 0) {
        lf_lock(&ep_lock);
        if (wake_fd < 0)
            ownfd_new(&wake_fd, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        lf_unlock(&ep_lock);
    }
    return __atomic_load_n(&wake_fd, __ATOMIC_ACQUIRE);
}

void epoll_kind_sleep_end(void)
{
    __atomic_sub_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
}

/* Sets holding a socket that may still turn fast watch the eventfd. */
static void watch(struct ep_set *e)
{
    if (e->watching)
        return;
    if (wake_fd < 0)
        ownfd_new(&wake_fd, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = &wake_tag };
    e->watching = wake_fd >= 0 && libc.epoll_ctl(e->epfd, EPOLL_CTL_ADD, wake_fd, &ev) == 0;
}

static void unwatch(struct ep_set *e)
{
    if (e->watching && wake_fd >= 0)
        libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, wake_fd, NULL);
    e->watching = 0;
}

/* ---- the inner epoll ---- */

/* The inner set: TCP as the program asked while pending, edges only once
 * fast (the rings say the rest); the doorbells or the offer socket. */
static void inner_update(struct ep_reg *r)
{
    /* the kind and the descriptors that go with it, seen together */
    lf_lock(&r->s->lock);
    int kind = sock_kind(r->s), bell = -1;
    if (kind == LF_FAST)
        bell = conn_bell_mine(r->s->conn);
    lf_unlock(&r->s->lock);
    struct epoll_event tcp = { .events = r->events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI |
                                                      EPOLLET),
                               .data.fd = r->fd };
    if (kind == LF_FAST)
        tcp.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    if (libc.epoll_ctl(r->inner, EPOLL_CTL_MOD, r->fd, &tcp) < 0)
        libc.epoll_ctl(r->inner, EPOLL_CTL_ADD, r->fd, &tcp);
    /* data.fd -1: tells the doorbell apart from the TCP socket; the
     * doorbell edge-triggered, never read (wait.c) */
    struct epoll_event x = { .events = EPOLLIN, .data.fd = -1 };
    if (kind == LF_FAST) {   /* pending: TCP alone (as in poll.c) */
        x.events |= EPOLLET;
        libc.epoll_ctl(r->inner, EPOLL_CTL_ADD, bell, &x);
    }
    r->kind_seen = kind;
}

/* Programs such as redis add and delete a descriptor for every request; a
 * fast connection's inner set does not depend on the program's mask, so it
 * is kept for the next ADD instead of being rebuilt. */
static int inner_get(struct ep_reg *r)
{
    struct lf_sock *s = r->s;
    if (sock_kind(s) == LF_FAST && s->spare_inner >= 0 && s->spare_inner_fd == r->fd) {
        r->inner = s->spare_inner;
        ownfd_moved(r->inner, &r->inner);
        s->spare_inner = -1;
        r->kind_seen = LF_FAST;
        return 0;
    }
    if (ownfd_new_epoll(&r->inner) < 0)
        return -1;
    inner_update(r);
    return 0;
}

static void inner_put(struct ep_reg *r)
{
    struct lf_sock *s = r->s;
    if (r->kind_seen == LF_FAST && sock_kind(s) == LF_FAST && s->spare_inner < 0) {
        s->spare_inner = r->inner;
        s->spare_inner_fd = r->fd;   /* its TCP entry's number: drain_inner tells by it */
        ownfd_moved(r->inner, &s->spare_inner);
    } else
        ownfd_close(&r->inner);
    r->inner = -1;
}

/* ---- records ---- */

static struct ep_reg *record_new(struct ep_set *e, int fd, struct lf_sock *s,
                                 const struct epoll_event *ev)
{
    if (regmap_reserve(&e->by_fd) < 0)
        return NULL;
    struct ep_reg *r = e->free_regs;
    if (r) {
        e->free_regs = r->next;
    } else {
        r = malloc(sizeof *r);
        if (!r || ptrset_add(&e->mine, (uintptr_t)r) < 0) {
            free(r);
            return NULL;
        }
    }
    *r = (struct ep_reg){ .fd = fd, .inner = -1, .mode = MODE_KERNEL, .s = s,
                          .events = ev->events, .data = ev->data,
                          .sig_in = UINT64_MAX, .sig_out = UINT64_MAX, .state = REG_OFF };
    r->set = e;
    r->act.prev = r->act.next = &r->act;
    __atomic_add_fetch(&s->users, 1, __ATOMIC_ACQ_REL);      /* the record's reference */
    __atomic_add_fetch(&s->ep_regs, 1, __ATOMIC_SEQ_CST);   /* see sock_set_kind */
    regs_link(e, r);
    if (sock_kind(s) != LF_FAST)
        watch(e);
    activate(e, r);
    return r;
}

/* The set's entry for l's doorbell, added on first need (with l's news
 * table); one more user.  NULL when it cannot be had. */
static struct ep_bell *bell_get(struct ep_set *e, struct lf_link *l)
{
    struct ep_bell *b;
    for (b = e->bells; b; b = b->next)
        if (b->link == l) {
            b->refs++;
            return b;
        }
    if (!l->ep_news && !(l->ep_news = calloc(1, sizeof(struct ep_news))))
        return NULL;
    if ((b = e->free_bells)) {
        e->free_bells = b->next;
    } else if (!(b = malloc(sizeof *b)) || ptrset_add(&e->mine, (uintptr_t)b) < 0) {
        free(b);
        return NULL;
    }
    *b = (struct ep_bell){ .link = l, .fd = l->bell_mine, .refs = 1 };
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = (uintptr_t)b | TAG_BELL };
    if (libc.epoll_ctl(e->epfd, EPOLL_CTL_ADD, b->fd, &ev) < 0) {
        b->link = NULL;   /* kept in `mine`: never given back while the set lives */
        b->next = e->free_bells;
        e->free_bells = b;
        return NULL;
    }
    b->next = e->bells;
    e->bells = b;
    return b;
}

static void bell_put(struct ep_set *e, struct ep_bell *b, int take_out)
{
    if (--b->refs > 0)
        return;
    if (take_out)
        libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, b->fd, NULL);
    if (e->bell_turn == b)
        e->bell_turn = b->next;
    for (struct ep_bell **p = &e->bells; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    b->link = NULL;
    b->next = e->free_bells;
    e->free_bells = b;
}

/* A direct record's entry for its TCP socket: edges only (the rings say the
 * rest), the record's address as data. */
static struct epoll_event direct_tcp_entry(struct ep_reg *r)
{
    return (struct epoll_event){ .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uintptr_t)r | TAG_TCP };
}

/* A fast socket's registration without an inner epoll: the socket itself
 * (edges only: the rings say the rest), tagged with the record's address,
 * and its region's doorbell, once per set for all the region's connections
 * (edge-triggered and never read: each ring is one edge for every set).
 * No descriptor of ours, and no system call per wake-up beyond the
 * program's epoll_wait.  A socket the kernel already has in the set (its
 * program's registration) is modified in place. */
static int to_direct(struct ep_set *e, struct ep_reg *r, int in_kernel_set)
{
    struct lf_conn *c = r->s->conn;
    struct ep_bell *b = bell_get(e, c->link);
    if (!b)
        return -1;
    struct epoll_event tcp = direct_tcp_entry(r);
    if (libc.epoll_ctl(e->epfd, in_kernel_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, r->fd, &tcp) < 0) {
        int err = errno;
        bell_put(e, b, 1);
        return errno = err, -1;
    }
    r->bell = b;
    r->mode = MODE_DIRECT;
    r->kind_seen = LF_FAST;
    r->sig_in = r->sig_out = UINT64_MAX;   /* the rings' state is reported once */
    r->ends_told = 0;
    e->inner_regs++;
    activate(e, r);
    return 0;
}

/* Takes a MODE_DIRECT record's entries out of the set: its share of the
 * doorbell, and the socket too unless the caller hands it back to the
 * kernel.  take_out 0: the kernel dropped them already (the set closes). */
static void direct_out(struct ep_set *e, struct ep_reg *r, int with_socket, int take_out)
{
    bell_put(e, r->bell, take_out);
    r->bell = NULL;
    if (with_socket && take_out)
        libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, r->fd, NULL);
}

/* Unlinks *p; its inner epoll is taken out of the set if `take_out`. */
static void record_free(struct ep_set *e, struct ep_reg **p, int take_out)
{
    struct ep_reg *r = *p;
    regs_unlink(e, r);
    reg_set_state(e, r, REG_OFF);
    if (r->orphan) {
        r->orphan = 0;
        e->orphans--;
    }
    if (r->mode == MODE_INNER) {
        if (take_out)
            libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, r->inner, NULL);
        inner_put(r);
        e->inner_regs--;
    } else if (r->mode == MODE_DIRECT) {
        if (r->bell)   /* else to_kernel took it out */
            direct_out(e, r, 1, take_out);
        e->inner_regs--;
    }
    __atomic_sub_fetch(&r->s->ep_regs, 1, __ATOMIC_ACQ_REL);
    sock_put(r->s);
    r->s = NULL;
    r->next = e->free_regs;
    e->free_regs = r;
    if (!e->regs)
        unwatch(e);   /* nothing left to follow */
}

/* The kernel's registration of the socket becomes our inner epoll's.  Out
 * of descriptors, it stays the kernel's (the rings are then asked at most
 * every 10 ms, see lf_epoll_wait). */
static int to_inner(struct ep_set *e, struct ep_reg *r, int in_kernel_set)
{
    if (inner_get(r) < 0)
        return -1;
    struct epoll_event outer = { .events = EPOLLIN, .data.ptr = r };
    if (libc.epoll_ctl(e->epfd, EPOLL_CTL_ADD, r->inner, &outer) < 0) {
        ownfd_close(&r->inner);
        return -1;
    }
    if (in_kernel_set)
        libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, r->fd, NULL);
    r->mode = MODE_INNER;
    r->sig_in = r->sig_out = UINT64_MAX;   /* the rings' state is reported once */
    r->ends_told = 0;
    e->inner_regs++;
    activate(e, r);
    return 0;
}

/* A socket gone plain is the kernel's again, with the program's events and
 * data (the kernel reports its current readiness once, so no edge is lost),
 * and no longer recorded. */
static void to_kernel(struct ep_set *e, struct ep_reg **p)
{
    struct ep_reg *r = *p;
    struct epoll_event ev = { .events = r->events, .data = r->data };
    if (r->mode == MODE_DIRECT) {
        direct_out(e, r, 0, 1);
        libc.epoll_ctl(e->epfd, EPOLL_CTL_MOD, r->fd, &ev);
    } else {
        libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, r->inner, NULL);
        libc.epoll_ctl(e->epfd, EPOLL_CTL_ADD, r->fd, &ev);
    }
    record_free(e, p, 0);
}

/* A registration made while its socket was pending turns direct once the
 * socket is fast: its inner epoll goes (one descriptor less).  Adding the
 * doorbells reports their current state once, so no ring is missed; if
 * they cannot be added, the inner epoll stays. */
static void inner_to_direct(struct ep_set *e, struct ep_reg *r)
{
    if (libc.epoll_ctl(e->epfd, EPOLL_CTL_DEL, r->inner, NULL) < 0)
        return;
    e->inner_regs--;   /* to_direct counts it again */
    if (to_direct(e, r, 0) == 0) {
        ownfd_close(&r->inner);
        return;
    }
    struct epoll_event outer = { .events = EPOLLIN, .data.ptr = r };
    libc.epoll_ctl(e->epfd, EPOLL_CTL_ADD, r->inner, &outer);
    e->inner_regs++;
}

/* Brings a record in line with its socket's kind; 1 if it was dropped. */
static int record_sync(struct ep_set *e, struct ep_reg **p)
{
    struct ep_reg *r = *p;
    int kind = sock_kind(r->s);
    if (kind == LF_PLAIN && r->orphan && r->mode == MODE_INNER) {
        if (r->kind_seen != LF_PLAIN)
            inner_update(r);   /* the program's events on its TCP entry: no set entry it could name */
        return 0;
    }
    if (kind == LF_PLAIN) {
        if (r->mode == MODE_KERNEL)
            record_free(e, p, 0);
        else if (!r->disabled)   /* a fired EPOLLONESHOT waits for the program's MOD */
            to_kernel(e, p);
        else
            return 0;
        return 1;
    }
    if (r->ghost && kind != LF_FAST) {
        record_free(e, p, 1);   /* deleted by the program: nothing to hand back */
        return 1;
    }
    if (r->mode == MODE_KERNEL && kind == LF_FAST && to_direct(e, r, 1) == 0)
        ;
    else if (r->mode == MODE_KERNEL && kind != LF_OPTIN)
        to_inner(e, r, 1);
    else if (r->mode == MODE_INNER && kind != r->kind_seen)
        inner_update(r);
    if (r->mode == MODE_INNER && kind == LF_FAST && !r->ghost && !r->orphan)
        inner_to_direct(e, r);
    if (kind == LF_FAST && r->state == REG_OFF && !r->disabled && !r->ghost)
        activate(e, r);
    return 0;
}

/* After any socket's change of kind: every record of the set is checked. */
static void refresh(struct ep_set *e)
{
    unsigned now = __atomic_load_n(&kind_epoch, __ATOMIC_SEQ_CST);
    if (now == e->epoch)
        return;
    for (struct ep_reg **p = &e->regs; *p;)
        if (!record_sync(e, p))
            p = &(*p)->next;
    e->epoch = now;
}

static struct ep_set *find_set(int epfd, int create)
{
    for (struct ep_set *e = sets; e; e = e->next)
        if (e->epfd == epfd)
            return e;
    if (!create)
        return NULL;
    struct ep_set *e = calloc(1, sizeof *e);
    if (e) {
        e->epfd = epfd;
        e->maker = lf_pid;
        e->epoch = __atomic_load_n(&kind_epoch, __ATOMIC_SEQ_CST);
        e->active.prev = e->active.next = &e->active;
        e->pokes_seen = __atomic_load_n(&epoll_pokes, __ATOMIC_SEQ_CST);
        e->next = sets;
        __atomic_store_n(&sets, e, __ATOMIC_RELEASE);
    }
    return e;
}

/* ---- epoll_ctl ---- */

/* A new registration of a pending or fast socket: straight to an inner
 * epoll, with no kernel registration of the socket in between. */
static int add_inner(struct ep_set *e, int fd, struct lf_sock *s, struct epoll_event *ev)
{
    struct ep_reg *r = record_new(e, fd, s, ev);
    if (!r)
        return errno = ENOMEM, -1;
    if (sock_kind(s) == LF_FAST && to_direct(e, r, 0) == 0)
        return 0;
    if (to_inner(e, r, 0) == 0)
        return 0;
    int err = errno;
    if (err == EMFILE || err == ENFILE || err == ENOMEM) {
        /* Out of descriptors for an inner epoll: the kernel's registration
         * of the socket is better than an error the kernel would not give. */
        if (libc.epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, ev) == 0)
            return 0;
        err = errno;
    }
    record_free(e, &e->regs, 0);   /* just linked first */
    return errno = err, -1;
}

/* The kernel's MOD or ADD wakes a thread asleep on the set when the
 * descriptor is ready; ours change only the record.  So a thread asleep on
 * the set is woken by modifying the record's TCP entry as it is: the kernel
 * looks at the socket again, finds it writable (its data goes to the ring)
 * and queues an edge for this set alone; the wait then looks at the
 * record, now active. */
static void wake_for(struct ep_set *e, struct ep_reg *r)
{
    if (r->mode == MODE_INNER) {
        inner_update(r);
        return;
    }
    struct epoll_event tcp = direct_tcp_entry(r);
    libc.epoll_ctl(e->epfd, EPOLL_CTL_MOD, r->fd, &tcp);
}

/* A program's call on a record in MODE_INNER.  Programs such as
 * redis-benchmark delete and add a descriptor for every request: a fast
 * record they delete stays in the kernel's set as a ghost, never reported,
 * and their next ADD brings it back without a system call. */
static int ctl_inner(struct ep_set *e, struct ep_reg **p, int op, struct epoll_event *ev)
{
    struct ep_reg *r = *p;
    if (r->ghost && op != EPOLL_CTL_ADD)
        return errno = ENOENT, -1;
    if (!r->ghost && op == EPOLL_CTL_ADD)
        return errno = EEXIST, -1;
    if (op == EPOLL_CTL_DEL) {
        if (sock_kind(r->s) != LF_FAST)
            record_free(e, p, 1);
        else {
            r->ghost = 1;
            reg_set_state(e, r, REG_OFF);
        }
        return 0;
    }
    r->ghost = 0;
    r->events = ev->events;
    r->data = ev->data;
    r->disabled = 0;
    r->sig_in = r->sig_out = UINT64_MAX;
    r->ends_told = 0;
    activate(e, r);
    if (sock_kind(r->s) == LF_PLAIN)
        to_kernel(e, p);
    else if (r->mode == MODE_INNER && (r->kind_seen != LF_FAST || sock_kind(r->s) != LF_FAST))
        inner_update(r);
    else if (__atomic_load_n(&sleepers, __ATOMIC_SEQ_CST) > 0)
        wake_for(e, r);
    return 0;
}

/* The kernel does the program's call; the record follows what it did. */
static int ctl_kernel(int epfd, struct ep_set *e, struct ep_reg **p, int op, int fd,
                      struct lf_sock *s, struct epoll_event *ev)
{
    int rc = libc.epoll_ctl(epfd, op, fd, ev);
    if (op == EPOLL_CTL_DEL && p && *p)
        record_free(e, p, 0);
    if (rc < 0 || op == EPOLL_CTL_DEL || sock_kind(s) == LF_PLAIN)
        return rc;
    if (p && *p) {
        (*p)->events = ev->events;
        (*p)->data = ev->data;
        (*p)->disabled = 0;
        activate(e, *p);
    } else if ((e || (e = find_set(epfd, 1))) && record_new(e, fd, s, ev)) {
        p = &e->regs;
    } else {
        return rc;   /* no memory to record it: it stays the kernel's */
    }
    if (sock_kind(s) != LF_OPTIN)
        record_sync(e, p);
    return rc;
}

static int ctl_ours(int epfd, int op, int fd, struct lf_sock *s, struct epoll_event *ev)
{
    lf_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    struct ep_reg **p = NULL;
    if (e) {
        refresh(e);
        p = find_reg(e, fd);
        if (*p && record_sync(e, p))
            p = find_reg(e, fd);
    }
    int kind = sock_kind(s), rc;
    if (p && *p && ((*p)->mode == MODE_INNER || (*p)->mode == MODE_DIRECT))
        rc = ctl_inner(e, p, op, ev);
    else if (op == EPOLL_CTL_ADD && (kind == LF_PENDING || kind == LF_FAST) && !(p && *p))
        rc = (e || (e = find_set(epfd, 1))) ? add_inner(e, fd, s, ev) : (errno = ENOMEM, -1);
    else
        rc = ctl_kernel(epfd, e, p, op, fd, s, ev);
    lf_unlock(&ep_lock);
    return rc;
}

/* A listening socket never changes kind: nothing to follow. */
static int is_listening(int fd)
{
    return sockopt_on(fd, SOL_SOCKET, SO_ACCEPTCONN);
}

/* A wait whose fast records are ready asks the kernel only every 8 calls
 * and KERNEL_LOOK_NS (kernel_look_due: a system call at every call cost
 * more than the fast events), so a level-triggered entry of the kernel's
 * came a few calls late (a client and its server in one set saw the
 * client's EPOLLOUT in one wait in 8).  The kernel is asked at once where
 * it may have something: in the set last given an entry whose readiness
 * it tells (ADD or MOD of a descriptor not fast), and in a set whose last
 * look by this thread found events (level-triggered ones are there again;
 * in a set of fast connections alone the kernel's entries are edges, rare
 * while they are busy). */
#define NEWS_SETS 4096   /* sets numbered above are asked on kernel_look_due's turn alone */
static uint64_t kernel_news[NEWS_SETS / 64];   /* a bit per set number */
static __thread int kernel_found_set LF_TLS_IE = -1;

static void kernel_entry_changed(int epfd, int op)
{
    if (op == EPOLL_CTL_DEL || epfd < 0 || epfd >= NEWS_SETS)
        return;
    uint64_t bit = 1ull << (epfd % 64), *word = &kernel_news[epfd / 64];
    if (!(__atomic_load_n(word, __ATOMIC_RELAXED) & bit))
        __atomic_or_fetch(word, bit, __ATOMIC_RELAXED);
}

static int kernel_news_for(int epfd)
{
    if (kernel_found_set == epfd)
        return 1;
    if (epfd < 0 || epfd >= NEWS_SETS)
        return 0;
    uint64_t bit = 1ull << (epfd % 64), *word = &kernel_news[epfd / 64];
    return (__atomic_load_n(word, __ATOMIC_RELAXED) & bit) &&
           (__atomic_fetch_and(word, ~bit, __ATOMIC_RELAXED) & bit);
}

LF_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    struct lf_sock *s = fdtable_acquire(fd);
    int kind = s ? sock_kind(s) : 0;
    if (kind != LF_FAST)
        kernel_entry_changed(epfd, op);
    if (s && kind != LF_FAST && kind != LF_PENDING &&
        ((kind == LF_PLAIN && !__atomic_load_n(&sets, __ATOMIC_ACQUIRE)) ||
         (kind == LF_OPTIN && is_listening(fd)))) {
        sock_put(s);
        s = NULL;
    }
    if (!s)
        return libc.epoll_ctl(epfd, op, fd, ev);
    if (op != EPOLL_CTL_DEL && !ev) {
        sock_put(s);
        errno = EFAULT;
        return -1;
    }
    int e = errno;
    int rc = ctl_ours(epfd, op, fd, s, ev);
    sock_put(s);
    if (rc == 0)
        errno = e;   /* as the kernel's: gRPC reads connect()'s EINPROGRESS after this */
    return rc;
}

void epoll_forget_range(unsigned first, unsigned last)
{
    int w = __atomic_load_n(&wake_fd, __ATOMIC_ACQUIRE);
    if (w >= 0 && (unsigned)w >= first && (unsigned)w <= last)
        epoll_forget_fd(w, 1);
    for (;;) {
        int found = -1;
        lf_lock(&ep_lock);
        for (struct ep_set *e = sets; e && found < 0; e = e->next)
            if ((unsigned)e->epfd >= first && (unsigned)e->epfd <= last)
                found = e->epfd;
        lf_unlock(&ep_lock);
        if (found < 0)
            return;
        epoll_forget_fd(found, 1);
    }
}

/* Before fork(): every set of ours becomes the child's too (one kernel
 * epoll), and the child's epoll_wait may take an edge its idle records
 * count on, so none stays idle (may_idle). */
void epoll_before_fork(void)
{
    if (!__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return;
    lf_lock(&ep_lock);
    for (struct ep_set *e = sets; e; e = e->next) {
        e->shared = 1;
        for (struct ep_reg *r = e->regs; r; r = r->next)
            if (r->state == REG_IDLE)
                activate(e, r);
    }
    lf_unlock(&ep_lock);
}

static void set_free(struct ep_set *e)
{
    while (e->regs)
        record_free(e, &e->regs, 0);
    while (e->free_regs) {
        struct ep_reg *r = e->free_regs;
        e->free_regs = r->next;
        free(r);
    }
    while (e->free_bells) {   /* every record gone: every entry is free */
        struct ep_bell *b = e->free_bells;
        e->free_bells = b->next;
        free(b);
    }
    free(e->mine.slot);
    free(e->by_fd.slot);
    free(e);
}

/* Does any set of ours hold fd, as a registration or as the set itself? */
int epoll_knows_fd(int fd)
{
    if (!__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return 0;
    lf_lock(&ep_lock);
    int known = fd == wake_fd;
    for (struct ep_set *e = sets; e && !known; e = e->next)
        known = e->epfd == fd || *find_reg(e, fd) != NULL;
    lf_unlock(&ep_lock);
    return known;
}

/* A set shared since fork() stays its maker's: a number another process
 * closes leaves the kernel's entries, as the kernel keeps a registration
 * while the file is open in the maker (a forked child's close took the
 * parent's socket out of the set, and the parent's epoll_wait missed its
 * events). */
static int set_ours(const struct ep_set *e)
{
    return !e->shared || e->maker == lf_pid;
}

/* ---- a registration outliving its number ----
 *
 * The kernel keys a registration by the open file and the number it was
 * made with: closing that number while another still names the file (a dup
 * or dup2 kept) leaves the registration in the set, reported as before,
 * and nothing the program holds names it any more (epoll(7), Q6).  A
 * record of ours follows as an orphan: out of by_fd (a ctl on the old
 * number is the kernel's EBADF or another file's), through an inner epoll
 * holding the socket under a surviving number (no entry in the set that
 * the program could name: it may register that number itself), moved to
 * another survivor when that one closes, and gone with the last, as the
 * kernel's is with the file.  Only while the closing number still names
 * the file (its direct entry is taken out of the set by it). */
static int orphan_move(struct ep_set *e, struct ep_reg *r, int to)
{
    if (!r->orphan) {
        regmap_del(&e->by_fd, r);
        r->orphan = 1;
        e->orphans++;
    }
    if (r->mode == MODE_INNER) {
        libc.epoll_ctl(r->inner, EPOLL_CTL_DEL, r->fd, NULL);
        r->fd = to;
        inner_update(r);
        return 0;
    }
    uint64_t sig_in = r->sig_in, sig_out = r->sig_out;   /* EPOLLET: no new edge for a close */
    uint32_t told = r->ends_told;
    direct_out(e, r, 1, 1);
    e->inner_regs--;
    r->fd = to;
    if (to_inner(e, r, 0) < 0) {
        r->mode = MODE_KERNEL;   /* no entry left in the set: record_free takes nothing out */
        return -1;
    }
    r->sig_in = sig_in;
    r->sig_out = sig_out;
    r->ends_told = told;
    return 0;
}

/* Before number fd of r's socket closes: kept as an orphan (1) or not. */
static int orphan_keep(struct ep_set *e, struct ep_reg *r, int fd, int still_named)
{
    if (!still_named || !set_ours(e) || r->ghost ||
        (r->mode != MODE_INNER && r->mode != MODE_DIRECT))
        return 0;   /* (MODE_KERNEL: the kernel's own registration goes on by itself) */
    int to = fdtable_number_of(r->s, fd);
    return to >= 0 && orphan_move(e, r, to) == 0;
}

static void forget_in_set(struct ep_set *e, int fd, int still_named)
{
    struct ep_reg **p = find_reg(e, fd);
    if (*p && !orphan_keep(e, *p, fd, still_named))
        record_free(e, p, set_ours(e));
    for (p = &e->regs; e->orphans && *p;) {
        struct ep_reg *r = *p;
        if (r->orphan && r->fd == fd && !orphan_keep(e, r, fd, still_named))
            record_free(e, p, set_ours(e));
        else
            p = &r->next;
    }
}

void epoll_forget_fd(int fd, int still_named)
{
    if (!__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return;
    lf_lock(&ep_lock);
    if (fd == wake_fd) {   /* the program closes our eventfd: the kernel drops it */
        __atomic_store_n(&wake_fd, -1, __ATOMIC_RELEASE);
        for (struct ep_set *e = sets; e; e = e->next)
            e->watching = 0;
    }
    for (struct ep_set *e = sets; e; e = e->next)
        forget_in_set(e, fd, still_named);
    /* An epoll descriptor being closed takes its registrations along. */
    for (struct ep_set **p = &sets; *p;) {
        struct ep_set *e = *p;
        if (e->epfd != fd) {
            p = &e->next;
            continue;
        }
        *p = e->next;
        set_free(e);
    }
    lf_unlock(&ep_lock);
}

/* ---- waiting ---- */

/* EPOLLET: what a record reports now, rev being its whole readiness.  An
 * edge is new data or state (the rings' signatures moved, or TCP's entry
 * edged) while the matching readiness holds, or an end (EPOLLHUP,
 * EPOLLERR) not reported yet.  Then the whole mask is reported, as the
 * kernel's wake-up reports what ep_item_poll finds: bytes that come to a
 * writable socket are EPOLLIN|EPOLLOUT (ours said EPOLLIN alone, and a
 * reset's EPOLLOUT came one wait late).  A peer gone leaves EPOLLHUP (and
 * EPOLLERR until its reset is read) on for good: no edge of its own again
 * (an ET loop that kept a hung-up socket woke ~2 M times a second). */
static uint32_t reg_edge(struct ep_reg *r, struct lf_conn *c, short tev, uint32_t rev)
{
    uint64_t in, out;
    conn_signature(c, &in, &out);
    int in_edge = (in != r->sig_in || (tev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) &&
                  (rev & (EPOLLIN | EPOLLRDHUP));
    int out_edge = (out != r->sig_out || (tev & POLLOUT)) && (rev & EPOLLOUT);
    uint32_t ends = rev & (EPOLLHUP | EPOLLERR);
    int ends_edge = (ends & ~r->ends_told) || (ends && (tev & (POLLHUP | POLLERR)));
    if (!in_edge && !out_edge && !ends_edge)
        return 0;
    /* (each signature moves on only when its readiness is reported: a
     * window that opens with time, not with the reader, still edges) */
    if (rev & (EPOLLIN | EPOLLRDHUP))
        r->sig_in = in;
    if (rev & EPOLLOUT)
        r->sig_out = out;
    r->ends_told |= ends;
    return rev;
}

/* Readiness of a registration, given what its TCP socket reported. */
static uint32_t reg_ready(struct ep_reg *r, short tev)
{
    if (r->disabled)
        return 0;
    short want = (short)(r->events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI));
    if (sock_kind(r->s) != LF_FAST) {
        if (!(r->events & EPOLLET))
            tev = poll_now(r->fd, want);
        uint32_t rev = (uint32_t)(tev & (want | POLLERR | POLLHUP));
        if (rev && (r->events & EPOLLONESHOT))
            r->disabled = 1;   /* the inner set's TCP entry is not one-shot */
        return rev;
    }
    struct lf_conn *c = r->s->conn;
    /* TCP's POLLOUT is news only while our writes go there: its first edge
     * after the ADD was a second EPOLLOUT, with nothing new, to EPOLLET */
    if ((tev & POLLOUT) && !(conn_kernel_events(c, POLLOUT) & POLLOUT))
        tev &= (short)~POLLOUT;
    /* EPOLLET hears TCP's edges, but the first look after ADD or MOD reports
     * what is there, as the kernel's does: an edge taken while EPOLLONESHOT
     * had disabled the record was dropped. */
    int first_look = r->sig_in == UINT64_MAX && r->sig_out == UINT64_MAX;
    r->asked = (!(r->events & EPOLLET) || first_look) && conn_wants_kernel(c, want);
    if (r->asked)
        tev |= poll_now(r->fd, want | POLLRDHUP);
    uint32_t rev = (uint16_t)(conn_poll_state(c, r->fd, want, tev) | sock_later_pollerr(r->s));
    if (r->events & EPOLLET)
        rev = reg_edge(r, c, tev, rev);
    if (rev && (r->events & EPOLLONESHOT))
        r->disabled = 1;
    return rev;
}

/* Each epoll_wait call is numbered (per thread), so that a record looked
 * at twice in one call (found ready by the rings, then again by its TCP
 * entry's edge, with more events) is reported once, with both sets of
 * events, as the kernel reports each descriptor at most once a call: a
 * program that closes a descriptor on its first report must not meet it
 * again in the same array (tests/eof_readiness.c). */
static uint64_t wait_calls;
static __thread uint64_t this_call LF_TLS_IE;
static __thread uint64_t calls_left LF_TLS_IE;

/* Numbers are taken from the shared count in blocks: an atomic add on
 * every call cost 6 ns of a 80 ns write, epoll_wait and read, and its line
 * would bounce between the threads of a server that waits in each. */
#define CALL_BLOCK 4096

static void number_this_call(void)
{
    if (calls_left == 0) {
        this_call = __atomic_fetch_add(&wait_calls, CALL_BLOCK, __ATOMIC_RELAXED);
        calls_left = CALL_BLOCK;
    }
    calls_left--;
    this_call++;
}

/* While a wait that went past its spin sleeps for events: its first fast
 * event scores it (wait.c's spin_waited). */
enum { WAIT_SCORING = 1, WAIT_SCORING_SLEPT = 2 };
static __thread int wait_scoring LF_TLS_IE;

static int add_event(struct epoll_event *out, int n, int max, struct ep_reg *r, uint32_t rev)
{
    if (__builtin_expect(wait_scoring != 0, 0) && sock_kind(r->s) == LF_FAST) {
        spin_waited(r->s->conn, wait_scoring == WAIT_SCORING_SLEPT);
        wait_scoring = 0;
    }
    if (r->out_call == this_call && r->out_idx < n && out[r->out_idx].data.u64 == r->data.u64) {
        out[r->out_idx].events |= rev;
        return n;
    }
    if (n < max) {
        out[n].events = rev;
        out[n].data = r->data;
        r->out_call = this_call;
        r->out_idx = n;
        n++;
    }
    return n;
}

/* May this record wait for its doorbell alone?  Not without an inner epoll
 * or direct entries, nor with a timer running (an unclear FIN, conn.c), nor
 * in a set shared since fork() (epoll_before_fork): those are looked at
 * every wait. */
static int may_idle(const struct ep_set *e, const struct ep_reg *r, int recheck_ms)
{
    int shared_end = __atomic_load_n(&r->s->conn->shared_end, __ATOMIC_RELAXED);
    return (r->mode == MODE_INNER || (r->mode == MODE_DIRECT && !shared_end)) &&
           recheck_ms < 0 && !e->shared;
}

/* Active fast registrations that are ready by shared memory alone.  A
 * reported record goes to the end of the list, so that a program asking for
 * fewer events than are ready gets the others next time. */
static int collect(struct ep_set *e, struct epoll_event *out, int n, int max, int *not_ready,
                   int *costly)
{
    struct reg_link *last = e->active.prev;
    *not_ready = *costly = 0;
    for (struct reg_link *l = e->active.next, *next; l != &e->active && n < max; l = next) {
        next = l->next;
        struct ep_reg *r = reg_of_link(l);
        uint32_t rev = sock_kind(r->s) == LF_FAST ? reg_ready(r, 0) : 0;
        if (rev)
            r->ready_look = e->looks;
        /* those a pass like arm_active's would make idle */
        int idle = !rev && sock_kind(r->s) == LF_FAST && may_idle(e, r, conn_recheck_ms(r->s->conn));
        *not_ready += idle;
        r->costly = idle && r->asked;
        *costly += r->costly;
        if (rev) {
            n = add_event(out, n, max, r, rev);
            if (l != last) {
                reg_unlink(r);
                reg_append(e, r);
            }
        }
        if (l == last)
            break;
    }
    return n;
}

/* The record or doorbell entry (TAG_BELL) an event of the kernel's is for;
 * NULL when it is the program's own. */
static void *reg_of(struct ep_set *e, uint64_t data)
{
    void *p = (void *)(uintptr_t)(data & ~(uint64_t)TAG_MASK);
    return ptrset_has(&e->mine, p) ? p : NULL;
}

/* Empties a registration's inner set: what TCP said, and its doorbell. */
static short drain_inner(struct ep_reg *r)
{
    struct epoll_event ev[4];
    short tev = 0;
    int n = libc.epoll_wait(r->inner, ev, 4, 0);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.fd == r->fd)
            tev |= (short)ev[i].events;
    }
    /* a socket gone plain goes back to the kernel after this report (refresh) */
    if (sock_kind(r->s) != r->kind_seen && sock_kind(r->s) != LF_PLAIN)
        inner_update(r);
    return tev;
}

/* *level: an event came that may be there again at the next look (the
 * program's own entries, an inner epoll's), not an edge (kernel_news_for). */
static int translate(struct ep_set *e, struct epoll_event *kev, int nk, struct epoll_event *out,
                     int n, int max, int *news, int *level)
{
    for (int i = 0; i < nk && n < max; i++) {
        if (kev[i].data.ptr == &wake_tag)
            continue;   /* a socket changed kind: refresh() follows */
        void *mine = reg_of(e, kev[i].data.u64);
        if (!mine) {
            out[n++] = kev[i];
            *level = 1;
            continue;
        }
        if ((kev[i].data.u64 & TAG_MASK) == TAG_BELL) {
            struct ep_bell *b = mine;
            if (b->link) {   /* else freed since the kernel queued it */
                bell_news(b->link);
                *news = 1;
            }
            continue;
        }
        struct ep_reg *r = mine;
        int direct = r->s && r->mode == MODE_DIRECT;
        *level |= !direct;
        if (!r->s || !(direct || r->mode == MODE_INNER))
            continue;   /* freed or handed to the kernel since it was queued */
        if (r->ghost) {
            if (!direct)
                drain_inner(r);   /* a doorbell rung before the DEL: once */
            continue;
        }
        int tcp_edge = direct && (kev[i].data.u64 & TAG_MASK) == TAG_TCP;
        int was_idle = r->state == REG_IDLE;
        if (!r->disabled)
            activate(e, r);
        /* A direct entry's TCP edge is asked again rather than believed: the
         * event may have been queued for a record freed and reused since
         * (another thread's close and ADD), and TCP moves only around the
         * switch and the end, so this costs a system call rarely. */
        short tev = !direct ? drain_inner(r)
                    : tcp_edge ? poll_now(r->fd, POLLIN | POLLOUT | POLLRDHUP) : 0;
        uint32_t rev = reg_ready(r, tev);
        if (rev)
            n = add_event(out, n, max, r, rev);
        else if (tcp_edge && was_idle)
            /* still armed (only a doorbell's edge says the peer took the
             * flag, and that edge is queued for this set too): back to
             * idle, or a program that never sleeps would look at it on
             * every call (the first EPOLLOUT edge of each socket added) */
            reg_set_state(e, r, REG_IDLE);
    }
    return n;
}

/* The kernel's k events in kev, as the program's, after the first n of out
 * (kev may be out + n: each event gives at most one, at or before its own
 * index). */
static int kernel_events(int epfd, struct epoll_event *kev, int k, struct epoll_event *out,
                         int n, int max)
{
    lf_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    int level = !e && k > 0;
    if (e) {
        int news = 0, not_ready, costly;
        n = translate(e, kev, k, out, n, max, &news, &level);
        if (news)   /* records a doorbell made active: ready ones now */
            n = collect(e, out, n, max, &not_ready, &costly);
        refresh(e);
    } else
        for (int i = 0; i < k; i++)
            out[n++] = kev[i];
    lf_unlock(&ep_lock);
    kernel_found_set = level ? epfd : -1;
    return n;
}

static int kernel_wait(int epfd, struct epoll_event *out, int n, int max, int timeout,
                       const sigset_t *mask)
{
    struct epoll_event kev[64];
    int room = max - n < 64 ? max - n : 64;
    int k = mask ? libc.epoll_pwait(epfd, kev, room, timeout, mask)
                 : libc.epoll_wait(epfd, kev, room, timeout);
    return k < 0 ? -1 : kernel_events(epfd, kev, k, out, n, max);
}

/* What the set holds, for lf_epoll_wait's choices. */
struct set_state {
    int ours;    /* the set has records, or watches our eventfd: else it is the kernel's alone */
    int inner;   /* registrations through inner epolls: worth a spin */
    int stuck;   /* fast sockets left to the kernel (no inner epoll could be made) */
};

/* arm_active's min_age for "only those whose last look was a system call":
 * a record whose readiness needs TCP's word (its peer has not switched
 * yet, say a client idle since its first request) costs a poll() at every
 * look, more than its wake-up by doorbell or TCP edge ever will. */
#define COSTLY_ONLY UINT_MAX

/* Before a sleep: arms every active record's rings (min_age 0; else only
 * those not found ready for that many looks); those that may go idle.  Sets
 * how long the caller may sleep (-1: no limit); the records it made idle,
 * in *idled, still need a look after the barrier. */
static int arm_active(struct ep_set *e, int *recheck, struct ep_reg **idled, unsigned min_age)
{
    int heavy = 0;   /* one barrier for all the rings armed (barrier.c) */
    *idled = NULL;
    for (struct reg_link *l = e->active.next, *next; l != &e->active; l = next) {
        next = l->next;
        struct ep_reg *r = reg_of_link(l);
        if (!r->costly && (min_age == COSTLY_ONLY || e->looks - r->ready_look < min_age))
            continue;   /* ready lately, and cheap to look at: it stays, unarmed (collect_locked) */
        if (sock_kind(r->s) != LF_FAST || r->disabled) {
            reg_set_state(e, r, REG_OFF);   /* a change of kind or a MOD brings it back */
            continue;
        }
        int ms = conn_recheck_ms(r->s->conn);
        if (may_idle(e, r, ms)) {
            reg_set_state(e, r, REG_IDLE);
            r->just_idled = *idled;
            *idled = r;
        }
        *recheck = timeout_min(*recheck, ms);
        heavy |= conn_arm(r->s->conn, (short)r->events);
    }
    return heavy;
}

/* Records made idle whose rings changed before they were armed: active
 * again, and reported. */
static int collect_idled(struct ep_set *e, struct ep_reg *idled, struct epoll_event *out,
                         int n, int max)
{
    for (struct ep_reg *r = idled; r; r = r->just_idled) {
        if (r->state != REG_IDLE)
            continue;
        uint32_t rev = n < max ? reg_ready(r, 0) : 1;   /* no room: looked at next time */
        if (!rev)
            continue;
        activate(e, r);
        if (n < max)
            n = add_event(out, n, max, r, rev);
    }
    return n;
}

static int count_stuck(struct ep_set *e)
{
    int n = 0;
    for (struct reg_link *l = e->active.next; l != &e->active; l = l->next) {
        struct ep_reg *r = reg_of_link(l);
        n += r->mode == MODE_KERNEL && sock_kind(r->s) == LF_FAST;
    }
    return n;
}

/* Records found not ready, and free to go idle, by a look that will not
 * sleep, beyond which those not found ready for STALE_BUDGET / (their
 * number) looks go idle (collect_locked); below, every STALE_LOOKS looks,
 * those not found ready for STALE_AGE looks.  A busy connection is found
 * ready once a round trip, however many looks its spin takes: idled at
 * once, each of its messages would ring the doorbell (a system call of
 * the writer's, an event of the kernel's here); kept, it costs a look of
 * shared memory (~0.1 us), so the looks spent on records not ready before
 * they go idle are bounded by the budget (redis-benchmark -c 50 against
 * redis: 1.0 doorbell a request with the old rule, idling those not ready
 * at one look; 0.56 and 1.9x the requests with this one). */
#define STALE_MAX 16
#define STALE_BUDGET 4096u
#define STALE_LOOKS 1024
#define STALE_AGE 8192

/* Ready records, from the active list.  With `recheck` (before a sleep):
 * arms the rings first, and sets how long the caller may sleep before an
 * unclear FIN is looked into again (conn.c; -1: no limit). */
static int collect_locked(int epfd, struct epoll_event *out, int n, int max, int *recheck,
                          struct set_state *st)
{
    lf_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    *st = (struct set_state){ 0, 0, 0 };
    if (e) {
        st->ours = e->regs || e->watching;
        refresh(e);
        wake_all_idle(e);
        if (!recheck)
            bells_from_memory(e);
        st->inner = e->inner_regs;
        struct ep_reg *idled = NULL;
        if (recheck) {
            barrier_after_arm(arm_active(e, recheck, &idled, 0));
            st->stuck = count_stuck(e);
        }
        int not_ready, costly;
        e->looks += !recheck;
        n = collect(e, out, n, max, &not_ready, &costly);
        int stale = not_ready && (not_ready > STALE_MAX || e->looks % STALE_LOOKS == 0);
        if (!recheck && (stale || costly)) {
            /* A program that never sleeps (it finds news each time it
             * spins) would otherwise look at every record not ready, a
             * system call each while TCP still counts, on every call: those
             * not found ready lately go idle as before a sleep. */
            int unused = -1;
            unsigned many = (unsigned)not_ready;
            unsigned min_age = !stale                ? COSTLY_ONLY
                               : not_ready > STALE_MAX ? (STALE_BUDGET + many - 1) / many
                                                       : STALE_AGE;
            barrier_after_arm(arm_active(e, &unused, &idled, min_age));
        }
        n = collect_idled(e, idled, out, n, max);
    }
    lf_unlock(&ep_lock);
    return n;
}

/* With fast events: how often the kernel's are looked at.  A look is a
 * system call, 0.3-2 us depending on the host: every 16 us it took 6% of a
 * busy loop's time where a call costs 1 us (redis-benchmark -c 1: 13% fewer
 * requests than with 64 us).  A kernel descriptor beside fast events that
 * are always ready waits at most this long, less than the kernel itself
 * takes to carry a message on such a host (13-27 us). */
#define KERNEL_LOOK_NS 64000u

/* Is it time this thread asked the kernel for its events again? */
static __thread uint64_t next_kernel_look LF_TLS_IE;

static int kernel_look_due_at(uint64_t now)
{
    if (now < next_kernel_look)
        return 0;
    next_kernel_look = now + KERNEL_LOOK_NS;
    return 1;
}

/* Calls made and events handed out by this thread since it last read the
 * clock for kernel_look_due. */
static __thread unsigned since_clock LF_TLS_IE;

/* The same between calls: the clock (20-30 ns on a VM) is read once per 8
 * calls or events handed out, whichever comes first.  Counting calls alone
 * starved an event loop that works long on each event: nginx sending big
 * files to 100 fast clients spends ~50 ms between calls, so its listening
 * socket was looked at 2-3 times a second and wrk's connections waited
 * seconds in the accept queue (a small request took 3.6 s, the kernel's
 * 5 ms).  The program's work grows with the events it is given. */
static int kernel_look_due(void)
{
    if (++since_clock < 8)
        return 0;
    since_clock = 0;
    return kernel_look_due_at(monotonic_ns());
}

static int handed_out(int n)
{
    lf_thread_waits++;
    if (n > 0)
        since_clock += (unsigned)n;
    return n;
}

/* For epoll_pwait2, whose timeout only the kernel's own call keeps exact. */
static int has_regs(int epfd)
{
    if (!__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return 0;
    lf_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    int yes = e && (e->regs || e->watching);
    lf_unlock(&ep_lock);
    return yes;
}

/* A wait made as the kernel's alone (the set held nothing of ours when it
 * began) may return entries another thread added meanwhile for a socket of
 * ours: they carry our addresses, not the program's data (apache's event
 * MPM crashed on them).  So what such a wait returns is translated as
 * kernel_wait's is, in place, once any set of ours exists. */
static int late_translate(int epfd, struct epoll_event *out, int k, int max)
{
    if (k <= 0 || !__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return k;
    number_this_call();
    return kernel_events(epfd, out, k, out, 0, max);
}

static int lf_epoll_wait(int epfd, struct epoll_event *out, int max, int timeout,
                         const sigset_t *mask);

static int kernel_only_wait(int epfd, struct epoll_event *out, int max, int timeout,
                            const sigset_t *mask)
{
    uint64_t start = timeout > 0 ? monotonic_ns() : 0;
    int k = mask ? libc.epoll_pwait(epfd, out, max, timeout, mask)
                 : libc.epoll_wait(epfd, out, max, timeout);
    int n = late_translate(epfd, out, k, max);
    if (n || k <= 0 || timeout == 0)
        return n;
    /* only entries of ours, none ready: the set is ours now, and waits so */
    return lf_epoll_wait(epfd, out, max, ms_left(timeout, start), mask);
}

/* A thread cancelled in its sleep (pthread_cancel) sleeps no more. */
static void sleep_cancelled_epoll(void *sl)
{
    __atomic_sub_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
    sleep_cancelled(sl);
}

static int kernel_wait_cancellable(int epfd, struct epoll_event *out, int max, int timeout,
                                   struct lf_sleep *sl)
{
    int n;
    pthread_cleanup_push(sleep_cancelled_epoll, sl);
    n = kernel_wait(epfd, out, 0, max, timeout, sl->mask);
    pthread_cleanup_pop(0);
    return n;
}

/* lf_epoll_wait's sleeps, after its spin: until events, the timeout, an
 * error or a handler. */
static int sleep_for_events(int epfd, struct epoll_event *out, int max, int timeout,
                            const sigset_t *mask, struct lf_caught *call)
{
    struct set_state st;
    int n;
    uint64_t deadline = timeout < 0 ? UINT64_MAX : monotonic_ns() + (uint64_t)timeout * 1000000;
    for (;;) {
        /* Counted before the last look: a socket that turns fast from now
         * on wakes us (epoll_kind_changed). */
        __atomic_add_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
        int recheck = -1;
        if ((n = collect_locked(epfd, out, 0, max, &recheck, &st))) {
            __atomic_sub_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
            return n;
        }
        int left = -1;
        if (deadline != UINT64_MAX) {
            uint64_t now = monotonic_ns();
            left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
        }
        int sleep = timeout_min(recheck, left);
        if (st.stuck && (sleep < 0 || sleep > 10))
            sleep = 10;   /* see to_inner */
        sleep = trim_before_sleep(sleep);
        struct lf_sleep sl;
        if ((n = sleep_begin(&sl, call, 0, mask)) == 0) {
            if (wait_scoring)
                wait_scoring = WAIT_SCORING_SLEPT;
            n = kernel_wait_cancellable(epfd, out, max, sleep, &sl);
            sleep_end(&sl);
        } else {
            errno = -n, n = -1;
        }
        __atomic_sub_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
        if (n != 0 || left == 0)
            return n;
    }
}

static int lf_epoll_wait(int epfd, struct epoll_event *out, int max, int timeout,
                         const sigset_t *mask)
{
    number_this_call();
    if (timeout != 0)
        reap_now();   /* about to wait: a good time (reap.c) */
    if (max <= 0 || !__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return kernel_only_wait(epfd, out, max, timeout, mask);
    /* The kernel's descriptors are asked first every KERNEL_LOOK_NS, so that
     * none starves behind fast ones always ready (also with room for one
     * event); not on every call: a system call costs 0.3-2 us, a fast event
     * tens of nanoseconds (redis-benchmark -c 1 asks twice a request). */
    struct set_state st;
    struct lf_caught call;   /* a handler run from here on ends the call (signals.c) */
    caught_now(&call);
    int looked = kernel_look_due(), n = 0;
    looked |= kernel_news_for(epfd);
    if (looked && (n = kernel_wait(epfd, out, 0, max, 0, NULL)) < 0)
        return -1;
    n = collect_locked(epfd, out, n, max, NULL, &st);
    if (!st.ours)   /* a set of the kernel's alone: its wait as it is */
        return n || (looked && timeout == 0) ? n : kernel_only_wait(epfd, out, max, timeout, mask);
    if (n)
        return n;
    if (timeout == 0)   /* nothing ready: the kernel's answer is the call's */
        return looked ? 0 : kernel_wait(epfd, out, 0, max, 0, NULL);
    /* While spinning, likewise: a reply that comes during a system call
     * waits for it. */
    uint64_t end = spin_deadline(NULL);
    for (unsigned i = 1; end && st.inner; i++) {
        if ((n = collect_locked(epfd, out, 0, max, NULL, &st)))
            return spin_found(), n;
        if ((i & 63) == 0) {
            uint64_t now = monotonic_ns();
            if (kernel_look_due_at(now) && (n = kernel_wait(epfd, out, 0, max, 0, NULL)))
                return spin_found(), n;
            if (spin_over(&end, now))
                break;
        }
    }
    if (end == SPIN_OPEN)   /* left before its first clock reading: the wait's start */
        spin_over(&end, monotonic_ns());
    wait_scoring = WAIT_SCORING;
    n = sleep_for_events(epfd, out, max, timeout, mask, &call);
    wait_scoring = 0;
    return n;
}

LF_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return handed_out(lf_epoll_wait(epfd, ev, max, timeout, NULL));
}

LF_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                          const sigset_t *mask)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return handed_out(lf_epoll_wait(epfd, ev, max, timeout, mask));
}

typedef int epoll_pwait2_fn(int, struct epoll_event *, int, const struct timespec *,
                            const sigset_t *);

/* A timeout under a millisecond on a set with our records: a look, the
 * kernel's own wait for that long (a ring's news does not end it, its time
 * does: our records stand there as their inner sets, not armed), and a
 * look again.  What the kernel returns is translated as any kernel wait's
 * (late_translate); a handler run meanwhile ends it with EINTR. */
static int brief_wait(int epfd, struct epoll_event *ev, int max, const struct timespec *t,
                      const sigset_t *mask, epoll_pwait2_fn *real)
{
    int e = errno;
    int n = lf_epoll_wait(epfd, ev, max, 0, NULL);
    if (n != 0)
        return n;
    int k = real(epfd, ev, max, t, mask);
    if (k < 0)
        return k;
    errno = e;
    n = late_translate(epfd, ev, k, max);
    return n ? n : lf_epoll_wait(epfd, ev, max, 0, NULL);
}

/* epoll_pwait2: a timeout in nanoseconds.  A set without loopfast's
 * registrations goes to the kernel as is; one with them waits as
 * epoll_pwait does, the timeout rounded up to whole milliseconds (a wait
 * may end a little late, never early), but for one under a millisecond
 * (brief_wait). */
LF_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *t,
                           const sigset_t *mask)
{
    static void *slot;
    epoll_pwait2_fn *real;
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    *(void **)&real = dlsym_next_cached(&slot, "epoll_pwait2");
    int kernels = max <= 0 || !has_regs(epfd);
    uint64_t start = kernels ? monotonic_ns() : 0;
    if (kernels) {
        int k = real(epfd, ev, max, t, mask);
        int n = late_translate(epfd, ev, k, max);
        if (n || k <= 0)
            return n;
    }
    if (t && (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000))
        return errno = EINVAL, -1;
    if (!kernels && t && t->tv_sec == 0 && t->tv_nsec > 0 && t->tv_nsec < 1000000)
        return handed_out(brief_wait(epfd, ev, max, t, mask, real));
    int ms = -1;
    if (t) {
        uint64_t want = (uint64_t)t->tv_sec * 1000 + ((uint64_t)t->tv_nsec + 999999) / 1000000;
        ms = want > INT32_MAX ? INT32_MAX : (int)want;
    }
    /* only entries of ours came (late_translate): the rest of the wait, as ours */
    return handed_out(lf_epoll_wait(epfd, ev, max, kernels ? ms_left(ms, start) : ms, mask));
}
