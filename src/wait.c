/*
 * wait.c - how a blocked call waits: spin on shared memory for
 * LOOPFAST_SPIN_US, then arm and sleep on the doorbell eventfd and the TCP
 * socket together (docs/design.md, 6).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "internal.h"

__thread unsigned lf_thread_waits LF_TLS_IE;

static uint32_t load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Is there something for a waiting reader (of at least rx_want bytes, its
 * SO_RCVLOWAT) or writer (for room under rx_want bytes in flight when more
 * than 1: conn.c's pace) to look at? */
static int has_news(struct lf_conn *c, int for_write, size_t rx_want)
{
    const struct lf_side *me = &c->sh->side[c->me], *peer = conn_peer(c);
    if (for_write ? load32(&me->shut_wr) != 0 || load32(&me->tx_state) != TX_RING
                  : conn_shut_rd(c) != 0)
        return 1;   /* our own shutdown or return to TCP, from another thread */
    /* A reader on TCP waits for TCP: the peer sets `closed` before its FIN. */
    if (!for_write && load32(&me->rx_state) != RX_RING)
        return conn_rx_settled(c);
    if (!for_write && load32(&peer->tx_state) == TX_BACK)
        return 1;   /* the peer went back to TCP: the reader looks where to wait */
    if (load32(&peer->closed) || (for_write && load32(&peer->rx_refused)))
        return 1;
    if (for_write)
        return ring_writable_upto(&c->tx, rx_want > 1 ? rx_want : 0) != 0;
    ssize_t n = ring_readable(&c->rx);   /* -1, corrupt: news for the reader to find */
    return n < 0 || (size_t)n >= rx_want || load32(&peer->shut_wr);
}

/* The peer closes with a reset its kernel sends (SO_LINGER 0, or our bytes
 * unread: conn_close), and rang as it did: only TCP tells when the reset
 * came, so a sleep must hear TCP, which the futex's does not (a server in
 * select() after openssl s_time's close slept FUTEX_MS on each connection). */
static int peer_resets(struct lf_conn *c)
{
    return load32(&conn_peer(c)->kernel_resets) != 0;
}

/* Spinning pays only while the peer has a core of its own.  With more
 * runnable tasks than cores (8 pgbench clients and their backends on 2
 * cores), a spinner holds the core its peer needs: then we do not spin.
 * The kernel's count of runnable tasks (/proc/loadavg) is read at most every
 * 10 ms per process, by whichever thread finds it due first (per thread,
 * MariaDB's 20 connection threads read it 3 000 times a second, three
 * system calls each); where it cannot be read, we spin as configured.  Two
 * readings in a row must say so: a kworker or a short job seen once cost
 * 10 ms without spinning, each wait in them a sleep and a wake-up
 * (redis-benchmark -c 1: the server slept 35-4376 times in 200 000
 * requests, 10-574 with two readings), while crowding that lasts is seen
 * 10 ms later. */
#define CROWD_CHECK_NS 10000000ull

/* ---- a CPU of one's own ----
 * /proc/loadavg counts the machine's runnable tasks, and a process may run
 * on fewer CPUs.  Counting only those, a process pinned to one CPU
 * (taskset) took its peer, spinning on another, for a crowd and slept at
 * every wait (a 64 B round trip, client and server pinned a CPU each: 2.8
 * us against 1.2 unpinned).  So a process confined to one CPU counts the
 * machine's.  What it must not do, spin while its peer waits for that same
 * CPU (a one-CPU container, both pinned to one: each spin ran out before
 * the peer could answer, 86 us a round trip against 12.5), it learns from
 * the peer: each side publishes its one CPU (`solo_cpu`) when the
 * connection is set up, and a wait on a connection whose peer shares it
 * does not spin; nor do the poll and epoll waits of a process that has such
 * a peer.  The affinity is looked at again with the crowd (every
 * CROWD_CHECK_NS) and at a set-up when the last look is older than that or
 * the program changed an affinity since (sched_setaffinity and
 * pthread_setaffinity_np are interposed: a forked worker that pins itself,
 * nginx's worker_cpu_affinity, is seen at its first connection).  A look
 * at every set-up was a system call per connection on each end; a change
 * made from outside (taskset -p) is seen within CROWD_CHECK_NS. */
static int solo_cpu1 = -1;    /* ours + 1, 0: more than one; -1: not looked at yet */
static int solo_shared;       /* some peer's process is confined to the same CPU */
static uint64_t affinity_looked;   /* coarse_ns of the last look; 0: look at the next set-up */

void affinity_changed(void)
{
    __atomic_store_n(&affinity_looked, 0, __ATOMIC_RELAXED);
}

/* The CPUs this thread may run on; sets solo_cpu1.  0: unknown. */
static int affinity_look(void)
{
    cpu_set_t set;
    __atomic_store_n(&affinity_looked, coarse_ns() | 1, __ATOMIC_RELAXED);
    if (lf_confined || sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;   /* confined: the call may be out of reach (sandbox.c) */
    int k = CPU_COUNT(&set), solo = 0;
    for (int i = 0; k == 1 && i < CPU_SETSIZE && !solo; i++)
        solo = CPU_ISSET(i, &set) ? i + 1 : 0;
    if (__atomic_exchange_n(&solo_cpu1, solo, __ATOMIC_RELAXED) != solo)
        __atomic_store_n(&solo_shared, 0, __ATOMIC_RELAXED);   /* moved: its peers tell again */
    return k;
}

/* CPUs whose runnable tasks may want ours. */
static int crowd_cpus(void)
{
    static int online;
    int k = affinity_look();
    if (k > 1)
        return k;
    if (!online) {
        int n = get_nprocs();
        __atomic_store_n(&online, n > 0 ? n : 1, __ATOMIC_RELAXED);
    }
    return k == 1 ? online : 1;
}

static int machine_crowded(uint64_t now)
{
    static uint64_t checked;
    static int crowded, over_before;   /* the verdict; what the last reading said */
    uint64_t seen = __atomic_load_n(&checked, __ATOMIC_RELAXED);
    /* confined: /proc is out of reach (sandbox.c) */
    if (lf_confined || (seen && (int64_t)(now - seen) < (int64_t)CROWD_CHECK_NS) ||
        !__atomic_compare_exchange_n(&checked, &seen, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return __atomic_load_n(&crowded, __ATOMIC_RELAXED);
    char buf[128];
    int running = 0;
    int over = read_small_file("/proc/loadavg", buf, sizeof buf) > 0 &&
               sscanf(buf, "%*s %*s %*s %d/", &running) == 1 && running > crowd_cpus();
    /* one thread at a time here (the exchange above): over_before is its */
    int verdict = over && __atomic_load_n(&over_before, __ATOMIC_RELAXED);
    __atomic_store_n(&over_before, over, __ATOMIC_RELAXED);
    __atomic_store_n(&crowded, verdict, __ATOMIC_RELAXED);
    return verdict;
}

static uint32_t cpu_solo(void)
{
    if (__atomic_load_n(&solo_cpu1, __ATOMIC_RELAXED) < 0)
        affinity_look();
    int k = __atomic_load_n(&solo_cpu1, __ATOMIC_RELAXED);
    return k > 0 ? (uint32_t)k : 0;
}

/* Ours published (when it changed); the peer's compared. */
static int cpu_compare(struct lf_conn *c)
{
    uint32_t mine = cpu_solo();
    uint32_t *ours = &c->sh->side[c->me].solo_cpu;
    if (__atomic_load_n(ours, __ATOMIC_RELAXED) != mine)
        __atomic_store_n(ours, mine, __ATOMIC_RELAXED);
    int shared = mine && __atomic_load_n(&conn_peer(c)->solo_cpu, __ATOMIC_RELAXED) == mine;
    if (shared)
        __atomic_store_n(&solo_shared, 1, __ATOMIC_RELAXED);
    return shared;
}

void conn_note_cpu(struct lf_conn *c, int look)
{
    uint64_t looked = __atomic_load_n(&affinity_looked, __ATOMIC_RELAXED);
    if (look && (!looked || coarse_ns() - looked >= CROWD_CHECK_NS))
        affinity_look();
    cpu_compare(c);
}

/* Would a spin hold the CPU its peer needs?  c: the connection waited on;
 * NULL: any of this process's. */
static int cpu_shared(struct lf_conn *c)
{
    if (!cpu_solo())
        return 0;
    return c ? cpu_compare(c) : __atomic_load_n(&solo_shared, __ATOMIC_RELAXED);
}

/* ---- whether spinning pays (docs/design.md, 6) ----
 *
 * A spin that runs out costs its whole budget of CPU and saves nothing: the
 * sleep and its wake-up follow anyway.  So each thread keeps a moving score
 * of its waits, 0 (none would have ended within a spin) to SPIN_SCORE_MAX
 * (all would), each new one weighing a quarter, and below a third it does
 * not spin.  A wait that found news while spinning scores 1.  One that went
 * past its spin (or skipped it) is scored when its news comes, by the peer's
 * think time: from when the peer got up (its last sleep that news of this
 * connection ended, if during our wait; else our wait's start) to when it
 * sent the news (when it last woke us, if during our wait; else now).  Not
 * by the wait's length: a peer asleep takes a wake-up to answer, on a VM
 * longer than a spin, and both ends of a busy connection would then stop
 * spinning for good, each waiting a wake-up for the other. */
#define SPIN_SCORE_MAX 1024
static __thread int spin_score LF_TLS_IE = SPIN_SCORE_MAX;
/* The current wait's start (0: not to be scored) and its connection (NULL:
 * a poll or epoll wait, any of its connections) */
static __thread uint64_t wait_began LF_TLS_IE;
static __thread const struct lf_conn *wait_conn LF_TLS_IE;

static void spin_score_add(int paid)
{
    spin_score += ((paid ? SPIN_SCORE_MAX : 0) - spin_score) / 4;
}

uint64_t spin_deadline(struct lf_conn *c)
{
    wait_began = 0;
    if (!lf_config.spin_us || machine_crowded(coarse_ns()) || cpu_shared(c))
        return 0;
    wait_conn = c;
    if (spin_score * 3 < SPIN_SCORE_MAX) {
        wait_began = monotonic_ns();   /* a sleep follows: the clock costs nothing */
        return 0;
    }
    wait_began = SPIN_OPEN;
    return SPIN_OPEN;
}

int spin_over(uint64_t *end, uint64_t now)
{
    if (*end != SPIN_OPEN)
        return now >= *end;
    *end = now + (uint64_t)lf_config.spin_us * 1000;
    if (wait_began == SPIN_OPEN)
        wait_began = now;
    return 0;
}

void spin_found(void)
{
    if (wait_began)
        spin_score_add(1);
    wait_began = 0;
}

void spin_waited(struct lf_conn *c, int slept)
{
    uint64_t began = wait_began, now = monotonic_ns();
    if (slept)
        __atomic_store_n(&my_stats(c)->got_up_ns, now, __ATOMIC_RELAXED);
    if (!began || began > now || (wait_conn && wait_conn != c))
        return;   /* (began > now: a spin's start never read, SPIN_OPEN) */
    wait_began = 0;
    const struct lf_stats *peer = &c->sh->stats[!c->me];   /* its clock readings: checked */
    uint64_t sent = __atomic_load_n(&peer->woke_peer_ns, __ATOMIC_RELAXED);
    uint64_t up = __atomic_load_n(&peer->got_up_ns, __ATOMIC_RELAXED);
    if (sent < began || sent > now)
        sent = now;
    if (up < began || up > sent)
        up = began;
    spin_score_add(sent - up <= (uint64_t)lf_config.spin_us * 1000);
}

/* A reader's spin asks has_news (six words on four lines) only at every
 * SPIN_FULL_LOOK-th turn (a shutdown, a close, a return to TCP: seen a few
 * hundred ns later), or when the peer's index moved past ours and the
 * reader wants more than any byte (SO_RCVLOWAT); one that wants any takes
 * the move for news without it, as has_news would.  Between, one index
 * against the other: the peer's bytes are seen sooner (64 B round trip
 * 1.29-1.40x the bare ring's -> 1.19-1.29x, both spinning, on vCPUs far
 * apart; without has_news after the move, 222 -> 207 ns on vCPUs close
 * by).  Our own index is loaded after the pause, as another thread of ours
 * may have read meanwhile. */
#define SPIN_FULL_LOOK 8

static int spin(struct lf_conn *c, int for_write, size_t rx_want)
{
    uint64_t end = spin_deadline(c);
    if (!end)
        return 0;
    const uint64_t *head = &c->rx.ctl->head, *tail = &c->rx.ctl->tail;
    uint64_t read_to = __atomic_load_n(tail, __ATOMIC_RELAXED);
    for (unsigned i = 0;; i++) {
        int moved = !for_write && __atomic_load_n(head, __ATOMIC_RELAXED) != read_to;
        if (moved && rx_want <= 1)   /* bytes for a reader that wants any: has_news would say so */
            return spin_found(), 1;
        if ((for_write || moved || i % SPIN_FULL_LOOK == SPIN_FULL_LOOK - 1) &&
            has_news(c, for_write, rx_want))
            return spin_found(), 1;
        cpu_relax();
        read_to = __atomic_load_n(tail, __ATOMIC_RELAXED);
        if ((i & 15) == 15 && spin_over(&end, monotonic_ns()))
            return 0;
    }
}

/* ---- sleeping on a doorbell without taking its tokens ----
 *
 * A doorbell is an eventfd that nobody reads: each ring is one edge for
 * every epoll instance that holds it edge-triggered, whichever thread or
 * process it belongs to.  So waiters never take a wake-up from one another
 * (threads, forked holders, epoll sets all hear every ring), and the count
 * only grows (2^64 rings: never reached).  A thread that sleeps on a
 * doorbell sleeps on its own *wait epoll* holding the doorbells it waited
 * on, edge-triggered, beside the TCP socket in poll(); it empties the wait
 * epoll when it wakes.  Each doorbell is added once per thread (a key per
 * doorbell, the last WAIT_KEYS remembered; adding it again gives EEXIST,
 * which is as good).  Registrations go with the doorbell's file.
 *
 * Where no wait epoll can be had (a seccomp sandbox that allows poll but not
 * epoll, no descriptor left) the thread polls the doorbell itself and must
 * read it, or poll() would never sleep again: that takes the edge from
 * epoll instances that had not yet looked (an idle epoll record of this
 * process is told: epoll_poke), so from then on this process's waits on a
 * doorbell look again every SHARED_WAIT_MS. */
#define WAIT_KEYS 16

struct wait_ep {
    int fd;                       /* the wait epoll; -1 until needed */
    int wake_fd;                  /* the wake socket (wait_named); -1 until needed */
    uint64_t wake_id;             /* its name's number */
    pid_t pid;                    /* the process that made them: a forked child makes its own */
    uint64_t keys[WAIT_KEYS];     /* doorbells it holds, as far as remembered */
    int kinds;                    /* epoll.c's eventfd it holds (wait_hear_kinds), or -1 */
    unsigned next;
};
static pthread_key_t wait_ep_key;
static pthread_once_t wait_ep_once = PTHREAD_ONCE_INIT;
static __thread struct wait_ep *my_wait_ep;
static int bell_readers;          /* a wait read a doorbell: see above */
static uint64_t bell_keys;        /* the last key given to a doorbell */

static void wait_ep_free(void *p)
{
    struct wait_ep *w = p;
    ownfd_close(&w->fd);
    ownfd_close(&w->wake_fd);
    free(w);
}

static void wait_ep_key_make(void)
{
    (void)pthread_key_create(&wait_ep_key, wait_ep_free);
}

/* This thread's record of its sleeping descriptors, made on first need;
 * NULL when none can be. */
static struct wait_ep *thread_waits(void)
{
    if (lf_confined)
        return NULL;   /* epoll_wait may be outside its allow-list (sandbox.c) */
    struct wait_ep *w = my_wait_ep;
    if (!w) {
        pthread_once(&wait_ep_once, wait_ep_key_make);
        if (!(w = calloc(1, sizeof *w)))
            return NULL;
        w->fd = w->wake_fd = w->kinds = -1;
        w->pid = lf_pid;
        my_wait_ep = w;
        (void)pthread_setspecific(wait_ep_key, w);
    }
    if (w->pid != lf_pid) {   /* the parent's, inherited by fork: one kernel object */
        ownfd_close(&w->fd);
        ownfd_close(&w->wake_fd);
        memset(w->keys, 0, sizeof w->keys);
        w->kinds = -1;
        w->pid = lf_pid;
    }
    return w;
}

/* This thread's wait epoll, made on first need; NULL when none can be. */
static struct wait_ep *thread_wait_ep(void)
{
    struct wait_ep *w = thread_waits();
    if (w && w->fd < 0)
        ownfd_new(&w->fd, epoll_make_own());   /* not the program's: no reserve made for it */
    return w && w->fd >= 0 ? w : NULL;
}

/* The doorbell's key: given on first need, never reused in this process. */
static uint64_t bell_key(struct lf_link *l)
{
    uint64_t k = __atomic_load_n(&l->bell_key, __ATOMIC_ACQUIRE);
    if (k)
        return k;
    uint64_t mine = __atomic_add_fetch(&bell_keys, 1, __ATOMIC_RELAXED);
    return __atomic_compare_exchange_n(&l->bell_key, &k, mine, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE) ? mine : k;
}

int bell_wait_fd(struct lf_conn *c)
{
    struct wait_ep *w = thread_wait_ep();
    if (!w) {
        __atomic_store_n(&bell_readers, 1, __ATOMIC_RELAXED);
        return conn_bell_mine(c);
    }
    uint64_t key = bell_key(c->link);
    for (unsigned i = 0; i < WAIT_KEYS; i++)
        if (w->keys[i] == key)
            return w->fd;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = key };
    if (libc.epoll_ctl(w->fd, EPOLL_CTL_ADD, conn_bell_mine(c), &ev) < 0 && errno != EEXIST) {
        __atomic_store_n(&bell_readers, 1, __ATOMIC_RELAXED);
        return conn_bell_mine(c);
    }
    w->keys[w->next++ % WAIT_KEYS] = key;
    return w->fd;
}

int wait_hear_kinds(int wake)
{
    struct wait_ep *w = wake >= 0 ? thread_wait_ep() : NULL;
    if (!w)
        return -1;
    if (w->kinds != wake) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 0 };
        if (libc.epoll_ctl(w->fd, EPOLL_CTL_ADD, wake, &ev) < 0 && errno != EEXIST)
            return -1;
        w->kinds = wake;
    }
    return w->fd;
}

int bell_wait_cap_ms(void)
{
    return __atomic_load_n(&bell_readers, __ATOMIC_RELAXED) ? SHARED_WAIT_MS : -1;
}

void bell_after_wake(struct lf_conn *c, int wfd)
{
    if (c && wfd == conn_bell_mine(c)) {
        bell_drain(c);
        return;
    }
    struct epoll_event ev[16];
    while (libc.epoll_wait(wfd, ev, 16, 0) == 16)
        ;
}

/* Only where bell_wait_fd gave the doorbell itself: its count, read. */
void bell_drain(struct lf_conn *c)
{
    uint64_t token = 0;
    (void)!libc.read(conn_bell_mine(c), &token, sizeof token);
    /* An idle epoll record of this connection waits for this doorbell; the
     * peer rang it once and disarmed: that record must look again. */
    if (__atomic_load_n(&c->ep_idle, __ATOMIC_SEQ_CST))
        epoll_poke();
}

int wait_spin(struct lf_conn *c, int for_write, size_t rx_want)
{
    int on_ring = for_write || load32(&c->sh->side[c->me].rx_state) == RX_RING;
    if (!on_ring) {
        wait_began = 0;   /* a wait for TCP: not scored */
        return 0;
    }
    if (!spin(c, for_write, rx_want))
        return 0;
    stat_bump(&my_stats(c)->spin_hits);
    return 1;
}

/* ---- waiting on more descriptors than RLIMIT_NOFILE allows ----
 *
 * The kernel refuses a poll() of more entries than RLIMIT_NOFILE (EINVAL).
 * loopfast adds doorbells to the program's entries, and a program that lowers
 * the limit to what it polls itself (OpenSSH's sandboxed child: a limit of 1,
 * one socket) must not see that.  So when the whole set is refused, it is
 * asked in groups that fit: every group but the last without waiting, the
 * last (where callers put the doorbells) for a short slice, growing while
 * nothing happens.  The cost is latency for what is not in the last group,
 * never a failure.  The limit cannot be asked: getrlimit() is outside such
 * sandboxes' allow-lists, so the group size is found by halving. */
#define SLICE_MAX_MS 32

static __thread nfds_t fit_hint;   /* a group size that worked last time */

static int poll_raw(struct pollfd *p, nfds_t n, int timeout_ms, const sigset_t *mask)
{
    if (!mask)
        return libc.poll(p, n, timeout_ms);
    struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };
    return libc.ppoll(p, n, timeout_ms < 0 ? NULL : &ts, mask);
}

/* One entry by select(), for a caller of select() when not even one entry
 * fits under the limit (select() knows no such limit).  Only loopfast's own
 * descriptors can be >= FD_SETSIZE: they are never put in a set, the call
 * only sleeps (its caller looks at the rings after). */
static int select_one(struct pollfd *p, int timeout_ms, const sigset_t *mask)
{
    struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };
    p->revents = 0;
    if (p->fd < 0 || p->fd >= FD_SETSIZE)
        return timeout_ms ? libc.pselect(0, NULL, NULL, NULL, timeout_ms < 0 ? NULL : &ts, mask) : 0;
    fd_set r, w, x;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_ZERO(&x);
    if (p->events & (POLLIN | POLLRDHUP))
        FD_SET(p->fd, &r);
    if (p->events & POLLOUT)
        FD_SET(p->fd, &w);
    FD_SET(p->fd, &x);
    int k = libc.pselect(p->fd + 1, &r, &w, &x, timeout_ms < 0 ? NULL : &ts, mask);
    if (k <= 0)
        return k;
    p->revents = (short)((FD_ISSET(p->fd, &r) ? POLLIN : 0) | (FD_ISSET(p->fd, &w) ? POLLOUT : 0) |
                         (FD_ISSET(p->fd, &x) ? POLLPRI : 0));
    p->revents &= (short)(p->events | POLLPRI);
    return p->revents != 0;
}

/* One group; entries that are all negative cost no system call when it
 * need not wait. */
static int poll_group(struct pollfd *p, nfds_t n, int timeout_ms, const sigset_t *mask, int by_select)
{
    nfds_t live = 0;
    for (nfds_t i = 0; i < n; i++) {
        p[i].revents = 0;
        live += p[i].fd >= 0;
    }
    if (!live && timeout_ms == 0)
        return 0;
    return by_select ? select_one(p, timeout_ms, mask) : poll_raw(p, n, timeout_ms, mask);
}

static int poll_in_groups(struct pollfd *p, nfds_t n, int timeout_ms, const sigset_t *mask,
                          int may_select, int (*news)(void *), void *arg)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : monotonic_ns() + (uint64_t)timeout_ms * 1000000;
    nfds_t fit = fit_hint && fit_hint < n ? fit_hint : n > 1 ? n - 1 : 1;
    int by_select = n == 1, slice = 1;
    for (;;) {
        int ready = 0, r = 0;
        nfds_t tail = n - fit, i;
        for (i = 0; i < tail && r >= 0; i += fit) {
            r = poll_group(p + i, tail - i < fit ? tail - i : fit, 0, NULL, by_select);
            ready += r > 0 ? r : 0;
        }
        if (r >= 0) {
            uint64_t now = ready ? 0 : monotonic_ns();
            int left = deadline == UINT64_MAX ? slice : now >= deadline ? 0 :
                       (int)((deadline - now + 999999) / 1000000);
            r = poll_group(p + tail, fit, ready || left == 0 ? 0 : left < slice ? left : slice,
                           mask, by_select);
            ready += r > 0 ? r : 0;
        }
        if (r < 0 && errno == EINVAL && !by_select) {
            if (fit > 1)
                fit /= 2;
            else if (may_select)
                by_select = 1;
            else
                return -1;
            continue;
        }
        if (r < 0)
            return -1;
        fit_hint = fit;
        if (ready || (deadline != UINT64_MAX && monotonic_ns() >= deadline) || (news && news(arg)))
            return ready;
        slice = slice * 2 > SLICE_MAX_MS ? SLICE_MAX_MS : slice * 2;
    }
}

/* The sleep sl began, in poll_raw, or poll_fitting when news is given; the
 * sleep ended, also for a thread cancelled in it (pthread_cancel: the poll
 * is a cancellation point, as the program's read would be). */
static int poll_in_sleep(struct pollfd *p, nfds_t n, int timeout_ms, struct lf_sleep *sl,
                         int (*news)(void *), void *arg)
{
    int r;
    pthread_cleanup_push(sleep_cancelled, sl);
    r = news ? poll_fitting(p, n, 0, timeout_ms, sl->mask, news, arg)
             : poll_raw(p, n, timeout_ms, sl->mask);
    pthread_cleanup_pop(1);
    return r;
}

/* One sleep of a blocking call that loops on news itself; a handler with
 * SA_RESTART restarts it when `restartable`, as the kernel restarts a read. */
int poll_for_call(struct pollfd *p, nfds_t n, int timeout_ms, int restartable)
{
    struct lf_caught call;
    caught_now(&call);
    int r;
    do {
        struct lf_sleep sl;
        if ((r = sleep_begin(&sl, &call, restartable, NULL)) < 0)
            return errno = -r, -1;
        r = poll_in_sleep(p, n, timeout_ms, &sl, NULL, NULL);
    } while (r < 0 && errno == EINTR && !call_interrupted(&call, restartable));
    return r;
}

int poll_fitting(struct pollfd *p, nfds_t n, nfds_t must_fit, int timeout_ms, const sigset_t *mask,
                 int (*news)(void *), void *arg)
{
    int r = poll_raw(p, n, timeout_ms, mask);
    if (r >= 0 || errno != EINVAL)
        return r;
    /* The program's own poll() of must_fit entries: the kernel's answer. */
    if (must_fit && (must_fit >= n || poll_raw(p, must_fit, 0, NULL) < 0))
        return -1;
    return poll_in_groups(p, n, timeout_ms, mask, !must_fit, news, arg);
}

struct wait_news { struct lf_conn *c; int for_write; size_t rx_want; };

static int wait_news(void *arg)
{
    struct wait_news *w = arg;
    return has_news(w->c, w->for_write, w->rx_want);
}

/* ---- a blocked call's first sleep: on a futex ----
 *
 * A doorbell serves every connection of a region, and every thread asleep
 * on it wakes at each ring: 20 threads each blocked on its own connection
 * of one region (mysqlslap, a thread-per-connection server) woke each other
 * at every message and, on 2 cores, ran at half the kernel's rate.  So a
 * call blocked on one connection first arms its flag RING_ARM_FUTEX and
 * sleeps on the direction's wake word, which the peer bumps and wakes for
 * that flag alone (ring.h).
 * After FUTEX_MS it sleeps on as before, on the doorbell and the TCP socket,
 * which also hears a peer that died without a word (its FIN).  The futex
 * cannot hear it, so the futex sleep is cut in slices of FUTEX_LOOK_MS,
 * after each of which TCP is asked: such a death is seen within that (it
 * was within FUTEX_MS, 200 ms against the kernel's under 1: a killed
 * server's client blocked in read()), for ten looks in a long sleep.  A
 * direction whose last wait outlasted FUTEX_MS
 * skips the futex (wait_alone), so that an idle connection's thread does
 * not wake at the futex's end first.  FUTEX_MS is long enough for a
 * connection used more than five times a second to stay on the futex, short
 * against the seconds within which programs look for a dead peer.  A futex sleep cannot take a
 * signal mask as ppoll does: a handler that runs between the last look and
 * the sleep ends the call when the sleep ends, within FUTEX_MS.  Not in a
 * sandbox, whose filter may not allow futexes on shared memory. */
#define FUTEX_MS 200
#define FUTEX_LOOK_MS 20

static uint32_t *wait_flag(struct lf_conn *c, int for_write)
{
    return for_write ? &c->tx.ctl->writer_armed : &c->rx.ctl->reader_armed;
}

static uint32_t *wake_word(struct lf_conn *c, int for_write)
{
    return for_write ? &c->tx.ctl->writer_wake : &c->rx.ctl->reader_wake;
}

/* FUTEX_WAIT, a cancellation point as the program's read would be: a
 * futex call is none of libc's, and pthread_cancel signals only a thread
 * that takes cancellation at once, so the sleep takes it so while it lasts
 * (only the system call runs then; the flag armed is all it leaves). */
static int futex_sleep(uint32_t *word, uint32_t seen, const struct timespec *ts)
{
    int type, r, e;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &type);
    r = (int)syscall(SYS_futex, word, FUTEX_WAIT, seen, ts, NULL, 0);
    e = errno;
    pthread_setcanceltype(type, NULL);
    errno = e;
    return r;
}

/* After a slice of the futex sleep: has TCP told of the peer's end?  (Not
 * while a FIN is unclear: it would tell at every slice; its own recheck
 * looks into it.) */
static int futex_slice_heard_tcp(struct lf_conn *c, int fd)
{
    return !__atomic_load_n(&c->fin_unclear, __ATOMIC_RELAXED) &&
           (poll_now(fd, POLLRDHUP) & (POLLRDHUP | POLLHUP | POLLERR));
}

/* 0: news; -EINTR: a handler ran that ends the call; -EAGAIN: none within
 * `ms`, TCP told of the peer's end (the sleep that hears TCP takes it), or
 * futexes refused.  *slept: a futex sleep ended by a wake. */
static int wait_on_futex(struct lf_conn *c, int fd, int for_write, size_t rx_want, int ms,
                         struct lf_caught *call, int restartable, int *slept)
{
    uint32_t *flag = wait_flag(c, for_write), *word = wake_word(c, for_write);
    uint64_t end = monotonic_ns() + (uint64_t)ms * 1000000;
    for (;;) {
        if (!(__atomic_load_n(flag, __ATOMIC_ACQUIRE) & RING_ARM_FUTEX))
            barrier_after_arm(conn_arm_flag(c, flag, RING_ARM_FUTEX));
        uint32_t seen = __atomic_load_n(word, __ATOMIC_SEQ_CST);
        if (has_news(c, for_write, rx_want))
            return 0;
        if (peer_resets(c))
            return -EAGAIN;   /* on to the sleep that hears TCP */
        if (call_handler_ran(call, restartable))
            return -EINTR;
        uint64_t now = monotonic_ns(), slice = end - now;
        if (now >= end)
            return -EAGAIN;
        if (slice > (uint64_t)FUTEX_LOOK_MS * 1000000)
            slice = (uint64_t)FUTEX_LOOK_MS * 1000000;
        struct timespec ts = { 0, (long)slice };
        if (futex_sleep(word, seen, &ts) == 0) {
            *slept = 1;
            continue;
        }
        if (errno == ETIMEDOUT && futex_slice_heard_tcp(c, fd))
            return -EAGAIN;
        if (errno == EAGAIN || errno == ETIMEDOUT)
            continue;
        if (errno != EINTR)
            return -EAGAIN;
        if (call_interrupted(call, restartable))
            return -EINTR;
    }
}

/* The futex part alone: 0 news, -EINTR, -EAGAIN none (or not for this call:
 * a reader still on TCP, a sandbox, no time to wait). */
static int wait_futex_first(struct lf_conn *c, int fd, int for_write, size_t rx_want,
                            int timeout_ms, struct lf_caught *call, int restartable)
{
    if (timeout_ms == 0 || lf_confined ||
        !(for_write || load32(&c->sh->side[c->me].rx_state) == RX_RING))
        return -EAGAIN;   /* a reader still on TCP waits for TCP */
    int slept = 0;
    int r = wait_on_futex(c, fd, for_write, rx_want,
                          timeout_ms < 0 || timeout_ms > FUTEX_MS ? FUTEX_MS : timeout_ms, call,
                          restartable, &slept);
    if (r == 0 && slept)
        stat_bump(&my_stats(c)->wakeups);
    if (r == 0)
        spin_waited(c, slept);
    return r;
}

/* ---- a blocked call's long sleep: on its thread's wake socket ----
 *
 * Past FUTEX_MS, a call blocked on one connection sleeps in poll() on the
 * TCP socket (a peer that dies without a word) and on its thread's wait
 * epoll, which holds the connection's doorbell and the thread's wake socket:
 * an abstract unix datagram socket, bound to WAKE_PREFIX and 64 random bits,
 * whose number the sleeper writes in the direction's name word before it
 * arms RING_ARM_NAMED instead of RING_ARM_BELL.  The publisher that takes
 * that bit sends the socket a byte (wake_named) and rings no doorbell, so a
 * message to one idle connection no longer wakes every idle thread of the
 * process (docs/design.md, 6).  A publisher that cannot send (a seccomp
 * sandbox's filter may forbid it) rings the doorbell, which the sleeper
 * hears too.  A byte from anyone else is a spurious wake-up: the caller
 * looks and sleeps again. */
#define WAKE_PREFIX "loopfast-wake-"

static socklen_t wake_addr(uint64_t id, struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;   /* sun_path[0] = 0: the abstract namespace */
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, WAKE_PREFIX "%016llx",
                     (unsigned long long)id);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* This thread's wait epoll with its wake socket in it, made and bound on
 * first need; NULL when none can be. */
static struct wait_ep *thread_wake_sock(void)
{
    struct wait_ep *w = thread_wait_ep();
    if (!w || w->wake_fd >= 0)
        return w;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    for (int tries = 0; fd >= 0 && tries < 4; tries++) {
        struct sockaddr_un a;
        uint64_t id = 0;
        if (getrandom(&id, sizeof id, GRND_NONBLOCK) != sizeof id || !id)
            break;
        if (bind(fd, (struct sockaddr *)&a, wake_addr(id, &a)) == 0) {
            struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 0 };
            if (libc.epoll_ctl(w->fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                break;   /* doorbell keys start at 1: 0 is this socket */
            w->wake_id = id;
            ownfd_new(&w->wake_fd, fd);
            return w->wake_fd >= 0 ? w : NULL;
        }
        if (errno != EADDRINUSE)
            break;
    }
    if (fd >= 0)
        libc.close_own(fd);
    return NULL;
}

/* Up to WAKE_BATCH bytes in one call: fewer than that, and the socket was
 * empty (a recv() loop took two calls for the one byte of each wake).
 * Confined, recvmmsg may be out of reach (sandbox.c): one by one. */
#define WAKE_BATCH 8
static void wake_sock_drain(int fd)
{
    char b[WAKE_BATCH];
    struct iovec v[WAKE_BATCH];
    struct mmsghdr m[WAKE_BATCH];
    memset(m, 0, sizeof m);
    for (int i = 0; i < WAKE_BATCH; i++) {
        v[i] = (struct iovec){ &b[i], 1 };
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    if (!lf_confined) {
        long n;
        while ((n = syscall(SYS_recvmmsg, fd, m, WAKE_BATCH, MSG_DONTWAIT, NULL)) == WAKE_BATCH)
            ;
        if (n >= 0 || errno != ENOSYS)
            return;
    }
    while (libc.recv(fd, b, sizeof b, MSG_DONTWAIT) > 0)
        ;
}

/* This process's socket for every publisher's wake_named, made with its
 * first region (link.c), so that a process that can take a RING_ARM_NAMED
 * bit can always send its byte; a forked child shares its parent's. */
static int wake_sender = -1;
static pthread_mutex_t wake_sender_lock = PTHREAD_MUTEX_INITIALIZER;

int wake_sender_ready(void)
{
    if (lf_confined || __atomic_load_n(&wake_sender, __ATOMIC_ACQUIRE) >= 0)
        return 0;   /* confined: it sends nothing (wake_named) */
    lf_lock(&wake_sender_lock);
    if (wake_sender < 0) {
        int made = -1;
        if (ownfd_new(&made, socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) >= 0) {
            __atomic_store_n(&wake_sender, made, __ATOMIC_RELEASE);
            ownfd_moved(made, &wake_sender);
        }
    }
    int ok = wake_sender >= 0 ? 0 : -1;
    lf_unlock(&wake_sender_lock);
    return ok;
}

/* A name no socket holds any more (its thread was cancelled in its sleep,
 * or its process died holding an end it shares) is taken out of the word,
 * so that the direction's next long sleeper can write its own. */
int wake_named(uint64_t *name)
{
    int fd = __atomic_load_n(&wake_sender, __ATOMIC_ACQUIRE);
    uint64_t id = __atomic_load_n(name, __ATOMIC_ACQUIRE);
    if (!id)
        return 1;   /* the sleeper has gone */
    if (fd < 0 || __atomic_load_n(&lf_confined, __ATOMIC_ACQUIRE))
        return 0;   /* a sandbox's filter may kill us for the send */
    struct sockaddr_un a;
    int old = nocancel_begin(), sent;   /* the writer's locks are held here */
    sent = libc.sendto(fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a,
                       wake_addr(id, &a)) == 1 || errno == EAGAIN;   /* EAGAIN: bytes wait */
    if (!sent && errno == ECONNREFUSED)
        __atomic_compare_exchange_n(name, &id, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    nocancel_end(old);
    return sent;
}

/* Sleeps in poll() on the TCP socket and `wakefd` (a doorbell, its thread's
 * wait epoll or a wake socket) until either is ready, the timeout passes or
 * a handler ends the call: 0 after news, -EAGAIN, or -errno; *woke: wakefd
 * was ready. */
static int sleep_on(struct lf_conn *c, int fd, int wakefd, int for_write, size_t rx_want,
                    int timeout_ms, struct lf_caught *call, int restartable, short *tcp_events,
                    int *woke)
{
    struct wait_news news = { c, for_write, rx_want };
    /* A writer must not wake on unread TCP data from before the switch. */
    struct pollfd p[2] = {   /* wakefd last: poll_fitting sleeps on the tail */
        { .fd = fd, .events = for_write ? (c->fin_unclear ? 0 : POLLRDHUP) : (POLLIN | POLLRDHUP) },
        { .fd = wakefd, .events = POLLIN },
    };
    int r, t, left = timeout_ms;
    uint64_t end = timeout_ms > 0 ? monotonic_ns() + (uint64_t)timeout_ms * 1000000 : 0;
    reap_now();
    for (;;) {   /* a sleep cut short to trim idle rings (trim.c) is no timeout */
        struct lf_sleep sl;
        t = trim_before_sleep(left);
        if ((r = sleep_begin(&sl, call, restartable, NULL)) < 0)
            return r;
        r = poll_in_sleep(p, 2, t, &sl, wait_news, &news);
        if (!(r < 0 && errno == EINTR && !call_interrupted(call, restartable)) &&
            !(r == 0 && t != left))
            break;
        uint64_t now = end ? monotonic_ns() : 0;
        left = !end ? left : now >= end ? 0 : (int)((end - now + 999999) / 1000000);
    }
    *woke = r > 0 && p[1].revents;
    if (r < 0)
        return -errno;
    if (r == 0)
        return has_news(c, for_write, rx_want) ? 0 : -EAGAIN;   /* a slice ended on news */
    stat_bump(&my_stats(c)->wakeups);
    spin_waited(c, 1);
    *tcp_events = p[0].revents;
    return 0;
}

/* As sleep_on, on this thread's wait epoll holding its wake socket, named in
 * the direction's name word, and the doorbell; -ENOSYS when there is none,
 * or another thread's name is there. */
static int wait_named(struct lf_conn *c, int fd, int for_write, size_t rx_want, int timeout_ms,
                      struct lf_caught *call, int restartable, short *tcp_events)
{
    struct wait_ep *w = thread_wake_sock();
    if (!w || bell_wait_fd(c) != w->fd)
        return -ENOSYS;   /* the doorbell alone, read: bell_wait_fd */
    uint64_t *name = for_write ? &c->tx.ctl->writer_name : &c->rx.ctl->reader_name;
    uint64_t was = 0;
    if (!__atomic_compare_exchange_n(name, &was, w->wake_id, 0, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST) && was != w->wake_id)
        return -ENOSYS;
    barrier_after_arm(conn_arm_flag(c, wait_flag(c, for_write), RING_ARM_NAMED));
    int r, woke = 0;
    if (has_news(c, for_write, rx_want)) {
        spin_waited(c, 0);
        r = 0;
    } else {
        /* a confined publisher's ring, which a doorbell reader may take */
        int t = timeout_min(timeout_ms, bell_wait_cap_ms());
        r = sleep_on(c, fd, w->fd, for_write, rx_want, t, call, restartable, tcp_events, &woke);
    }
    if (woke) {
        wake_sock_drain(w->wake_fd);
        bell_after_wake(c, w->fd);
    }
    was = w->wake_id;
    __atomic_compare_exchange_n(name, &was, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return r;
}

/* The futex phase, then the wake socket; the futex is skipped when this
 * direction's last such wait outlasted it.  A connection used less often
 * than every FUTEX_MS (a pool's) then wakes once a message, as over TCP,
 * not twice (the futex's end, then the message); a wrong guess costs one
 * datagram where a futex wake would have done. */
int wait_alone(struct lf_conn *c, int fd, int for_write, size_t rx_want, int timeout_ms,
               struct lf_caught *call, int restartable, short *tcp_events)
{
    *tcp_events = 0;
    unsigned char *waits_long = &c->waits_long[for_write != 0];
    uint64_t start = monotonic_ns();
    int r = -EAGAIN;
    if (!__atomic_load_n(waits_long, __ATOMIC_RELAXED) && !peer_resets(c))
        r = wait_futex_first(c, fd, for_write, rx_want, timeout_ms, call, restartable);
    if (r != -EAGAIN)
        return r;
    if ((timeout_ms = ms_left(timeout_ms, start)) == 0)
        return has_news(c, for_write, rx_want) ? 0 : -EAGAIN;
    r = wait_named(c, fd, for_write, rx_want, timeout_ms, call, restartable, tcp_events);
    if (r == 0 || r == -EAGAIN || r == -ENOSYS)   /* -ENOSYS: back to the futex first */
        __atomic_store_n(waits_long, r != -ENOSYS &&
                         monotonic_ns() - start >= (uint64_t)FUTEX_MS * 1000000, __ATOMIC_RELAXED);
    return r;
}

/* Sleeps on a futex, then on the wake socket (or the doorbell) and the TCP
 * socket; 0 after any news. */
int wait_for(struct lf_conn *c, int fd, int for_write, size_t rx_want, int timeout_ms,
             struct lf_caught *call, int restartable, short *tcp_events)
{
    uint64_t start = timeout_ms > 0 ? monotonic_ns() : 0;
    int r = wait_alone(c, fd, for_write, rx_want, timeout_ms, call, restartable, tcp_events);
    if (r != -ENOSYS)
        return r;
    if (start && (timeout_ms = ms_left(timeout_ms, start)) == 0)
        return has_news(c, for_write, rx_want) ? 0 : -EAGAIN;
    barrier_after_arm(conn_arm_flag(c, wait_flag(c, for_write), RING_ARM_BELL));
    if (has_news(c, for_write, rx_want))
        return spin_waited(c, 0), 0;
    int wfd = bell_wait_fd(c), woke = 0;
    r = sleep_on(c, fd, wfd, for_write, rx_want, timeout_min(timeout_ms, bell_wait_cap_ms()), call,
                 restartable, tcp_events, &woke);
    if (woke)
        bell_after_wake(c, wfd);
    return r;
}

int fd_nonblocking(int fd)
{
    if (lf_confined)
        return sandbox_nonblocking(fd);
    int fl = libc.fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

/* ---- O_NONBLOCK, timeouts and SO_LINGER of a socket no other process holds ----
 * Every wait asked the kernel both (two system calls before each sleep, one
 * before each EAGAIN).  A file this image made (socket(), accept()) and has
 * not shared since (no fork, spawn, system/popen or vfork'ed exec since it
 * was made: lf_shares; not sent with SCM_RIGHTS: pending.c) changes its
 * flags and options only through our own fcntl, ioctl and setsockopt, which
 * note them.  A socket() has none set; an accepted one has its listener's,
 * known when the listener is alone too (asked of it once, not of each
 * connection: two system calls fewer per short connection).  Not seen:
 * another process taking it with pidfd_getfd(), raw system calls
 * (docs/design.md, 6). */
void sock_born_here(struct lf_sock *s, int nonblock, struct sock_options o)
{
    __atomic_store_n(&s->nonblock_seen, nonblock, __ATOMIC_RELAXED);
    s->timeo_seen[0] = o.timeo[0];
    s->timeo_seen[1] = o.timeo[1];
    s->linger_seen = o.linger;
    s->born_shares = __atomic_load_n(&lf_shares, __ATOMIC_RELAXED);
    __atomic_store_n(&s->desc_own, 1, __ATOMIC_RELEASE);
}

static int sock_alone(struct lf_sock *s)
{
    return __atomic_load_n(&s->desc_own, __ATOMIC_ACQUIRE) && !lf_confined &&
           s->born_shares == __atomic_load_n(&lf_shares, __ATOMIC_RELAXED);
}

int sock_nonblocking(struct lf_sock *s, int fd)
{
    int seen = __atomic_load_n(&s->nonblock_seen, __ATOMIC_RELAXED);
    if (seen >= 0 && sock_alone(s))
        return seen;
    int nonblock = fd_nonblocking(fd);
    __atomic_store_n(&s->nonblock_seen, nonblock, __ATOMIC_RELAXED);
    return nonblock;
}

int sock_timeout(struct lf_sock *s, int fd, int optname)
{
    int *seen = &s->timeo_seen[optname == SO_SNDTIMEO];
    int ms = __atomic_load_n(seen, __ATOMIC_RELAXED);
    if (ms >= -1 && sock_alone(s))
        return ms;
    ms = sock_timeout_ms(fd, optname);
    __atomic_store_n(seen, ms, __ATOMIC_RELAXED);
    return ms;
}

static int linger_asked(int fd)
{
    struct linger l;
    socklen_t len = sizeof l;
    if (fd < 0 || lf_confined || getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) < 0 || !l.l_onoff)
        return -1;
    return l.l_linger < 0 ? 0 : l.l_linger;
}

int sock_linger(struct lf_sock *s, int fd)
{
    int seconds = __atomic_load_n(&s->linger_seen, __ATOMIC_RELAXED);
    if (seconds >= -1 && sock_alone(s))
        return seconds;
    seconds = linger_asked(fd);
    __atomic_store_n(&s->linger_seen, seconds, __ATOMIC_RELAXED);
    return seconds;
}

struct sock_options sock_options_inherited(struct lf_sock *listener, int listen_fd)
{
    if (!sock_alone(listener))
        return SOCK_OPTIONS_UNKNOWN;
    return (struct sock_options){ { sock_timeout(listener, listen_fd, SO_RCVTIMEO),
                                    sock_timeout(listener, listen_fd, SO_SNDTIMEO) },
                                  sock_linger(listener, listen_fd) };
}

struct sock_options fd_made_here_options(int fd)
{
    int set = fd_made_here_set(fd);
    struct sock_options o = SOCK_OPTIONS_NONE;
    if (set < 0)
        return SOCK_OPTIONS_UNKNOWN;
    if (set & OPTION_SET_TIMEOUT)
        o.timeo[0] = o.timeo[1] = -2;
    if (set & OPTION_SET_LINGER)
        o.linger = -2;
    return o;
}

/* Which of the options above optname sets: 0, or one of OPTION_SET_*. */
int option_set_by(int level, int optname)
{
    if (level != SOL_SOCKET)
        return 0;
    if (optname == SO_RCVTIMEO_OLD || optname == SO_RCVTIMEO_NEW ||
        optname == SO_SNDTIMEO_OLD || optname == SO_SNDTIMEO_NEW)
        return OPTION_SET_TIMEOUT;
    return optname == SO_LINGER ? OPTION_SET_LINGER : 0;
}

void sock_options_changed(int fd, int optname)
{
    int set = option_set_by(SOL_SOCKET, optname);
    struct lf_sock *s = set ? fdtable_acquire(fd) : NULL;
    if (!s)
        return;
    if (set == OPTION_SET_LINGER) {
        __atomic_store_n(&s->linger_seen, -2, __ATOMIC_RELAXED);
    } else {
        int snd = optname == SO_SNDTIMEO_OLD || optname == SO_SNDTIMEO_NEW;
        __atomic_store_n(&s->timeo_seen[snd], -2, __ATOMIC_RELAXED);
    }
    sock_put(s);
}

/* SO_RCVTIMEO / SO_SNDTIMEO as a poll() timeout: -1 when unset. */
int sock_timeout_ms(int fd, int optname)
{
    return lf_confined ? sandbox_timeout_ms(fd, optname) : sock_timeout_asked_ms(fd, optname);
}

/* The same, asked of the kernel (sandbox.c records it before confinement). */
int sock_timeout_asked_ms(int fd, int optname)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, optname, &tv, &len) < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
        return -1;
    long ms = tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}
