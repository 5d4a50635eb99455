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
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct ep_reg {
    struct ep_reg *next;
    int fd, inner, kind_seen;
    struct lf_sock *s;           /* a reference is held */
    uint32_t events;
    epoll_data_t data;
    int disabled;                /* EPOLLONESHOT fired */
    uint64_t sig_in, sig_out;    /* EPOLLET: what was last reported */
};

/* Which pointers are our registrations: epoll_wait must tell them from the
 * program's own epoll_data in O(1), without dereferencing the latter. */
struct ptrset {
    uintptr_t *slot;   /* 0: empty, 1: deleted */
    size_t cap, used;
};

struct ep_set {
    struct ep_set *next;
    int epfd;
    struct ep_reg *regs;
    struct ptrset mine;
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
static int ptrset_add(struct ptrset *ps, const void *p)
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
    ptrset_put(ps, (uintptr_t)p);
    ps->used++;
    return 0;
}

static void ptrset_del(struct ptrset *ps, const void *p)
{
    uintptr_t v = (uintptr_t)p;
    if (!ptrset_has(ps, p))
        return;
    for (size_t i = ptr_hash(v, ps->cap);; i = (i + 1) & (ps->cap - 1))
        if (ps->slot[i] == v) {
            ps->slot[i] = 1;
            return;
        }
}

static struct ep_set *sets;
static pthread_mutex_t ep_lock = PTHREAD_MUTEX_INITIALIZER;

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
        e->next = sets;
        __atomic_store_n(&sets, e, __ATOMIC_RELEASE);
    }
    return e;
}

static struct ep_reg **find_reg(struct ep_set *e, int fd)
{
    struct ep_reg **p = &e->regs;
    while (*p && (*p)->fd != fd)
        p = &(*p)->next;
    return p;
}

/* The inner set: TCP as the program asked while pending (level), edges only
 * once fast (the rings say the rest); the doorbell or the offer socket. */
static void inner_update(struct ep_reg *r)
{
    int kind = sock_kind(r->s);
    struct epoll_event tcp = { .events = r->events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI),
                               .data.fd = r->fd };
    if (kind == LF_FAST)
        tcp.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    if (libc.epoll_ctl(r->inner, EPOLL_CTL_MOD, r->fd, &tcp) < 0)
        libc.epoll_ctl(r->inner, EPOLL_CTL_ADD, r->fd, &tcp);
    struct epoll_event x = { .events = EPOLLIN, .data.fd = -1 };
    if (kind == LF_FAST) {
        /* data.fd -1 - which: tells the doorbells apart from the TCP socket */
        libc.epoll_ctl(r->inner, EPOLL_CTL_ADD, r->s->conn->bell_mine[BELL_DATA], &x);
        x.data.fd = -1 - BELL_ROOM;
        libc.epoll_ctl(r->inner, EPOLL_CTL_ADD, r->s->conn->bell_mine[BELL_ROOM], &x);
    } else if (kind == LF_PENDING && r->s->offer_fd >= 0)
        libc.epoll_ctl(r->inner, EPOLL_CTL_ADD, r->s->offer_fd, &x);
    r->kind_seen = kind;
}

/* Programs such as redis add and delete a descriptor for every request; a
 * fast connection's inner set does not depend on the program's mask, so it
 * is kept for the next ADD instead of being rebuilt. */
static int inner_get(struct ep_reg *r)
{
    struct lf_sock *s = r->s;
    if (sock_kind(s) == LF_FAST && s->spare_inner >= 0) {
        r->inner = s->spare_inner;
        s->spare_inner = -1;
        r->kind_seen = LF_FAST;
        return 0;
    }
    r->inner = epoll_create1(EPOLL_CLOEXEC);
    if (r->inner < 0)
        return -1;
    inner_update(r);
    return 0;
}

static void inner_put(struct ep_reg *r)
{
    struct lf_sock *s = r->s;
    if (r->kind_seen == LF_FAST && sock_kind(s) == LF_FAST && s->spare_inner < 0)
        s->spare_inner = r->inner;
    else
        libc.close_own(r->inner);
}

static int reg_add(int epfd, struct ep_set *e, int fd, struct lf_sock *s, struct epoll_event *ev)
{
    struct ep_reg **p = find_reg(e, fd);
    if (*p) {
        errno = EEXIST;
        return -1;
    }
    struct ep_reg *r = calloc(1, sizeof *r);
    if (!r)
        return errno = ENOMEM, -1;
    r->inner = -1;
    r->fd = fd;
    r->s = s;
    r->events = ev->events;
    r->data = ev->data;
    r->sig_in = r->sig_out = UINT64_MAX;
    struct epoll_event outer = { .events = EPOLLIN, .data.ptr = r };
    if (ptrset_add(&e->mine, r) < 0 || inner_get(r) < 0 ||
        libc.epoll_ctl(epfd, EPOLL_CTL_ADD, r->inner, &outer) < 0) {
        int err = errno;
        if (r->inner >= 0)
            libc.close_own(r->inner);
        ptrset_del(&e->mine, r);
        free(r);
        return errno = err, -1;
    }
    *p = r;
    return 0;
}

static void reg_free(int epfd, struct ep_reg *r)
{
    /* callers drop it from their set's pointer set first */
    if (epfd >= 0)
        libc.epoll_ctl(epfd, EPOLL_CTL_DEL, r->inner, NULL);
    inner_put(r);
    sock_put(r->s);
    free(r);
}

static int ctl_ours(int epfd, int op, int fd, struct lf_sock *s, struct epoll_event *ev)
{
    pthread_mutex_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, op == EPOLL_CTL_ADD);
    int rc = 0;
    if (!e) {
        rc = -1;
        errno = op == EPOLL_CTL_ADD ? ENOMEM : ENOENT;
    } else if (op == EPOLL_CTL_ADD) {
        rc = reg_add(epfd, e, fd, s, ev);
        if (rc == 0)
            s = NULL;   /* the registration keeps the reference */
    } else {
        struct ep_reg **p = find_reg(e, fd);
        if (!*p) {
            rc = -1;
            errno = ENOENT;
        } else if (op == EPOLL_CTL_DEL) {
            struct ep_reg *r = *p;
            *p = r->next;
            ptrset_del(&e->mine, r);
            reg_free(epfd, r);
        } else {
            (*p)->events = ev->events;
            (*p)->data = ev->data;
            (*p)->disabled = 0;
            (*p)->sig_in = (*p)->sig_out = UINT64_MAX;
            if ((*p)->kind_seen != LF_FAST || sock_kind((*p)->s) != LF_FAST)
                inner_update(*p);
        }
    }
    pthread_mutex_unlock(&ep_lock);
    if (s)
        sock_put(s);
    return rc;
}

LF_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    struct lf_sock *s = fdtable_acquire(fd);
    int kind = s ? sock_kind(s) : 0;
    if (kind != LF_FAST && kind != LF_PENDING) {
        if (s)
            sock_put(s);
        return libc.epoll_ctl(epfd, op, fd, ev);
    }
    if (op != EPOLL_CTL_DEL && !ev) {
        sock_put(s);
        errno = EFAULT;
        return -1;
    }
    return ctl_ours(epfd, op, fd, s, ev);
}

void epoll_forget_range(unsigned first, unsigned last)
{
    for (;;) {
        int found = -1;
        pthread_mutex_lock(&ep_lock);
        for (struct ep_set *e = sets; e && found < 0; e = e->next)
            if ((unsigned)e->epfd >= first && (unsigned)e->epfd <= last)
                found = e->epfd;
        pthread_mutex_unlock(&ep_lock);
        if (found < 0)
            return;
        epoll_forget_fd(found);
    }
}

void epoll_forget_fd(int fd)
{
    if (!__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&ep_lock);
    for (struct ep_set *e = sets; e; e = e->next) {
        struct ep_reg **p = find_reg(e, fd);
        if (*p) {
            struct ep_reg *r = *p;
            *p = r->next;
            ptrset_del(&e->mine, r);
            reg_free(e->epfd, r);
        }
    }
    /* An epoll descriptor being closed takes its registrations along. */
    for (struct ep_set **p = &sets; *p;) {
        struct ep_set *e = *p;
        if (e->epfd != fd) {
            p = &e->next;
            continue;
        }
        *p = e->next;
        while (e->regs) {
            struct ep_reg *r = e->regs;
            e->regs = r->next;
            reg_free(-1, r);
        }
        free(e->mine.slot);
        free(e);
    }
    pthread_mutex_unlock(&ep_lock);
}

/* ---- waiting ---- */

static short poll_now(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    return libc.poll(&p, 1, 0) > 0 ? p.revents : 0;
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
        return (uint32_t)(tev & (want | POLLERR | POLLHUP));
    }
    struct lf_conn *c = r->s->conn;
    if (!(r->events & EPOLLET) && conn_wants_kernel(c, want))
        tev |= poll_now(r->fd, want | POLLRDHUP);
    uint32_t rev = (uint16_t)conn_poll_state(c, want, tev);
    if (r->events & EPOLLET) {
        uint64_t in, out;
        conn_signature(c, &in, &out);
        if (in == r->sig_in && !(tev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)))
            rev &= ~(uint32_t)(EPOLLIN | EPOLLRDHUP);
        if (out == r->sig_out && !(tev & POLLOUT))
            rev &= ~(uint32_t)EPOLLOUT;
        if (rev & (EPOLLIN | EPOLLRDHUP))
            r->sig_in = in;
        if (rev & EPOLLOUT)
            r->sig_out = out;
    }
    if (rev && (r->events & EPOLLONESHOT))
        r->disabled = 1;
    return rev;
}

static int add_event(struct epoll_event *out, int n, int max, struct ep_reg *r, uint32_t rev)
{
    for (int i = 0; i < n; i++)
        if (out[i].data.u64 == r->data.u64 && out[i].events == rev)
            return n;
    if (n < max) {
        out[n].events = rev;
        out[n].data = r->data;
        n++;
    }
    return n;
}

/* Fast registrations that are ready by shared memory alone. */
static int collect(struct ep_set *e, struct epoll_event *out, int n, int max)
{
    for (struct ep_reg *r = e->regs; r && n < max; r = r->next) {
        if (sock_kind(r->s) != LF_FAST)
            continue;
        uint32_t rev = reg_ready(r, 0);
        if (rev)
            n = add_event(out, n, max, r, rev);
    }
    return n;
}

static struct ep_reg *reg_of(struct ep_set *e, void *p)
{
    return ptrset_has(&e->mine, p) ? p : NULL;
}

/* Empties a registration's inner set: what TCP said, and its doorbell. */
static short drain_inner(struct ep_reg *r)
{
    struct epoll_event ev[4];
    short tev = 0;
    int n = libc.epoll_wait(r->inner, ev, 4, 0);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.fd == r->fd) {
            tev |= (short)ev[i].events;
        } else if (sock_kind(r->s) == LF_FAST) {
            bell_drain(r->s->conn, ev[i].data.fd == -1 - BELL_ROOM ? BELL_ROOM : BELL_DATA);
        } else {
            pthread_mutex_lock(&r->s->lock);
            if (sock_kind(r->s) == LF_PENDING)
                handshake_take_answer(r->s, r->fd);
            pthread_mutex_unlock(&r->s->lock);
        }
    }
    if (sock_kind(r->s) != r->kind_seen)
        inner_update(r);
    return tev;
}

static int translate(struct ep_set *e, struct epoll_event *kev, int nk, struct epoll_event *out,
                     int n, int max)
{
    for (int i = 0; i < nk && n < max; i++) {
        struct ep_reg *r = reg_of(e, kev[i].data.ptr);
        if (!r) {
            out[n++] = kev[i];
            continue;
        }
        uint32_t rev = reg_ready(r, drain_inner(r));
        if (rev)
            n = add_event(out, n, max, r, rev);
    }
    return n;
}

static int kernel_wait(int epfd, struct epoll_event *out, int n, int max, int timeout,
                       const sigset_t *mask)
{
    struct epoll_event kev[64];
    int room = max - n < 64 ? max - n : 64;
    int k = mask ? libc.epoll_pwait(epfd, kev, room, timeout, mask)
                 : libc.epoll_wait(epfd, kev, room, timeout);
    if (k < 0)
        return -1;
    pthread_mutex_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    if (e)
        n = translate(e, kev, k, out, n, max);
    else
        for (int i = 0; i < k; i++)
            out[n++] = kev[i];
    pthread_mutex_unlock(&ep_lock);
    return n;
}

static int collect_locked(int epfd, struct epoll_event *out, int max, int arm)
{
    int n = 0;
    pthread_mutex_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    if (e) {
        for (struct ep_reg *r = e->regs; arm && r; r = r->next)
            if (sock_kind(r->s) == LF_FAST && !r->disabled)
                conn_arm(r->s->conn, (short)r->events);
        n = collect(e, out, 0, max);
    }
    pthread_mutex_unlock(&ep_lock);
    return n;
}

static int has_regs(int epfd)
{
    if (!__atomic_load_n(&sets, __ATOMIC_ACQUIRE))
        return 0;
    pthread_mutex_lock(&ep_lock);
    struct ep_set *e = find_set(epfd, 0);
    int yes = e && e->regs;
    pthread_mutex_unlock(&ep_lock);
    return yes;
}

static int lf_epoll_wait(int epfd, struct epoll_event *out, int max, int timeout,
                         const sigset_t *mask)
{
    static unsigned calls;
    if (timeout != 0)
        reap_now();   /* about to wait: a good time (reap.c) */
    if (max <= 0 || !has_regs(epfd))
        return mask ? libc.epoll_pwait(epfd, out, max, timeout, mask)
                    : libc.epoll_wait(epfd, out, max, timeout);
    int n = collect_locked(epfd, out, max, 0);
    /* Now and then let the kernel's descriptors in too, so none starves. */
    if (n || timeout == 0)
        return (n < max && (timeout == 0 || (++calls & 7) == 0)) ? kernel_wait(epfd, out, n, max, 0, NULL) : n;
    uint64_t end = spin_deadline();
    for (unsigned i = 1; end; i++) {
        if ((n = collect_locked(epfd, out, max, 0)))
            return n;
        if ((i & 63) == 0) {
            if ((n = kernel_wait(epfd, out, 0, max, 0, NULL)))
                return n;
            if (monotonic_ns() >= end)
                break;
        }
    }
    uint64_t deadline = timeout < 0 ? UINT64_MAX : monotonic_ns() + (uint64_t)timeout * 1000000;
    for (;;) {
        if ((n = collect_locked(epfd, out, max, 1)))
            return n;
        int left = -1;
        if (deadline != UINT64_MAX) {
            uint64_t now = monotonic_ns();
            left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
        }
        n = kernel_wait(epfd, out, 0, max, trim_before_sleep(left), mask);
        if (n != 0 || left == 0)
            return n;
    }
}

LF_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return lf_epoll_wait(epfd, ev, max, timeout, NULL);
}

LF_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                          const sigset_t *mask)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return lf_epoll_wait(epfd, ev, max, timeout, mask);
}
