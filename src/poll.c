/*
 * poll.c - poll, ppoll, select and pselect with loopfast descriptors mixed
 * among ordinary ones.
 *
 * A fast descriptor's readiness lives in shared memory, not in the kernel.
 * So: answer from shared memory first; spin for LOOPFAST_SPIN_US; then arm
 * the rings and sleep in the kernel with, in place of each fast descriptor,
 * its TCP socket, and this thread's wait epoll holding the doorbells
 * (docs/design.md, 6).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct tracked {
    nfds_t user;          /* index in the caller's array */
    struct lf_sock *s;
    nfds_t extra;         /* index of its offer socket, or of its doorbell (bell_wait_fd) */
    int bell;             /* what it sleeps on for the doorbell (bell_wait_fd); -1: none */
};

struct poll_set {
    struct pollfd *user;
    nfds_t nuser;
    struct pollfd *kfds;  /* the caller's entries, then two extra per tracked */
    nfds_t nk;
    struct tracked *t;
    nfds_t nt;
    int from_select;      /* the program called select(): no RLIMIT_NOFILE to honour */
    int wait_ep;          /* this thread's wait epoll, when a doorbell is in it; else -1 */
    int kind_ep;          /* the same, hearing a pending socket turn fast (kinds_begin); else -1 */
};

static int is_waitable(struct lf_sock *s)
{
    int k = sock_kind(s);
    return k == LF_FAST || k == LF_PENDING;
}

/* Builds the kernel's set; returns 0 when no descriptor is ours. */
static int build(struct poll_set *ps, struct pollfd *fds, nfds_t n)
{
    memset(ps, 0, sizeof *ps);
    ps->wait_ep = ps->kind_ep = -1;
    for (nfds_t i = 0; i < n; i++) {
        struct lf_sock *s = fds[i].fd >= 0 ? fdtable_acquire(fds[i].fd) : NULL;
        if (!s)
            continue;
        if (!is_waitable(s) || (!ps->t && !(ps->t = calloc(n, sizeof *ps->t)))) {
            sock_put(s);
            continue;
        }
        ps->t[ps->nt].user = i;
        ps->t[ps->nt++].s = s;
    }
    if (!ps->nt)
        return 0;
    ps->user = fds;
    ps->nuser = n;
    ps->kfds = calloc(n + ps->nt + 1, sizeof *ps->kfds);   /* + the wait epoll */
    if (!ps->kfds)
        return 0;
    memcpy(ps->kfds, fds, n * sizeof *fds);
    ps->nk = n;
    return 1;
}

static void release(struct poll_set *ps)
{
    for (nfds_t i = 0; i < ps->nt; i++)
        sock_put(ps->t[i].s);
    free(ps->t);
    free(ps->kfds);
}

static void release_cancelled(void *ps)
{
    cancel_unwound();
    release(ps);
}

/* Sets the kernel's entries for each tracked descriptor, as it is now. */
static void prepare_kernel(struct poll_set *ps)
{
    ps->nk = ps->nuser;
    ps->wait_ep = -1;
    for (nfds_t i = 0; i < ps->nt; i++) {
        struct tracked *t = &ps->t[i];
        struct pollfd *k = &ps->kfds[t->user];
        short want = ps->user[t->user].events;
        k->revents = 0;
        t->extra = ps->nk;
        t->bell = -1;
        /* Doorbells after the caller's entries: where poll_fitting sleeps
         * when the set does not fit under RLIMIT_NOFILE. */
        if (sock_kind(t->s) != LF_FAST) {
            /* pending: TCP alone; the answer is taken by a later read or
             * write (pending.c), so it costs no wake-up; another thread's
             * that switches it wakes us through kind_ep */
            k->events = want;
            t->extra = (nfds_t)-1;
            if (ps->kind_ep >= 0)
                ps->wait_ep = ps->kind_ep;
            continue;
        }
        k->events = conn_kernel_events(t->s->conn, want);
        t->bell = bell_wait_fd(t->s->conn);
        if (t->bell != conn_bell_mine(t->s->conn)) {
            ps->wait_ep = t->bell;   /* one entry for every doorbell in it */
            t->extra = (nfds_t)-1;
            continue;
        }
        ps->kfds[ps->nk++] = (struct pollfd){ .fd = t->bell, .events = POLLIN };
    }
    if (ps->wait_ep >= 0)   /* last: where poll_fitting sleeps */
        ps->kfds[ps->nk++] = (struct pollfd){ .fd = ps->wait_ep, .events = POLLIN };
}

/* Fills the caller's revents; returns how many are ready.  `kernel` says
 * whether kfds hold a fresh kernel answer. */
static int evaluate(struct poll_set *ps, int kernel)
{
    int ready = 0;
    for (nfds_t i = 0; i < ps->nuser; i++)
        ps->user[i].revents = kernel ? ps->kfds[i].revents : 0;
    for (nfds_t i = 0; i < ps->nt; i++) {
        struct tracked *t = &ps->t[i];
        struct pollfd *u = &ps->user[t->user];
        short tev = kernel ? ps->kfds[t->user].revents : 0;
        int fresh = kernel && t->extra < ps->nk;
        short xev = fresh ? ps->kfds[t->extra].revents : 0;
        if (fresh && xev && sock_kind(t->s) == LF_FAST && t->bell >= 0)
            bell_after_wake(t->s->conn, t->bell);   /* the doorbell itself: read */
        if (sock_kind(t->s) == LF_FAST) {
            u->revents = conn_poll_state(t->s->conn, u->fd, u->events, tev);
        } else {
            u->revents = tev;
        }
        u->revents |= sock_later_pollerr(t->s);   /* an error kept for the next call (socket.c) */
    }
    if (kernel && ps->wait_ep >= 0 && ps->kfds[ps->nk - 1].revents)
        bell_after_wake(NULL, ps->wait_ep);
    for (nfds_t i = 0; i < ps->nuser; i++)
        ready += ps->user[i].revents != 0;
    return ready;
}

static int fast_ready(struct poll_set *ps)
{
    for (nfds_t i = 0; i < ps->nt; i++) {
        struct tracked *t = &ps->t[i];
        if (sock_kind(t->s) == LF_FAST &&
            conn_poll_state(t->s->conn, ps->user[t->user].fd, ps->user[t->user].events, 0))
            return 1;
    }
    return 0;
}

static int fast_news(void *ps)
{
    return fast_ready(ps);
}

/* A set of fast connections alone, each settled on its rings and plain
 * (conn_plain: nothing shut down, whose reset TCP would report), has its
 * answer in shared memory: the kernel is asked only for what TCP alone
 * can tell, a peer that died without a word, at most every POLL_LOOK_NS
 * per connection (MariaDB's threads poll one connection before each read:
 * a system call before each sleep and one after each wake, where the
 * kernel's poll is one).  A poll that would wait for such a death past the
 * look's due time looks first; one that waits sleeps on the futex, whose
 * phase ends in a sleep that watches TCP (wait.c). */
#define POLL_LOOK_NS 1000000ull

/* Is tracked entry t answered by its rings alone, the look aside? */
static int rings_answer(struct poll_set *ps, const struct tracked *t)
{
    struct lf_sock *s = t->s;
    return sock_kind(s) == LF_FAST && conn_plain(s->conn) &&
           !conn_wants_kernel(s->conn, ps->user[t->user].events);
}

static int memory_answers(struct poll_set *ps)
{
    if (ps->nt != ps->nuser)
        return 0;
    uint64_t now = coarse_ns();
    for (nfds_t i = 0; i < ps->nt; i++)
        if (!rings_answer(ps, &ps->t[i]) ||
            now >= __atomic_load_n(&ps->t[i].s->conn->next_poll_look, __ATOMIC_RELAXED))
            return 0;
    return 1;
}

static void kernel_looked(struct poll_set *ps)
{
    uint64_t next = coarse_ns() + POLL_LOOK_NS;
    for (nfds_t i = 0; i < ps->nt; i++)
        if (sock_kind(ps->t[i].s) == LF_FAST)
            __atomic_store_n(&ps->t[i].s->conn->next_poll_look, next, __ATOMIC_RELAXED);
}

static int kernel_poll(struct poll_set *ps, int timeout_ms, const sigset_t *mask)
{
    prepare_kernel(ps);
    return poll_fitting(ps->kfds, ps->nk, ps->from_select ? 0 : ps->nuser, timeout_ms, mask,
                        fast_news, ps);
}

/* kernel_poll as the sleep sl began; the sleep ended, also for a thread
 * cancelled in it (pthread_cancel). */
static int kernel_poll_sleep(struct poll_set *ps, int timeout_ms, struct lf_sleep *sl)
{
    int k;
    pthread_cleanup_push(sleep_cancelled, sl);
    k = kernel_poll(ps, timeout_ms, sl->mask);
    pthread_cleanup_pop(1);
    return k;
}

/* A sleep ended with news: the wait scored by its first fast connection
 * ready (wait.c). */
static void score_wait(struct poll_set *ps)
{
    for (nfds_t i = 0; i < ps->nt; i++)
        if (sock_kind(ps->t[i].s) == LF_FAST && ps->user[ps->t[i].user].revents) {
            spin_waited(ps->t[i].s->conn, 1);
            return;
        }
}

static int spin(struct poll_set *ps)
{
    uint64_t end = spin_deadline(NULL);
    if (!end)
        return 0;
    for (unsigned i = 1;; i++) {
        if (fast_ready(ps))
            return spin_found(), 1;
        if ((i & 63) == 0) {
            if (kernel_poll(ps, 0, NULL) > 0 && evaluate(ps, 1) > 0)
                return spin_found(), 1;
            if (spin_over(&end, monotonic_ns()))
                return 0;
        }
    }
}

static int remaining_ms(uint64_t deadline)
{
    if (deadline == UINT64_MAX)
        return -1;
    uint64_t now = monotonic_ns();
    return now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
}

/* A poll of one fast connection alone, in one direction (a non-blocking
 * socket's read or write waiting for it: MariaDB, libcurl): it sleeps on a
 * futex, then on its thread's wake socket, which its peer wakes alone
 * (wait.c).  > 0 ready, -1 an error, 0 nothing yet (the caller sleeps on, on
 * the doorbell). */
static int poll_alone(struct poll_set *ps, int timeout_ms, const sigset_t *mask,
                      struct lf_caught *call)
{
    if (mask || ps->nuser != 1 || ps->nt != 1 || sock_kind(ps->t[0].s) != LF_FAST)
        return 0;   /* ppoll's mask: only the kernel's call can apply it */
    short ev = ps->user[0].events, tev;
    int in = (ev & (POLLIN | POLLRDNORM | POLLRDHUP)) != 0, out = (ev & (POLLOUT | POLLWRNORM)) != 0;
    if (in == out)
        return 0;
    /* a look due (an unclear FIN, a peer that may die silently: conn.c) ends
     * the sleep: the loop below looks */
    struct lf_conn *c = ps->t[0].s->conn;
    int r = wait_alone(c, ps->user[0].fd, out, 1, timeout_min(timeout_ms, conn_recheck_ms(c)), call,
                       0, &tev);
    if (r == -EINTR) {
        errno = EINTR;
        return -1;
    }
    if (r < 0)
        return 0;
    /* woken by news on the rings: they answer (memory_answers) */
    if (!tev && rings_answer(ps, &ps->t[0]) && (r = evaluate(ps, 0)) > 0)
        return r;
    return kernel_poll(ps, 0, NULL) < 0 ? -1 : evaluate(ps, 1);
}

/* Pending clients whose answer is held ask again (pending.c): 1 when any
 * still waits for its server, so the sleep is cut short. */
static int ask_held(struct poll_set *ps)
{
    int waiting = 0;
    for (nfds_t i = 0; i < ps->nt; i++)
        waiting |= pending_ask_held(ps->t[i].s, ps->user[ps->t[i].user].fd);
    return waiting;
}

/* Before a sleep: pending sockets are counted as polled (sock_set_kind
 * then wakes us), after us as a sleeper; 1 when any was. */
static int kinds_begin(struct poll_set *ps)
{
    int any = 0;
    for (nfds_t i = 0; i < ps->nt; i++)
        any |= sock_kind(ps->t[i].s) == LF_PENDING;
    if (!any)
        return 0;
    ps->kind_ep = wait_hear_kinds(epoll_kind_sleep_begin());
    for (nfds_t i = 0; i < ps->nt; i++)
        __atomic_add_fetch(&ps->t[i].s->pollers, 1, __ATOMIC_SEQ_CST);
    return 1;
}

static void kinds_end(struct poll_set *ps)
{
    for (nfds_t i = 0; i < ps->nt; i++)
        __atomic_sub_fetch(&ps->t[i].s->pollers, 1, __ATOMIC_RELAXED);
    epoll_kind_sleep_end();
    ps->kind_ep = -1;
}

static int poll_tracked(struct poll_set *ps, int timeout_ms, const sigset_t *mask)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : monotonic_ns() + (uint64_t)timeout_ms * 1000000;
    struct lf_caught call;   /* a handler run from here on ends the call (signals.c) */
    caught_now(&call);
    int r;
    if (!memory_answers(ps) || ((r = evaluate(ps, 0)) == 0 && timeout_ms == 0)) {
        if ((r = kernel_poll(ps, 0, NULL)) < 0)
            return r;
        r = evaluate(ps, 1);
        kernel_looked(ps);
    }
    if (r || timeout_ms == 0 || spin(ps))
        return r ? r : (kernel_poll(ps, 0, NULL) < 0 ? -1 : evaluate(ps, 1));
    if ((r = poll_alone(ps, timeout_ms, mask, &call)) != 0)
        return r;
    for (;;) {
        /* first: a socket that turns fast from here on wakes us, one taken
         * now (or before) is armed below */
        int kinds = kinds_begin(ps);
        int held = ask_held(ps);
        int recheck = bell_wait_cap_ms();   /* doorbells read: see wait.c */
        int heavy = 0;      /* one barrier for all the rings armed (barrier.c) */
        for (nfds_t i = 0; i < ps->nt; i++)
            if (sock_kind(ps->t[i].s) == LF_FAST) {
                struct lf_conn *c = ps->t[i].s->conn;
                heavy |= conn_arm(c, ps->user[ps->t[i].user].events);
                recheck = timeout_min(recheck, conn_recheck_ms(c));
            }
        barrier_after_arm(heavy);
        int wait = fast_ready(ps) ? 0 : remaining_ms(deadline);
        wait = timeout_min(wait, recheck);
        if (held)
            wait = timeout_min(wait, 1);
        wait = trim_before_sleep(wait);
        struct lf_sleep sl;
        if ((r = sleep_begin(&sl, &call, 0, mask)) < 0) {
            if (kinds)
                kinds_end(ps);
            return errno = -r, -1;
        }
        int k = kernel_poll_sleep(ps, wait, &sl);
        if (kinds)
            kinds_end(ps);
        r = k < 0 ? -1 : evaluate(ps, 1);
        if (r > 0)
            score_wait(ps);
        if (k < 0 || r || remaining_ms(deadline) == 0)
            return r;
    }
}

/* A poll of nothing of ours: its sleep is still cut at the next trim
 * round, so that a process idle in it gives back the pages of the
 * connections it closed (trim.c, link.c's warm slots). */
static int poll_untracked(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *mask,
                          int from_select)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : monotonic_ns() + (uint64_t)timeout_ms * 1000000;
    for (;;) {
        int wait = trim_before_sleep(timeout_ms);
        int r = poll_fitting(fds, n, from_select ? 0 : n, wait, mask, NULL, NULL);
        if (r != 0 || wait == timeout_ms || (timeout_ms = remaining_ms(deadline)) == 0)
            return r;
    }
}

static int lf_poll(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *mask,
                   int from_select)
{
    struct poll_set ps;
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    lf_thread_waits++;
    if (timeout_ms != 0)
        reap_now();   /* about to wait: a good time (reap.c) */
    if (!build(&ps, fds, n)) {
        release(&ps);
        return poll_untracked(fds, n, timeout_ms, mask, from_select);
    }
    ps.from_select = from_select;
    int r, e, before = errno;   /* a wait's timed-out sleeps leave theirs */
    pthread_cleanup_push(release_cancelled, &ps);   /* a thread cancelled in its sleep */
    r = poll_tracked(&ps, timeout_ms, mask);
    e = r >= 0 ? before : errno;
    pthread_cleanup_pop(1);
    errno = e;
    return r;
}

LF_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    return lf_poll(fds, n, timeout_ms, NULL, 0);
}

LF_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
    if (fdslen / sizeof *fds < n)
        __builtin_trap();
    return poll(fds, n, timeout_ms);
}

static int timespec_ms(const struct timespec *ts)
{
    if (!ts)
        return -1;
    long long ms = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

static int timespec_valid(const struct timespec *ts)
{
    return !ts || (ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000);
}

/* A timeout under a millisecond (and not 0): our waits count whole
 * milliseconds, and a wait rounded up to one slept it on a futex, where
 * the kernel's sleeps microseconds.  wget selects for 1 us before each
 * request on a keep-alive connection (has the server closed it?): 1.1 ms a
 * request, 5x the kernel's time for small files. */
static int brief(const struct timespec *ts)
{
    return ts && ts->tv_sec == 0 && ts->tv_nsec > 0 && ts->tv_nsec < 1000000;
}

static int fd_waitable(int fd)
{
    struct lf_sock *s = fd >= 0 ? fdtable_acquire(fd) : NULL;
    int waitable = s && is_waitable(s);
    if (s)
        sock_put(s);
    return waitable;
}

static int any_waitable(const struct pollfd *fds, nfds_t n)
{
    for (nfds_t i = 0; i < n; i++)
        if (fd_waitable(fds[i].fd))
            return 1;
    return 0;
}

/* Such a wait: a look, the kernel's own call for that long on the caller's
 * set (our sockets stand there as their TCP sockets: a ring's news does not
 * end it, its time does), and a look again.  A handler run meanwhile ends
 * it with EINTR, as it would the kernel's. */
static int lf_poll_brief(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                         const sigset_t *mask, int from_select)
{
    int r = lf_poll(fds, n, 0, NULL, from_select), e = errno;
    if (r != 0)
        return r;
    if (libc.ppoll(fds, n, ts, mask) < 0 && errno == EINTR)
        return -1;
    errno = e;   /* (EINVAL: more entries than RLIMIT_NOFILE, for select: no sleep) */
    return lf_poll(fds, n, 0, NULL, from_select);
}

LF_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
    if (!timespec_valid(ts))
        return libc.ppoll(fds, n, ts, mask);   /* the kernel's EINVAL */
    if (brief(ts))
        return any_waitable(fds, n) ? lf_poll_brief(fds, n, ts, mask, 0)
                                    : libc.ppoll(fds, n, ts, mask);
    return lf_poll(fds, n, timespec_ms(ts), mask, 0);
}

LF_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                          const sigset_t *mask, size_t fdslen)
{
    if (fdslen / sizeof *fds < n)
        __builtin_trap();
    return ppoll(fds, n, ts, mask);
}

/* ---- select, as poll ---- */

static int any_tracked(int nfds, fd_set *r, fd_set *w, fd_set *x)
{
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
        if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))) &&
            fd_waitable(fd))
            return 1;
    }
    return 0;
}

static int select_as_poll(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts,
                          const sigset_t *mask)
{
    struct pollfd *p = calloc((size_t)nfds, sizeof *p);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (r && FD_ISSET(fd, r) ? POLLIN : 0) | (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
                   (x && FD_ISSET(fd, x) ? POLLPRI : 0);
        if (ev)
            p[n++] = (struct pollfd){ .fd = fd, .events = ev };
    }
    int rc = brief(ts) ? lf_poll_brief(p, n, ts, mask, 1) : lf_poll(p, n, timespec_ms(ts), mask, 1);
    if (rc >= 0) {
        rc = 0;
        if (r) FD_ZERO(r);
        if (w) FD_ZERO(w);
        if (x) FD_ZERO(x);
        for (nfds_t i = 0; i < n; i++) {
            short re = p[i].revents;
            if (re & POLLNVAL) {
                free(p);
                errno = EBADF;
                return -1;
            }
            if (r && (p[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR)))
                FD_SET(p[i].fd, r), rc++;
            if (w && (p[i].events & POLLOUT) && (re & (POLLOUT | POLLERR)))
                FD_SET(p[i].fd, w), rc++;
            if (x && (p[i].events & POLLPRI) && (re & POLLPRI))
                FD_SET(p[i].fd, x), rc++;
        }
    }
    free(p);
    return rc;
}

LF_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    if (!tv || tv->tv_sec || tv->tv_usec)
        reap_now();
    if (nfds <= 0 || nfds > FD_SETSIZE || !any_tracked(nfds, r, w, x) ||
        (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)))
        return libc.select(nfds, r, w, x, tv);   /* (the kernel's EINVAL, for a bad timeout) */
    struct timespec ts = { tv ? tv->tv_sec : 0, tv ? tv->tv_usec * 1000 : 0 };
    return select_as_poll(nfds, r, w, x, tv ? &ts : NULL, NULL);
}

LF_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts,
                      const sigset_t *mask)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    if (!ts || ts->tv_sec || ts->tv_nsec)
        reap_now();
    if (nfds <= 0 || nfds > FD_SETSIZE || !any_tracked(nfds, r, w, x) || !timespec_valid(ts))
        return libc.pselect(nfds, r, w, x, ts, mask);
    return select_as_poll(nfds, r, w, x, ts, mask);
}
