/*
 * conn.c - one connection with rings: reading, writing, switching each
 * direction from TCP to its ring at the agreed byte offset, end of stream
 * (docs/design.md, 4.4 and 7).
 *
 * Every word of the peer's header line is read with one atomic load and
 * checked before use; a contradiction marks the connection broken.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>

#include <signal.h>
#include <time.h>

#include "internal.h"
#include "ring_inline.h"

#define RX_SWITCHED (-1000000)

static struct lf_side *my_side(struct lf_conn *c) { return &c->sh->side[c->me]; }
static struct lf_side *peer_side(struct lf_conn *c) { return conn_peer(c); }   /* as proved: 4.7 */
/* A process with one thread needs no lock; the choice made at lock time is
 * returned so that unlock mirrors it. */
static int lock_if_threaded(pthread_mutex_t *m)
{
    int threaded = !__libc_single_threaded;
    if (threaded)
        lf_lock(m);
    return threaded;
}

static void unlock_if(pthread_mutex_t *m, int threaded)
{
    if (threaded)
        lf_unlock(m);
}

/* ---- one direction, one user at a time ----
 *
 * The ring has one writer and one reader.  Threads of a process are kept
 * apart by a mutex, processes holding the same end (fork, exec) by `busy`
 * in that end's line: the pid using the direction.  Neither is held while
 * a call waits, so a non-blocking call of another thread or process gets
 * its answer at once, as from the kernel.  A holder that died in the few
 * instructions it holds `busy` is found by kill(pid, 0) after a while; a
 * peer that writes a live pid there stalls only its own connection, sleeping
 * in 1 ms steps, not spinning, and only in a process that forked, spawned or
 * exec'd while holding it: `holders` is the peer's to scribble on, so a
 * process that never shared its end believes neither word (a non-blocking
 * call of a single-threaded server would hang on its hostile client). */
enum { DIR_TX = 0, DIR_RX = 1 };

struct dir_hold {
    int threaded;   /* the mutex was taken */
    int quick;      /* entered as the direction's owner, without it (quick.c) */
    int shared;     /* `busy` was taken */
    int refused;    /* neither: a non-blocking call found `busy` held too long (-EAGAIN) */
};

static int32_t *busy_word(struct lf_conn *c, int dir)
{
    return &c->sh->side[c->me].busy[dir];
}

/* 0: taken; -1: a non-blocking call (fd >= 0, its flags) finds a live
 * process holding it for more than a moment (any holder's copy takes less):
 * it answers EAGAIN rather than wait on a word the peer may have written. */
static int busy_take(struct lf_conn *c, int dir, int fd, int flags)
{
    int32_t *w = busy_word(c, dir);
    for (unsigned i = 0;; i++) {
        int32_t free_ = 0;
        if (__atomic_compare_exchange_n(w, &free_, lf_pid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return 0;
        if (i < 64) {
            cpu_relax();
            continue;
        }
        int32_t owner = __atomic_load_n(w, __ATOMIC_RELAXED);
        if (owner == lf_pid || ((i & 127) == 0 && !lf_confined && owner > 0 &&
                                kill(owner, 0) < 0 && errno == ESRCH)) {
            /* our own (a fork copied it), or a holder that died with it */
            if (__atomic_compare_exchange_n(w, &owner, lf_pid, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return 0;
            continue;
        }
        if (i == 128 && fd >= 0 && ((flags & MSG_DONTWAIT) || fd_nonblocking(fd)))
            return -1;
        /* nanosleep, not sched_yield: a seccomp sandbox allows it (6.1) */
        struct timespec pause = { 0, i < 1024 ? 1000 : 1000000 };
        nanosleep(&pause, NULL);
    }
}

/* An end other processes may hold: its `busy` word is believed (dir_lock). */
static inline __attribute__((always_inline)) int end_shared(struct lf_conn *c)
{
    return __atomic_load_n(&c->shared_end, __ATOMIC_RELAXED) &&
           __atomic_load_n(&my_side(c)->holders, __ATOMIC_RELAXED) > 1;
}

/* fd < 0: a call that may wait (it asked to block); else its descriptor
 * and flags, to tell whether it may. */
/* Inlined: returned from a call, the hold went through the stack as two
 * 4-byte stores read back as one 8-byte load, a store-forwarding stall on
 * every read and write (most of dir_lock's samples in a 64 B stream). */
static inline __attribute__((always_inline)) struct dir_hold
dir_lock(struct lf_conn *c, int dir, int fd, int flags)
{
    struct dir_hold h = { 0 };
    pthread_mutex_t *m = dir == DIR_TX ? &c->tx_lock : &c->rx_lock;
    signals_hold();   /* also single-threaded: a handler's call would interleave */
    h.threaded = lock_if_threaded(m);
    if (h.threaded)
        quick_locked(&c->bias[dir], 0);
    h.shared = end_shared(c);
    if (h.shared) {
        int e = errno;
        if (busy_take(c, dir, fd, flags) < 0) {
            unlock_if(m, h.threaded);
            signals_release();
            h = (struct dir_hold){ .refused = 1 };
        }
        errno = e;
    }
    return h;
}

static inline __attribute__((always_inline)) void
dir_unlock(struct lf_conn *c, int dir, struct dir_hold h)
{
    if (h.refused)
        return;
    if (h.shared)
        __atomic_store_n(busy_word(c, dir), 0, __ATOMIC_RELEASE);
    if (h.quick)
        quick_leave();
    unlock_if(dir == DIR_TX ? &c->tx_lock : &c->rx_lock, h.threaded);
    signals_release();
}

/* The direction for a call that only copies and returns (the *_buffer
 * calls, also made under a hazard instead of a reference: quick.c): its
 * owner enters without the mutex, and a thread that keeps taking the mutex
 * becomes its owner.  Declined (h.refused), for the general path to do: an
 * end other processes may hold (its `busy` may make a call wait), and a
 * mutex another thread holds (it may hold it over a blocking TCP send, and
 * a hazard must not wait for that: a close would wait for the hazard). */
static inline __attribute__((always_inline)) struct dir_hold
dir_lock_copy(struct lf_conn *c, int dir)
{
    struct dir_hold h = { 0 };
    if (end_shared(c))
        return (struct dir_hold){ .refused = 1 };
    signals_hold();
    if (__libc_single_threaded)
        return h;
    h.quick = quick_enter(&c->bias[dir]);
    if (!h.quick) {
        pthread_mutex_t *m = dir == DIR_TX ? &c->tx_lock : &c->rx_lock;
        if (pthread_mutex_trylock(m) != 0) {
            signals_release();
            return (struct dir_hold){ .refused = 1 };
        }
        tsan_acquire(m);
        signals_hold();   /* as lf_lock counts it */
        h.threaded = 1;
        quick_locked(&c->bias[dir], 1);
    }
    return h;
}

static uint32_t load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static uint64_t load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static void store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* Where our writes go, where the peer's go, where we read (TX_*, RX_*). */
static uint32_t my_tx(struct lf_conn *c) { return load32(&my_side(c)->tx_state); }
static uint32_t peer_tx(struct lf_conn *c) { return load32(&peer_side(c)->tx_state); }
static uint32_t my_rx(struct lf_conn *c) { return load32(&my_side(c)->rx_state); }

/* The peer's stream ended (its shutdown(SHUT_WR) or its close: its FIN). */
static int peer_ended(struct lf_conn *c)
{
    return load32(&peer_side(c)->shut_wr) || load32(&peer_side(c)->closed);
}

/* Urgent data comes on TCP: from a peer whose writes are there (socket.c,
 * urgent_to_tcp), so POLLPRI is TCP's to tell. */
static int urgent_on_tcp(struct lf_conn *c, short want)
{
    return (want & POLLPRI) && peer_tx(c) != TX_RING;
}

/* Our reader only moves forward (TCP, ring, back to TCP), by compare and
 * swap: a poller's look that began before a reader moved it on must not
 * move it back.  1 when this call moved it. */
static int rx_move(struct lf_conn *c, uint32_t from, uint32_t to)
{
    return __atomic_compare_exchange_n(&my_side(c)->rx_state, &from, to, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

/* The peer went back to TCP (sock_tx_back) and every byte it put on the
 * ring before was read: our reads are TCP's for good.  1 once they are.
 * The peer's state is loaded first: its last ring bytes were published
 * before it, so an empty ring then is empty for good. */
static int rx_went_back(struct lf_conn *c)
{
    if (peer_tx(c) == TX_BACK && my_rx(c) == RX_RING && ring_readable(&c->rx) == 0)
        rx_move(c, RX_RING, RX_BACK);
    return my_rx(c) == RX_BACK;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* Copies at most `limit` bytes worth of iovecs (and at most MAX_IOV). */
static int iov_limit(const struct iovec *in, size_t n, size_t limit, struct iovec *out)
{
    int k = 0;
    for (size_t i = 0; i < n && k < MAX_IOV && limit; i++) {
        out[k] = in[i];
        if (out[k].iov_len > limit)
            out[k].iov_len = limit;
        limit -= out[k].iov_len;
        k++;
    }
    return k;
}

/* Rings side's doorbell (bell) for our slot: its news bit first, so that
 * that side's epoll sets look at this slot alone (link.c). */
static void ring_side(struct lf_conn *c, int side, int bell)
{
    uint64_t one = 1;
    link_note_news(c->link, side, c->slot);
    int old = nocancel_begin();   /* the writer's locks are held here */
    (void)!libc.write(bell, &one, sizeof one);
    nocancel_end(old);
}

void bell_ring(struct lf_conn *c)
{
    ring_side(c, !c->me, conn_bell_peer(c));
}

/* A side promises to pay for the store-load barrier of the peer's
 * publishes (barrier.c) only while the peer publishes many messages between
 * two of its sleeps: a membarrier interrupts every CPU, which costs more than
 * a fence on each of a few messages (a short connection's set-up was a
 * quarter faster without it), and less than a fence on each of many.  The
 * messages of our end (ours read, ours written) stand for the peer's
 * publishes; they are counted at each arming and every PROMISE_AFTER
 * messages, for an end that never sleeps.  Every armer reads the promise again after its flag store, so
 * that one arming meanwhile with a fence alone (another thread, a forked
 * holder) pays the membarrier once the promise is made. */
#define PROMISE_AFTER 64   /* messages since the last arm that make a side promise */
#define PROMISE_BELOW 16   /* fewer withdraw the promise */

static void promise(uint32_t *promise)
{
    if (barrier_promise()) {
        __atomic_store_n(promise, 1, __ATOMIC_SEQ_CST);
        if (!barrier_promise())   /* confined meanwhile: membarrier is forbidden */
            __atomic_store_n(promise, 0, __ATOMIC_SEQ_CST);
    }
}

/* One more message of a direction, counted by its one writer (under the
 * direction's lock) and read by other threads' armings (end_msgs): atomic
 * loads and stores, which cost no more than plain ones, where an increment
 * that locks the bus would cost every message. */
static uint64_t count_msg(uint64_t *counter)
{
    uint64_t n = __atomic_load_n(counter, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(counter, n, __ATOMIC_RELAXED);
    return n;
}

static uint64_t end_msgs(struct lf_conn *c)
{
    const struct lf_stats *st = my_stats(c);
    return __atomic_load_n(&st->rx_msgs, __ATOMIC_RELAXED) +
           __atomic_load_n(&st->tx_msgs, __ATOMIC_RELAXED);
}

/* Every PROMISE_AFTER messages of a direction: an end that moves them
 * without sleeping (its spin finds news) promises without waiting for its
 * next sleep, so that its peer stops fencing. */
static void promise_when_busy(struct lf_conn *c)
{
    uint32_t *p = &my_side(c)->arms_with_mb;
    if (!__atomic_load_n(p, __ATOMIC_RELAXED) &&
        end_msgs(c) - __atomic_load_n(&c->msgs_at_arm, __ATOMIC_RELAXED) >= PROMISE_AFTER)
        promise(p);
}

static int promise_before_arm(struct lf_conn *c, uint32_t *promise_word)
{
    uint64_t msgs = end_msgs(c);
    uint64_t since = msgs - __atomic_exchange_n(&c->msgs_at_arm, msgs, __ATOMIC_RELAXED);
    uint32_t was = __atomic_load_n(promise_word, __ATOMIC_RELAXED);
    if (!was && since >= PROMISE_AFTER)
        promise(promise_word);
    return was && since < PROMISE_BELOW;
}

/* Did the peer arm `flag`?  Its promise to pay for the barrier is read from
 * its own line (any holder of its end writes it), not through conn_peer: it
 * only chooses our barrier, and a false one costs that connection alone. */
static inline __attribute__((always_inline)) uint32_t peer_armed(struct lf_conn *c,
                                                                uint32_t *flag)
{
    const uint32_t *promise = &c->sh->side[!c->me].arms_with_mb;
    return ring_take_armed(flag, __atomic_load_n(&lf_membarrier, __ATOMIC_RELAXED) ? promise : NULL);
}

/* The bits taken from `flag` asked for the doorbell: any but the futex's
 * and the wake socket's. */
static int wants_bell(uint32_t how)
{
    return (how & ~(RING_ARM_FUTEX | RING_ARM_NAMED)) != 0;
}

/* The futex sleepers of a wake word, woken: the word bumped first, so that
 * one about to sleep on its old value does not. */
static void futex_wake_all(uint32_t *word)
{
    __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* A direction's wake word and name word (ring.h), for the sleepers of one
 * of its flags */
struct wake_to { uint32_t *word; uint64_t *name; };

static struct wake_to reader_of(struct ring *r)
{
    return (struct wake_to){ &r->ctl->reader_wake, &r->ctl->reader_name };
}

static struct wake_to writer_of(struct ring *r)
{
    return (struct wake_to){ &r->ctl->writer_wake, &r->ctl->writer_name };
}

/* The futex and named sleepers of the bits `how` taken from a flag woken;
 * 1 when they ask for the doorbell as well (or a named sleeper could not be
 * sent its byte: it hears the doorbell too). */
static int wake_sleepers(uint32_t how, struct wake_to to)
{
    if (how & RING_ARM_FUTEX)
        futex_wake_all(to.word);
    int unsent = (how & RING_ARM_NAMED) && !wake_named(to.name);
    return wants_bell(how) || unsent;
}

/* When we woke the peer: it tells our think time by it (wait.c). */
static void note_woke_peer(struct lf_conn *c)
{
    __atomic_store_n(&my_stats(c)->woke_peer_ns, monotonic_ns(), __ATOMIC_RELAXED);
}

static __attribute__((noinline)) void wake_armed(struct lf_conn *c, uint32_t how,
                                                 struct wake_to to)
{
    note_woke_peer(c);
    if (wake_sleepers(how, to))
        bell_ring(c);
}

/* The peer's sleepers on `flag`, if it armed it, woken.  Inline, the rare
 * wake out of line: every write and read passes here (a call and its
 * frame were 20 of the 44 instructions). */
static inline __attribute__((always_inline)) void wake_peer(struct lf_conn *c, uint32_t *flag,
                                                            struct wake_to to)
{
    uint32_t how = peer_armed(c, flag);
    if (__builtin_expect(how != 0, 0))
        wake_armed(c, how, to);
}

/* After a change of state, wake the peer for whatever it waits for. */
void conn_ring_bell(struct lf_conn *c)
{
    uint32_t data = peer_armed(c, &c->tx.ctl->reader_armed);
    uint32_t room = peer_armed(c, &c->rx.ctl->writer_armed);
    if (data | room)
        note_woke_peer(c);
    /* both flags taken: one ring serves both */
    int bell = wake_sleepers(data, reader_of(&c->tx));
    bell |= wake_sleepers(room, writer_of(&c->rx));
    if (bell)
        bell_ring(c);
}

int conn_is_fast(struct lf_sock *s)
{
    struct lf_conn *c = s->conn;
    if (sock_kind(s) != LF_FAST)
        return 0;
    return c->me == LF_CLIENT || load32(&peer_side(c)->ready);
}

/* What TCP says of a connection whose reads are on the ring: -EAGAIN alive,
 * 0 EOF, -errno on reset; data here would break the protocol. */
int conn_tcp_liveness(int fd)
{
    if (lf_confined)
        return sandbox_tcp_liveness(fd);
    char b;
    int old = nocancel_begin();   /* callers hold a direction's lock */
    ssize_t n = libc.recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    nocancel_end(old);
    if (n == 0)
        return 0;
    if (n > 0)
        return -ECONNRESET;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
}

/* ---- the peer's end (docs/design.md, 7) ---- */

#define RECHECK_NS 100000000ull   /* an unclear FIN is looked into again after this */
#define SILENT_RECHECK_NS 20000000ull   /* the same for a peer that may die silently, */
#define SILENT_RECHECK_MAX_NS 1000000000ull   /* doubling while it reads nothing */

/* The peer's process is gone: the pid its end last recorded no longer
 * exists or is a zombie.  Only where sock_diag cannot answer. */
static int peer_process_gone(struct lf_conn *c)
{
    int32_t pid = __atomic_load_n(&c->sh->stats[!c->me].pid, __ATOMIC_RELAXED);
    if (pid <= 0 || lf_confined)   /* kill() may be forbidden: TCP's word only */
        return 0;
    char buf[256];
    int gone;
    const char *state = proc_stat_fields(pid, buf, sizeof buf, &gone);
    return gone || (state && (state[1] == 'Z' || state[1] == 'X'));
}

/* Did every holder of the peer's TCP socket close it (rather than shut it
 * down)?  The kernel's word: sock_diag finds it orphaned (no inode) or gone. */
static int peer_socket_closed(struct lf_conn *c, int fd)
{
    struct sockaddr_storage ends[2];
    socklen_t len0 = sizeof ends[0], len1 = sizeof ends[1];
    struct diag_result d;
    int e = errno;
    int closed;
    if (lf_confined)   /* none of these calls may be allowed: TCP's word only */
        return 0;
    if (getsockname(fd, (struct sockaddr *)&ends[0], &len0) < 0 ||
        syscall(SYS_getpeername, fd, (struct sockaddr *)&ends[1], &len1) < 0)   /* TCP's own */
        /* our TCP socket closed: by a reset, or by both ends' shutdowns
         * (ours too), when the peer owes a reset for our unread bytes only
         * if it closed or is gone (a phantom POLLERR, SO_ERROR EPIPE, after
         * both ends shut down with bytes unread) */
        closed = errno == ENOTCONN &&
                 (!load32(&my_side(c)->shut_wr) || load32(&peer_side(c)->kernel_resets) ||
                  peer_process_gone(c));
    else if (sockdiag_lookup(&ends[1], &ends[0], &d) == 0)
        closed = 0;
    else
        closed = errno == ENOENT || peer_process_gone(c);
    errno = e;
    return closed;
}

/* The peer's end is gone.  If bytes of ours were still unread, the kernel
 * would have sent a reset; a peer that closed calls close() and makes the
 * kernel send it (conn_close), but one that died or exited without close()
 * leaves only a FIN: its reset is recorded here, in our own header line, so
 * that every holder reports it once, as the kernel reports its error once. */
enum { RESET_NONE, RESET_OWED, RESET_TOLD, RESET_OWED_EPIPE };

static int peer_gone(struct lf_conn *c, int owes_reset)
{
    uint32_t none = RESET_NONE;
    /* After the peer's shutdown(SHUT_WR) (its FIN first) the kernel's error
     * for a reset is EPIPE, reported by a write only; else ECONNRESET. */
    uint32_t owed = c->fin_unclear || load32(&peer_side(c)->shut_wr) ? RESET_OWED_EPIPE : RESET_OWED;
    /* A peer whose close made the kernel send the reset owes none of its
     * own: the kernel's error, reported once, is the only one. */
    if (owes_reset && ring_readable(&c->tx) != 0 && !load32(&peer_side(c)->kernel_resets))
        __atomic_compare_exchange_n(&my_side(c)->reset, &none, owed, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    __atomic_store_n(&c->peer_gone, 1, __ATOMIC_RELEASE);
    return 1;
}

/* After our refusal (refuse_rx), or our SHUT_RD on TCP before the switch
 * (tcp_shut_rd), our TCP socket reports its own shutdown as if the peer's
 * FIN had come.  Whether one did is the kernel's word, not the flag's (a
 * peer may write the flag in our line): while no FIN of the peer's came,
 * the socket is ESTABLISHED (our SHUT_RD alone: a client whose own
 * shutdown took its server for gone sent its later bytes on TCP, which
 * its server read as a reset) or waits in FIN_WAIT1 or FIN_WAIT2. */
static int our_fin_alone(int fd)
{
    if (lf_confined)
        return 0;
    int state = tcp_info_state(fd);
    return state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2;
}

/* Could the peer's end go now without TCP telling?  Its FIN came (its
 * shutdown), so its death sends nothing more, and the reset Linux sends
 * for bytes of ours it never read is not sent: they are on the ring, not
 * in its kernel.  A writer polling for room (ncat --recv-only as its
 * reader, killed) slept for good, or woke with a 100 ms look. */
static int peer_may_die_silently(struct lf_conn *c)
{
    return (load32(&peer_side(c)->shut_wr) || __atomic_load_n(&c->tcp_ended, __ATOMIC_RELAXED)) &&
           !__atomic_load_n(&c->peer_gone, __ATOMIC_RELAXED) && ring_readable(&c->tx) > 0;
}

/* The time between two looks: a silent peer's (silent_look_asks), or an
 * unclear FIN's. */
static uint64_t recheck_ns(struct lf_conn *c, int silent)
{
    uint64_t gap = silent ? __atomic_load_n(&c->silent_gap, __ATOMIC_RELAXED) : RECHECK_NS;
    return gap ? gap : SILENT_RECHECK_NS;
}

/* A look at a peer that may die silently: one that read since the last
 * look lives (no question asked); one that did not is asked after, and
 * the next look waits twice as long, up to SILENT_RECHECK_MAX_NS: 200
 * idle half-closed peers that read nothing cost a server 8% of a core in
 * sock_diag lookups at a steady 20 ms.  1: ask the kernel now. */
static int silent_look_asks(struct lf_conn *c)
{
    uint64_t tail = __atomic_load_n(&c->tx.ctl->tail, __ATOMIC_RELAXED);
    uint64_t gap = __atomic_load_n(&c->silent_gap, __ATOMIC_RELAXED);
    if (__atomic_exchange_n(&c->silent_tail, tail, __ATOMIC_RELAXED) != tail) {
        __atomic_store_n(&c->silent_gap, SILENT_RECHECK_NS, __ATOMIC_RELAXED);
        return 0;
    }
    gap = gap ? 2 * gap : 2 * SILENT_RECHECK_NS;
    __atomic_store_n(&c->silent_gap, gap < SILENT_RECHECK_MAX_NS ? gap : SILENT_RECHECK_MAX_NS,
                     __ATOMIC_RELAXED);
    return 1;
}

/* Has the peer's end gone, judging by shared memory and by `tev`, what its
 * TCP socket reported (0: not asked)?  Once it has, the kernel's socket
 * answers for the connection (see tx_gone, gone_events). */
static int peer_left(struct lf_conn *c, int fd, short tev)
{
    struct lf_side *peer = peer_side(c);
    if (tev && (load32(&my_side(c)->rx_refused) || c->tcp_shut_rd) && our_fin_alone(fd))
        tev &= POLLERR;   /* our own shutdown shut our TCP socket: its FIN is not the peer's */
    if (tev & (POLLRDHUP | POLLHUP | POLLERR))
        __atomic_store_n(&c->tcp_ended, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&c->peer_gone, __ATOMIC_ACQUIRE))
        return 1;
    /* A close, the kernel's own reset, or a peer that shut both directions
     * down: its kernel socket answers what we write now, with a reset. */
    if (load32(&peer->closed) || (tev & POLLERR) || load32(&peer->rx_refused))
        return peer_gone(c, 0);
    int fin = (tev & (POLLRDHUP | POLLHUP)) != 0;
    int unclear = __atomic_load_n(&c->fin_unclear, __ATOMIC_RELAXED);
    int silent = !fin && peer_may_die_silently(c);
    if (!fin && !((unclear || silent) && coarse_ns() >= __atomic_load_n(&c->rechecked_at, __ATOMIC_RELAXED) +
                                                          recheck_ns(c, silent)))
        return 0;
    /* A FIN is a close once the peer writes on its ring: it never shuts TCP
     * down then.  While it still writes on TCP, the FIN may be its
     * shutdown(SHUT_WR); and no FIN at all says nothing of a peer that may
     * die silently: ask the kernel, and again every recheck_ns. */
    if (!fin && !unclear && !silent_look_asks(c)) {
        __atomic_store_n(&c->rechecked_at, coarse_ns(), __ATOMIC_RELAXED);
        return 0;   /* it read since the last look: it lives */
    }
    /* (a peer that shut its writing down may have shut TCP down too, when
     * it took us for gone: the FIN is then no close) */
    if ((load32(&peer->tx_state) != TX_RING || !(fin || unclear) ||
         (load32(&peer->shut_wr) && !load32(&peer->kernel_resets))) &&
        !peer_socket_closed(c, fd)) {
        __atomic_store_n(&c->rechecked_at, coarse_ns(), __ATOMIC_RELAXED);
        if (fin || unclear)
            __atomic_store_n(&c->fin_unclear, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return peer_gone(c, 1);
}

/* What peer_left(c, fd, 0) answers 0 for without a question left to ask:
 * loads only, for conn_write_fast.  A peer that closed with our bytes
 * unread leaves `closed` unset: the kernel's reset speaks for it
 * (conn_close), and only TCP tells when it came, so each write asks TCP
 * (at most once a millisecond, tcp_events) instead of skipping looks while
 * it writes fast: skipped, up to 15 writes said they succeeded into a ring
 * nobody reads, where the kernel's first write after the reset fails
 * (tests/reset_writes.c). */
static inline __attribute__((always_inline)) int peer_plainly_here(struct lf_conn *c)
{
    struct lf_side *peer = peer_side(c);
    return !__atomic_load_n(&c->peer_gone, __ATOMIC_ACQUIRE) && !load32(&peer->closed) &&
           !load32(&peer->rx_refused) && !load32(&peer->kernel_resets) &&
           !__atomic_load_n(&c->fin_unclear, __ATOMIC_RELAXED);
}

/* A recorded reset is reported once, by a read (ECONNRESET only) or a
 * write: its error, or 0 when there is none (left) for this call. */
static int take_reset(struct lf_conn *c, int by_write)
{
    uint32_t owed = load32(&my_side(c)->reset);
    if ((owed != RESET_OWED && !(by_write && owed == RESET_OWED_EPIPE)) ||
        !__atomic_compare_exchange_n(&my_side(c)->reset, &owed, RESET_TOLD, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return 0;
    return owed == RESET_OWED ? -ECONNRESET : -EPIPE;
}

/* SO_ERROR tells the socket's error once, as the next read or write
 * would: a recorded reset too (a poll said POLLERR for it), ECONNRESET, or
 * EPIPE after the peer's shutdown (Linux: a reset in CLOSE_WAIT). */
int conn_take_reset_error(struct lf_conn *c)
{
    return -take_reset(c, 1);
}

/* The kernel reported a reset on TCP (its error is read once, like ours):
 * none is recorded after it, so the connection reports one in all. */
static ssize_t kernel_reset_told(struct lf_conn *c, ssize_t r)
{
    if (r == -ECONNRESET)
        __atomic_store_n(&my_side(c)->reset, RESET_TOLD, __ATOMIC_RELEASE);
    return r;
}

/* The peer's stream ended (a FIN): EOF, or the reset it owed us, once. */
static ssize_t rx_end(struct lf_conn *c, int fd)
{
    __atomic_store_n(&c->tcp_ended, 1, __ATOMIC_RELAXED);
    if (!load32(&my_side(c)->reset) && ring_readable(&c->tx) == 0)
        return 0;   /* nothing of ours unread: a FIN means EOF whoever sent it */
    peer_left(c, fd, POLLRDHUP);
    return take_reset(c, 0);
}

/* A read after our SHUT_RD found nothing: EOF, or the socket's error
 * first (reported once, as the kernel's is, which tcp_recvmsg looks at
 * before its shutdown): the kernel's reset once we refused the peer's
 * bytes, or the one a peer that closed with our bytes unread sent (it was
 * EOF at once where Linux says ECONNRESET, then EOF). */
static ssize_t rx_shut_end(struct lf_conn *c, int fd)
{
    /* after the peer's FIN, EOF whatever came after it (the kernel's
     * SOCK_DONE comes before its error: a reset owed for our bytes later) */
    if (peer_ended(c))
        return 0;
    int err = take_reset(c, 0);
    socklen_t len = sizeof err;
    if (err || lf_confined)
        return err;
    /* TCP's FIN alike (a peer that ended before its switch): a peek says
     * EOF and leaves the error after it for SO_ERROR and poll, or takes an
     * error that came first (SO_ERROR took it after the FIN, and our read
     * said EPIPE where Linux's says 0) */
    char b;
    int old = nocancel_begin();   /* the rx lock is held */
    ssize_t n = libc.recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    nocancel_end(old);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return kernel_reset_told(c, -errno);
    if (n <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0)
        return 0;
    return kernel_reset_told(c, -err);
}

static int window_clock_ms(struct lf_conn *c);

/* How long a waiter may sleep before an unclear FIN, a peer that may die
 * silently, or the window's clock (below, the pace) is looked into again:
 * -1 when nothing is unclear. */
int conn_recheck_ms(struct lf_conn *c)
{
    int window = window_clock_ms(c);
    if (__atomic_load_n(&c->proof_deferred, __ATOMIC_RELAXED))
        return timeout_min(SHARED_WAIT_MS, window);   /* a proof waits for a descriptor (handshake.c) */
    if (peer_may_die_silently(c))
        return timeout_min((int)(recheck_ns(c, 1) / 1000000), window);
    return __atomic_load_n(&c->fin_unclear, __ATOMIC_RELAXED) &&
                   !__atomic_load_n(&c->peer_gone, __ATOMIC_RELAXED)
               ? timeout_min((int)(RECHECK_NS / 1000000), window)
               : window;
}

/* ---- reading ---- */

/* Reads the peer's bytes from before its switch, RX_SWITCHED once all are
 * (another thread's look may have seen it first); or, back on TCP, all. */
static ssize_t rx_tcp(struct lf_conn *c, int fd, struct msghdr *msg, int flags)
{
    struct lf_side *me = my_side(c), *peer = peer_side(c);
    for (;;) {
        uint32_t state = my_rx(c);
        if (state == RX_RING)
            return RX_SWITCHED;
        uint32_t switched = load32(&peer->tx_state) != TX_TCP && state != RX_BACK;
        uint64_t got = load64(&me->rx_tcp_bytes);
        size_t limit = iov_total(msg->msg_iov, msg->msg_iovlen);
        if (switched) {
            uint64_t n = load64(&peer->tx_tcp_bytes);
            if (got > n)
                return c->broken = 1, -ECONNRESET;
            if (got == n) {
                rx_move(c, RX_TCP, RX_RING);
                return RX_SWITCHED;
            }
            if (limit > n - got)
                limit = (size_t)(n - got);
        }
        struct iovec iov[MAX_IOV];
        struct msghdr m = *msg;
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)iov_limit(msg->msg_iov, msg->msg_iovlen, limit, iov);
        int old = nocancel_begin();   /* the rx lock is held */
        ssize_t r = lf_confined ? sandbox_recv_nowait(fd, &m, flags)
                                : libc.recvmsg(fd, &m, (flags & ~MSG_WAITALL) | MSG_DONTWAIT);
        nocancel_end(old);
        if (r > 0) {
            if (!(flags & MSG_PEEK))
                store64(&me->rx_tcp_bytes, got + (uint64_t)r);
            msg->msg_flags = m.msg_flags;
            msg->msg_namelen = m.msg_namelen;
            msg->msg_controllen = m.msg_controllen;
            return r;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (!switched && state == RX_TCP && load32(&peer->tx_state) != TX_TCP)
            continue;   /* it switched meanwhile: the limit is known now */
        return r == 0 ? 0 : -EAGAIN;
    }
}

/* n bytes came off the ring: counted, the writer woken if it sleeps for
 * room. */
static inline __attribute__((always_inline)) void rx_took(struct lf_conn *c, ssize_t n)
{
    my_stats(c)->rx_bytes += (uint64_t)n;
    if (count_msg(&my_stats(c)->rx_msgs) % PROMISE_AFTER == 0)
        promise_when_busy(c);
    wake_peer(c, &c->rx.ctl->writer_armed, writer_of(&c->rx));
}

/* A read that took the last of the peer's TCP bytes (`done` of them) goes
 * on into the ring, as the kernel's read takes all that is queued: a read
 * shorter than its buffer tells libuv (node) that nothing is left, and with
 * the peer's FIN already reported it took the stream for ended and never
 * read the ring (a node client got its first 230 bytes of 5851). */
static ssize_t rx_tcp_then_ring(struct lf_conn *c, struct msghdr *msg, ssize_t done, int peek)
{
    struct lf_side *me = my_side(c), *peer = peer_side(c);
    if ((size_t)done >= iov_total(msg->msg_iov, msg->msg_iovlen))
        return done;
    /* a peek consumed nothing: did it see the last of the TCP bytes? */
    if (peek ? my_rx(c) != RX_TCP || load32(&peer->tx_state) == TX_TCP ||
                   load64(&me->rx_tcp_bytes) + (uint64_t)done != load64(&peer->tx_tcp_bytes)
             : !conn_rx_settled(c))
        return done;
    struct iovec iov[MAX_IOV];
    struct msghdr rest = msg_skip(msg, (size_t)done, iov);
    ssize_t n = ring_readv(&c->rx, rest.msg_iov, (int)rest.msg_iovlen, peek);
    if (n < 0)
        c->broken = 1;   /* told at the next call: these bytes are the program's */
    if (n <= 0)
        return done;
    if (!peek)
        rx_took(c, n);
    return done + n;
}

/* One non-blocking attempt: bytes, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t rx_step(struct lf_conn *c, int fd, struct msghdr *msg, int flags)
{
    struct lf_side *me = my_side(c);
    int peek = (flags & MSG_PEEK) != 0;
    if (!conn_rx_settled(c)) {
        ssize_t r = rx_tcp(c, fd, msg, flags);
        if (r > 0)
            r = rx_tcp_then_ring(c, msg, r, peek);
        /* a zero-length read's 0 is TCP's answer, bytes there or not: no
         * end (taken for the peer's FIN, it broke the connection:
         * ECONNRESET, then POLLHUP and CLOSE_WAIT with bytes unread) */
        if (r == 0 && !iov_total(msg->msg_iov, msg->msg_iovlen))
            return 0;
        if (r != RX_SWITCHED)
            return r == 0 ? rx_end(c, fd) : kernel_reset_told(c, r);
    }
    msg->msg_flags = flags & MSG_CMSG_CLOEXEC;   /* the kernel echoes it */
    msg->msg_namelen = 0;
    msg->msg_controllen = 0;
    for (int pass = 0; pass < 2; pass++) {
        ssize_t n = ring_readv(&c->rx, msg->msg_iov, (int)msg->msg_iovlen, peek);
        if (n < 0)
            return c->broken = 1, -ECONNRESET;
        if (n > 0) {
            if (!peek)
                rx_took(c, n);
            return n;
        }
        /* a zero-length read finds the bytes, and says 0, as TCP's (it
         * took an empty ring for one and waited for ever) */
        if (!iov_total(msg->msg_iov, msg->msg_iovlen) && ring_readable(&c->rx) > 0)
            return 0;
        if (load32(&me->reset))
            return take_reset(c, 0);
        /* Data is published before the flag: look once more after it.  A
         * peer back on TCP shut its TCP down or closed: TCP's bytes first
         * (the flags loaded before its state, which it stored before). */
        int ended = peer_ended(c);
        if (rx_went_back(c))
            return rx_step(c, fd, msg, flags);
        if (!ended)
            return -EAGAIN;
    }
    return 0;
}

/* Before a call waits for the peer: 1 when it must not wait (MSG_DONTWAIT,
 * O_NONBLOCK), 0 when it must, -1 when news came while it spun.  A system
 * call per message would cost more than the message, so a socket last seen
 * blocking spins first and asks the kernel only before it sleeps; one last
 * seen non-blocking asks at once, so that an event loop's EAGAIN costs no
 * spin.  The kernel's word decides, unless no other process can have
 * changed O_NONBLOCK (sock_nonblocking, wait.c). */
static int must_not_wait(struct lf_sock *s, struct lf_conn *c, int fd, int flags, int for_write,
                         size_t rx_want, int may_spin)
{
    if (flags & MSG_DONTWAIT)
        return 1;
    int spin_first = __atomic_load_n(&s->nonblock_seen, __ATOMIC_RELAXED) == 0;
    if (spin_first && may_spin && wait_spin(c, for_write, rx_want))
        return -1;
    int nonblock = sock_nonblocking(s, fd);
    if (!nonblock && !spin_first && may_spin && wait_spin(c, for_write, rx_want))
        return -1;
    return nonblock;
}

static int sleep_ms(struct lf_conn *c, uint64_t deadline);

/* ---- SO_RCVLOWAT ----
 * Asked of the kernel once a process has set it on any socket (until then
 * no socket of this image can have a mark of its own, but one inherited
 * across exec: docs/design.md, 10), and again after each setsockopt. */
static int rcvlowat_used;

void sock_rcvlowat_changed(int fd, int optname)
{
    if (optname != SO_RCVLOWAT)
        return;
    __atomic_store_n(&rcvlowat_used, 1, __ATOMIC_RELAXED);
    struct lf_sock *s = fdtable_acquire(fd);
    if (s) {
        if (sock_kind(s) == LF_FAST)
            __atomic_store_n(&s->conn->rcvlowat, 0, __ATOMIC_RELAXED);
        sock_put(s);
    }
}

size_t conn_rcvlowat(struct lf_conn *c, int fd)
{
    if (!__atomic_load_n(&rcvlowat_used, __ATOMIC_RELAXED))
        return 1;
    int v = __atomic_load_n(&c->rcvlowat, __ATOMIC_RELAXED);
    if (v <= 0) {
        socklen_t len = sizeof v;
        if (lf_confined || getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len) < 0 || v < 1)
            v = 1;
        __atomic_store_n(&c->rcvlowat, v, __ATOMIC_RELAXED);
    }
    /* a mark the ring cannot hold would wait for ever (Linux caps it at half
     * the receive buffer), nor one past a writer's window (a memory limit:
     * ring.c; the peer's word, only ever lowering the mark) */
    size_t cap = ring_capacity(&c->rx) / 2;
    uint32_t window = __atomic_load_n(&c->rx.ctl->writer_window, __ATOMIC_RELAXED);
    if (window && window / 2 < cap)
        cap = window / 2;
    return (size_t)v < cap ? (size_t)v : cap ? cap : 1;
}

/* The bytes a read that may wait waits for: its mark, at most its length. */
static size_t rx_target(struct lf_conn *c, int fd, const struct msghdr *msg)
{
    size_t lowat = conn_rcvlowat(c, fd);
    if (lowat <= 1)
        return 1;
    size_t len = iov_total(msg->msg_iov, msg->msg_iovlen);
    return len < lowat ? (len ? len : 1) : lowat;
}

/* Bytes on the ring, fewer than the target, and no end of stream: a read
 * that may wait waits for more; one that may not takes them. */
static int rx_short(struct lf_conn *c, size_t target)
{
    if (target <= 1 || my_rx(c) != RX_RING || peer_tx(c) == TX_BACK || conn_shut_rd(c))
        return 0;
    ssize_t n = ring_readable(&c->rx);
    return n >= 0 && (size_t)n < target && !peer_ended(c);
}

static void call_cancelled(void *s)
{
    cancel_unwound();
    call_end(s);
}

/* Is no TCP look due (tcp_events) for the short path?  Its clock is read
 * on every write (6 ns of a 64 B write): a count of writes without it,
 * kept while writes came fast, let a writer that slowed down after a
 * burst pass a due look by up to 15 writes, each said to succeed into the
 * ring of a peer whose process had exited (only TCP tells of that), where
 * Linux fails the first (tests/reset_writes.c). */
static inline __attribute__((always_inline)) int tcp_look_not_due(struct lf_conn *c)
{
    return coarse_ns() < __atomic_load_n(&c->next_tcp_check, __ATOMIC_RELAXED);
}

/* The socket a blocked call of this thread waits on (a signal handler's
 * close() of it is no other thread's: conn_close_deferred). */
static __thread struct lf_sock *waiting_on LF_TLS_IE;

static void wait_cancelled(void *arg)
{
    struct lf_sock *s = arg;
    __atomic_sub_fetch(&s->waiting, 1, __ATOMIC_SEQ_CST);
    waiting_on = NULL;
    call_cancelled(s);
}

/* wait_for in a data call on s (its interposed entry holds s): a thread
 * cancelled in the sleep (pthread_cancel) gives the call's reference back,
 * which would otherwise keep the connection after its close.  Counted in
 * s->waiting meanwhile; if the last number of s was closed under it, the
 * call goes on with the TCP socket kept for it (*fd), and what TCP said
 * during the sleep is dropped: it may be another file's, given that number. */
static int wait_in_call(struct lf_sock *s, int *fd, int for_write, size_t want, int timeout_ms,
                        struct lf_caught *call, int restartable, short *tcp_events)
{
    int w;
    struct lf_sock *was = waiting_on;
    waiting_on = s;
    __atomic_add_fetch(&s->waiting, 1, __ATOMIC_SEQ_CST);
    pthread_cleanup_push(wait_cancelled, s);
    w = wait_for(s->conn, *fd, for_write, want, timeout_ms, call, restartable, tcp_events);
    pthread_cleanup_pop(0);
    __atomic_sub_fetch(&s->waiting, 1, __ATOMIC_SEQ_CST);
    waiting_on = was;
    int kept = __atomic_load_n(&s->kept_fd, __ATOMIC_ACQUIRE);
    if (kept >= 0 && kept != *fd) {
        *fd = kept;
        *tcp_events = 0;
    }
    return w;
}

/* The last number of s is being closed while other threads' calls wait on
 * it (thread blocked in read() or in a write() waiting for room): Linux
 * keeps the socket for them until they return, and they go on waiting (the
 * peer's later bytes reach a blocked reader, its FIN comes after).  So the
 * TCP socket is kept at a number of ours, and the connection ends when the
 * last of them returns (sock_destroy).  0 when nothing waits, or no number
 * is free: the close ends it now. */
int conn_close_deferred(struct lf_sock *s, int fd)
{
    int others = __atomic_load_n(&s->waiting, __ATOMIC_SEQ_CST) - (waiting_on == s);
    if (others <= 0 || s->kept_fd >= 0 || ownfd_keep(&s->kept_fd, fd) < 0)
        return 0;
    fdtable_kept(s);
    return 1;
}

static int sock_on_stdin(struct lf_sock *s);
static short tcp_events(struct lf_conn *c, int fd, int now);

/* Before a read sleeps: has TCP told of the peer's end?  A peer process
 * that died without closing leaves only its kernel's FIN, which a poll may
 * have seen already (then poll said readable and the read slept 200 ms on
 * its futex before it heard TCP), or which a look now finds (at most once
 * a millisecond: tcp_events). */
static int tcp_told_end(struct lf_conn *c, int fd)
{
    if (__atomic_load_n(&c->peer_gone, __ATOMIC_ACQUIRE) || __atomic_load_n(&c->tcp_ended, __ATOMIC_RELAXED))
        return 1;
    return (tcp_events(c, fd, 0) & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The server's program reads or writes the connection through us (not
 * stdio): its client may take the answer without having read (handshake.c,
 * server_used).  A write says nothing of the reads of a socket on stdin,
 * which stdio may make; it is looked up only until the word is set. */
static void server_uses(struct lf_sock *s, struct lf_conn *c, int writing)
{
    if (c->me != LF_SERVER || c->used_told || (writing && sock_on_stdin(s)))
        return;
    __atomic_store_n(&my_side(c)->used, 1, __ATOMIC_RELEASE);
    c->used_told = 1;
}

/* This thread's read that conn_read_fast spun for, in vain, and the
 * signals it had caught before that spin: conn_recv, which answers the
 * same call next, neither spins again nor misses a handler that ran
 * during the spin (a read without SA_RESTART ends with EINTR). */
struct rx_spun {
    int spun;
    struct lf_caught call;
};
static __thread struct rx_spun rx_spun LF_TLS_IE;

ssize_t conn_recv(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    struct lf_conn *c = s->conn;
    struct rx_spun spun = rx_spun;
    rx_spun.spun = 0;
    if (__atomic_load_n(&c->held, __ATOMIC_RELAXED))
        handshake_consent(c);   /* read through us, not stdio: its client may switch */
    server_uses(s, c, 0);
    struct dir_hold hold = dir_lock(c, DIR_RX, fd, flags);
    if (hold.refused)
        return -EAGAIN;
    ssize_t r;
    int timeout = -2;
    uint64_t deadline = 0;
    size_t target = rx_target(c, fd, msg);
    struct lf_caught call;
    int looked = 0;
    if (spun.spun)
        call = spun.call;
    else
        caught_now(&call);
    for (;;) {
        int below_mark = rx_short(c, target);
        r = c->broken ? -ECONNRESET : below_mark ? -EAGAIN : rx_step(c, fd, msg, flags);
        /* after our SHUT_RD bytes still come; none: EOF, never a wait; and
         * once refused, the kernel's reset before any EOF, as its read says
         * (a zero-length read's 0 found bytes, or TCP's end: its answer) */
        if ((r == -EAGAIN || (r == 0 && iov_total(msg->msg_iov, msg->msg_iovlen))) &&
            conn_shut_rd(c))
            r = rx_shut_end(c, fd);
        if (r != -EAGAIN)
            break;
        int on_ring = my_rx(c) == RX_RING;
        int dontwait = must_not_wait(s, c, fd, flags, 0, target, !spun.spun);
        spun.spun = 0;   /* conn_read_fast's spin stood for the first one only */
        if (dontwait < 0)
            continue;
        if (dontwait && below_mark && (r = rx_step(c, fd, msg, flags)) != -EAGAIN)
            break;
        short tev = 0;
        if (dontwait) {
            tev = POLLIN;   /* before saying EAGAIN, ask TCP if the peer is gone */
        } else if (on_ring && !looked && tcp_told_end(c, fd)) {
            looked = 1;     /* no sleep: its futex phase would not hear TCP for 200 ms */
            tev = POLLRDHUP;
        } else {
            if (timeout == -2) {
                timeout = sock_timeout(s, fd, SO_RCVTIMEO);
                deadline = timeout < 0 ? 0 : monotonic_ns() + (uint64_t)timeout * 1000000;
                deadline = sock_call_deadline(s, deadline);   /* a MSG_WAITALL's piece */
            }
            dir_unlock(c, DIR_RX, hold);   /* others may read meanwhile, as from the kernel */
            int w = wait_in_call(s, &fd, 0, target, sleep_ms(c, deadline), &call, !deadline, &tev);
            hold = dir_lock(c, DIR_RX, -1, 0);
            /* a sleep cut short (sleep_ms) is no timeout */
            if (w < 0 && !(w == -EAGAIN && (!deadline || monotonic_ns() < deadline))) {
                ssize_t there = target > 1 ? rx_step(c, fd, msg, flags) : 0;
                r = there > 0 ? there : w;   /* a timeout or a signal: what came, as TCP */
                break;
            }
        }
        if (on_ring && tev && my_rx(c) == RX_RING && peer_tx(c) != TX_BACK) {
            int live = conn_tcp_liveness(fd);
            if (live != -EAGAIN) {
                r = rx_step(c, fd, msg, flags);   /* the ring's last bytes first */
                if (r == -EAGAIN)
                    r = live == 0 ? rx_end(c, fd) : kernel_reset_told(c, live);
                break;
            }
        }
        if (dontwait)
            break;
    }
    dir_unlock(c, DIR_RX, hold);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* read() and recv() of bytes already on the ring, the reading twin of
 * conn_write_fast: no msghdr, no wait.  CONN_DECLINED when the ring is
 * empty or anything asks for more than a copy (a low-water mark, the
 * direction not on the ring yet, a held answer): nothing was done. */
/* What makes the short path decline a read before it looks at the ring. */
static int short_read_refused(struct lf_conn *c, size_t len)
{
    return !len || __atomic_load_n(&c->held, __ATOMIC_RELAXED) ||
           __atomic_load_n(&rcvlowat_used, __ATOMIC_RELAXED);
}

/* The bytes on the ring, in one buffer; inline in the data calls below. */
static inline __attribute__((always_inline)) ssize_t recv_copy(struct lf_sock *s, void *buf,
                                                              size_t len)
{
    struct lf_conn *c = s->conn;
    if (short_read_refused(c, len))
        return CONN_DECLINED;
    struct dir_hold hold = dir_lock_copy(c, DIR_RX);
    if (hold.refused)
        return CONN_DECLINED;
    ssize_t r = CONN_DECLINED, n;
    if (!c->broken && my_rx(c) == RX_RING && (n = ring_read_inline(&c->rx, buf, len, 0)) > 0) {
        rx_took(c, n);
        r = n;
    }
    dir_unlock(c, DIR_RX, hold);
    return r;
}

ssize_t conn_recv_buffer(struct lf_sock *s, void *buf, size_t len)
{
    return recv_copy(s, buf, len);
}

/* The spin of a blocking read() was conn_recv's (must_not_wait), and the
 * bytes it found went through that general path's loop and return, about
 * 400 instructions on every round trip's critical path, at each end.
 * Here the same spin, then the short path's copy. */
static inline __attribute__((always_inline)) ssize_t recv_spun(struct lf_sock *s, void *buf,
                                                              size_t len)
{
    struct lf_conn *c = s->conn;
    if (__atomic_load_n(&s->nonblock_seen, __ATOMIC_RELAXED) != 0 || short_read_refused(c, len) ||
        c->broken || my_rx(c) != RX_RING)
        return CONN_DECLINED;   /* (last seen non-blocking: its EAGAIN must not spin) */
    caught_now(&rx_spun.call);
    if (!wait_spin(c, 0, 1)) {
        rx_spun.spun = 1;
        return CONN_DECLINED;
    }
    return recv_copy(s, buf, len);
}

ssize_t conn_read_fast(struct lf_sock *s, void *buf, size_t len, int flags)
{
    if (sock_kind(s) != LF_FAST || (flags & ~MSG_DONTWAIT))
        return CONN_DECLINED;   /* MSG_DONTWAIT is the only flag the copy honours as it is */
    ssize_t r = recv_copy(s, buf, len);
    if (r == CONN_DECLINED && !flags)
        r = recv_spun(s, buf, len);   /* not a quick call's: no hazard held here */
    return r;
}

void conn_recv_spun_end(void)
{
    rx_spun.spun = 0;
}

/* ---- writing ---- */

/* A socket on stdout or stderr, or one the program gave to fdopen(), may be
 * written by stdio, whose libc-internal write() no interposition sees: its
 * bytes go to TCP, uncounted and, after a switch, behind the ring's (git's
 * upload-pack sends its refs so, the rest with write(); git clone read past
 * the count, or TCP bytes after the ring's, and reset).  Such a socket's
 * writes stay on TCP. */
int sock_stdio_may_write(struct lf_sock *s)
{
    return __atomic_load_n(&s->stdio, __ATOMIC_RELAXED) || fdtable_holds(STDOUT_FILENO, s) ||
           fdtable_holds(STDERR_FILENO, s);
}

/* A socket on stdin may be read by stdio (an inetd's service). */
static int sock_on_stdin(struct lf_sock *s)
{
    return fdtable_holds(STDIN_FILENO, s);
}

/* A socket that was on stdout for a moment (bash's `printf >&3`: it moves
 * the socket onto 1, writes through stdio, moves it back) had bytes
 * written past us, which the switch would not count: the peer took them
 * for a reset (a bash /dev/tcp client lost its request 1 run in 5).  The
 * kernel's count of what it was given tells. */
int sock_written_past_us(struct lf_sock *s, int fd, uint64_t counted)
{
    uint64_t given;
    if (fd < 0 || lf_confined || tcp_bytes_given(fd, &given) < 0 || given == counted)
        return 0;
    __atomic_store_n(&s->stdio, 1, __ATOMIC_RELAXED);
    return 1;
}

/* The server may switch once the client reads rings (and has proved itself,
 * 4.7); the client always may.  A direction shut down on TCP stays there: a
 * switch would let bytes follow the FIN, and the peer could not tell that
 * FIN from a close. */
static void tx_maybe_switch(struct lf_conn *c, struct lf_sock *s, int fd)
{
    struct lf_side *me = my_side(c);
    if (load32(&me->tx_state) != TX_TCP || load32(&me->shut_wr))
        return;
    if (c->me == LF_SERVER && !load32(&peer_side(c)->ready))
        return;
    if (c->me == LF_SERVER)
        conn_note_cpu(c, 0);   /* the client's, published before ready (wait.c) */
    if (sock_stdio_may_write(s) || sock_written_past_us(s, fd, load64(&me->tx_tcp_bytes)))
        return;
    store32(&me->tx_state, TX_RING);
    conn_ring_bell(c);
}

/* Our writes go to TCP for good, after the ring's bytes: the state says so
 * before any TCP byte, and the reader drains the ring before it reads TCP
 * again (rx_went_back).  No count is needed: nothing comes on the ring
 * after it.  `also_unswitched`: a direction still on TCP is marked so too
 * (it never switches then), unless it is shut down. */
static void tx_to_tcp(struct lf_sock *s, int also_unswitched)
{
    if (sock_kind(s) != LF_FAST)
        return;
    struct lf_conn *c = s->conn;
    if (!also_unswitched && my_tx(c) != TX_RING)
        return;
    struct dir_hold hold = dir_lock(c, DIR_TX, -1, 0);   /* no ring write under way */
    uint32_t was = my_tx(c);
    int moved = also_unswitched ? was != TX_BACK && !load32(&my_side(c)->shut_wr) : was == TX_RING;
    if (moved)
        store32(&my_side(c)->tx_state, TX_BACK);
    dir_unlock(c, DIR_TX, hold);
    if (moved) {
        conn_ring_bell(c);   /* a reader asleep on the ring */
        conn_wake_own(c);    /* our writers waiting for room write to TCP now */
    }
}

/* A socket whose writes are on the ring came where stdio may write it past
 * us (bash's `printf >&3` moves its /dev/tcp socket onto stdout; an exec
 * onto it): those bytes would reach the peer's TCP while it reads the ring,
 * and it would wait for them for ever.  So the writes go back to TCP. */
void sock_tx_back(struct lf_sock *s)
{
    tx_to_tcp(s, 0);
}

/* Urgent data (socket.c): our writes go to TCP for good, the urgent byte
 * after the ring's bytes; a direction not switched yet never will (the
 * urgent byte is no byte of the peer's count of our TCP bytes).  A
 * direction shut down stays as it is: the send says EPIPE. */
void sock_tx_urgent(struct lf_sock *s)
{
    tx_to_tcp(s, 1);
}

static ssize_t epipe(int flags)
{
    if (!(flags & MSG_NOSIGNAL) && !(lf_confined && sandbox_sigpipe_ignored()))
        raise(SIGPIPE);   /* tgkill: a sandbox may forbid it, and an ignored signal needs none */
    return -EPIPE;
}

/* What TCP says now of the peer's end; asked at most once a millisecond
 * unless `now`.  An unclear FIN is not asked again (peer_left's timer). */
static short tcp_events(struct lf_conn *c, int fd, int now)
{
    uint64_t t = coarse_ns();
    /* (a reader and a writer thread both look: a time, no more) */
    if (!now && t < __atomic_load_n(&c->next_tcp_check, __ATOMIC_RELAXED))
        return 0;
    __atomic_store_n(&c->next_tcp_check, t + 1000000, __ATOMIC_RELAXED);
    return poll_now(fd, c->fin_unclear ? 0 : POLLRDHUP);
}

/* The kernel's error for a write on TCP.  A reset that comes after the
 * peer's FIN is EPIPE (Linux: in CLOSE_WAIT), but a FIN that went on the
 * ring left our kernel socket ESTABLISHED, where it is ECONNRESET: Java's
 * close() shuts its writes down first, and with our bytes unread its
 * kernel resets; its peer's next write failed "Connection reset" where
 * the kernel says "Broken pipe". */
static ssize_t kernel_send_error(struct lf_conn *c, ssize_t r, int flags)
{
    if (r == -ECONNRESET && conn_kernel_error(c, ECONNRESET) == EPIPE)
        return epipe(flags);
    return r;
}

int conn_kernel_error(struct lf_conn *c, int err)
{
    return err == ECONNRESET && load32(&peer_side(c)->shut_wr) ? EPIPE : err;
}

/* A write after the peer's end has gone: the kernel's socket answers, as
 * over kernel TCP (the first bytes are taken and the dead end answers them
 * with a reset; then EPIPE and SIGPIPE), unless a reset was recorded. */
static ssize_t tx_gone(struct lf_conn *c, int fd, const struct msghdr *msg, int flags)
{
    if (load32(&my_side(c)->reset)) {
        int err = take_reset(c, 1);
        return err == -ECONNRESET ? err : epipe(flags);
    }
    int old = nocancel_begin();   /* the tx lock is held */
    ssize_t r = libc.sendmsg(fd, msg, flags);
    r = r < 0 ? -errno : r;
    nocancel_end(old);
    return kernel_send_error(c, r, flags);
}

/* The rest of a write that waited for room when the peer's end went: to
 * the kernel's socket, as it would have queued it, unless TCP already
 * reports the error (left for the next call, as the kernel leaves it). */
static ssize_t tx_rest_gone(struct lf_conn *c, int fd, const struct msghdr *rest, int flags,
                            size_t done)
{
    struct pollfd p = { .fd = fd, .events = 0 };
    if (load32(&my_side(c)->reset) || lf_confined || poll_nocancel(&p) != 0)
        return (ssize_t)done;
    int old = nocancel_begin();   /* the tx lock is held */
    ssize_t r = libc.sendmsg(fd, rest, flags | MSG_NOSIGNAL);
    nocancel_end(old);
    return (ssize_t)done + (r > 0 ? r : 0);
}

/* The kernel socket's pending error, taken as a call of the kernel's would
 * take it (its own SO_ERROR, not ours: interpose.c); 0: none, or confined. */
static int tcp_take_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (lf_confined || syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return 0;
    return err;
}

/* A sendfile() whose peer went after its first bytes: the kernel's
 * splice sends the rest in pieces, and the piece that meets the reset
 * takes the socket's error and drops it for the count, so the next call
 * says EPIPE and raises SIGPIPE (the kernel's sendfile into a connection
 * whose reader was killed: a short count, then EPIPE; a write keeps the
 * error: tx_rest_gone).  The reset, ours or TCP's, is taken so. */
static void file_rest_gone(struct lf_conn *c, int fd)
{
    if (!take_reset(c, 1))
        tcp_take_error(fd);
}

/* A send after our shutdown(SHUT_WR): EPIPE and SIGPIPE, unless the
 * socket has an error, which the kernel's tcp_sendmsg looks at first: the
 * reset its TCP answered the peer's bytes with after our SHUT_RD (they
 * found us refusing: rx_refused), a peer's SO_LINGER 0 close, a recorded
 * one.  Ours said EPIPE and raised SIGPIPE, and the next read said
 * ECONNRESET.  (A write after one's own shutdown is rare: one system call.) */
static ssize_t tx_after_shutdown(struct lf_conn *c, int fd, int flags)
{
    int err = -take_reset(c, 1);
    if (err == ECONNRESET)
        return -ECONNRESET;
    if (!err && (err = conn_kernel_error(c, tcp_take_error(fd))) != 0 && err != EPIPE)
        return kernel_reset_told(c, -err);
    return epipe(flags);   /* (an EPIPE error raises SIGPIPE too: sk_stream_error) */
}

/* A zero-length send tells the socket's state, as TCP's: the peer's
 * reset, EPIPE (and SIGPIPE) after our shutdown, else 0. */
static ssize_t tx_nothing(struct lf_conn *c, int fd, const struct msghdr *msg, int flags)
{
    if (c->broken)
        return -ECONNRESET;
    /* (the peer's end looked at first: a reset it owes is recorded then)
     * our own shutdown before the peer's end, as tcp_sendmsg looks at its
     * error, then at SEND_SHUTDOWN: our TCP socket, its FIN on the ring,
     * took the send of nothing once the peer had gone (0, no EPIPE) */
    int gone = peer_left(c, fd, tcp_events(c, fd, 0));
    if (load32(&my_side(c)->shut_wr))
        return tx_after_shutdown(c, fd, flags);
    if (gone)
        return msg ? tx_gone(c, fd, msg, flags) : CONN_DECLINED;
    return 0;
}

/* sendfile's bytes when the peer went: with none, the buffered copy tells
 * TCP's answer (sendfile.c). */
static ssize_t tx_file_gone(struct lf_conn *c, int fd, size_t done)
{
    if (!done)
        return CONN_DECLINED;
    file_rest_gone(c, fd);
    return (ssize_t)done;
}

/* The rest of a write whose direction went back to TCP: TCP's, as the
 * kernel would have taken it (blocking or not, as the socket is). */
static ssize_t tx_rest_back(struct lf_conn *c, int fd, const struct msghdr *rest, int flags,
                            size_t done)
{
    int old = nocancel_begin();   /* the tx lock is held */
    ssize_t r = lf_confined ? sandbox_send(fd, rest, flags) : libc.sendmsg(fd, rest, flags);
    r = r < 0 ? -errno : r;
    nocancel_end(old);
    if (r < 0 && done)
        return (ssize_t)done;
    return r < 0 ? kernel_send_error(c, r, flags) : (ssize_t)done + r;
}

/* How long a call may sleep: until its deadline (0: none), no longer than
 * an unclear FIN may wait to be looked into again. */
static int sleep_ms(struct lf_conn *c, uint64_t deadline)
{
    int ms = -1;
    if (deadline) {
        uint64_t now = monotonic_ns();
        ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
    }
    return timeout_min(ms, conn_recheck_ms(c));
}


/* n bytes went on the ring: counted, the trimmer told, the reader woken if
 * it sleeps. */
static inline __attribute__((always_inline)) void tx_wrote(struct lf_conn *c, ssize_t n)
{
    my_stats(c)->tx_bytes += (uint64_t)n;
    trim_note_write(c);
    wake_peer(c, &c->tx.ctl->reader_armed, reader_of(&c->tx));
}

/* A call that put bytes on the ring: one message more. */
static inline __attribute__((always_inline)) void tx_counted(struct lf_conn *c)
{
    if (count_msg(&my_stats(c)->tx_msgs) % PROMISE_AFTER == 0)
        promise_when_busy(c);
}

/* A writer that may wait keeps RING_PACE bytes in flight while its reader
 * drains them: the reader then finds them in the caches (a 64 KiB stream
 * ran at 20 GB/s filling the ring's 4 MB hold, 30 GB/s paced).  A reader
 * that takes nothing for PACE_IDLE_NS does not drain: then the writer fills
 * the rest of the ring's hold, as kernel TCP's buffers would take it (a
 * program that writes megabytes before it reads its echo).  A writer that
 * must not wait never paces: it fills the hold, and its poll says so.  Nor
 * one with a send timeout, and a signal in a paced wait ends the pace: the
 * kernel, with room, would have neither timed out nor been interrupted. */
#define PACE_IDLE_NS 2000000ull

struct pace {
    uint64_t limit;   /* RING_PACE, NB_WINDOW, or 0: the whole capacity */
    uint64_t tail;    /* the reader's index when the writer last found it moved */
    uint64_t until;   /* when the writer stops pacing if it has not moved; 0: not waiting */
    int window;       /* the limit is the window of a writer that must not wait */
};

/* A writer that must not wait keeps to a window of NB_WINDOW in flight, and
 * readiness says writable by it; each time its reader has taken nothing
 * for WINDOW_IDLE_NS since it was found closed, it doubles, and past
 * RING_PACE it is the whole capacity (docs/design.md, 5: the pace).  Its
 * reader is an event loop's more often than a blocking writer's, busy with
 * other connections for milliseconds: at 2 ms, 50 connections' windows
 * grew and their echoes took 1.1-1.6x the kernel's time, at 5 ms 0.9-1.0x. */
#define NB_WINDOW (256u << 10)
#define WINDOW_IDLE_NS (5 * 1000000ull)
#define WINDOW_WHOLE UINT64_MAX

/* The window's size now: 0 (the whole capacity) once it grew past
 * RING_PACE; once what is in flight is down to half of NB_WINDOW, it is
 * NB_WINDOW again.  Meant for a ring that paces (nb_window). */
static uint64_t window_now(struct lf_conn *c)
{
    uint64_t w = __atomic_load_n(&c->window_size, __ATOMIC_RELAXED);
    if (__builtin_expect(!w, 1))
        return NB_WINDOW;
    uint64_t head = __atomic_load_n(&c->tx.ctl->head, __ATOMIC_RELAXED);   /* ours */
    if (head - __atomic_load_n(&c->tx.ctl->tail, __ATOMIC_ACQUIRE) > NB_WINDOW / 2)
        return w == WINDOW_WHOLE ? 0 : w;   /* (a scribbled tail too: the write finds it) */
    __atomic_store_n(&c->window_size, 0, __ATOMIC_RELAXED);
    return NB_WINDOW;
}

/* The window: 0 (the whole capacity) also where the ring paces not. */
static uint64_t nb_window(struct lf_conn *c)
{
    return ring_pace(&c->tx) ? window_now(c) : 0;
}

/* Room was found under the window: its clock stops. */
static void window_room(struct lf_conn *c)
{
    if (__atomic_load_n(&c->window_since, __ATOMIC_RELAXED))
        __atomic_store_n(&c->window_since, 0, __ATOMIC_RELAXED);
}

/* The window was found closed (a refusal, or a look): 1 when it grew now
 * (the reader having taken nothing since the clock started, for
 * WINDOW_IDLE_NS) or is the whole capacity already; otherwise the clock
 * starts (again, if the reader moved). */
static int window_closed(struct lf_conn *c)
{
    uint64_t w = __atomic_load_n(&c->window_size, __ATOMIC_RELAXED);
    if (w == WINDOW_WHOLE)
        return 1;
    uint64_t tail = __atomic_load_n(&c->tx.ctl->tail, __ATOMIC_RELAXED), now = monotonic_ns();
    uint64_t since = __atomic_load_n(&c->window_since, __ATOMIC_RELAXED);
    if (!since || tail != __atomic_load_n(&c->window_tail, __ATOMIC_RELAXED)) {
        __atomic_store_n(&c->window_tail, tail, __ATOMIC_RELAXED);
        __atomic_store_n(&c->window_since, now, __ATOMIC_RELAXED);
        return 0;
    }
    if (now - since < WINDOW_IDLE_NS)
        return 0;
    /* (past what is in flight: a writer that may wait may have put more) */
    uint64_t head = __atomic_load_n(&c->tx.ctl->head, __ATOMIC_RELAXED);
    w = 2 * (w ? w : NB_WINDOW);
    while (w <= head - tail && w <= RING_PACE)
        w *= 2;
    __atomic_store_n(&c->window_size, w > RING_PACE ? WINDOW_WHOLE : w, __ATOMIC_RELAXED);
    __atomic_store_n(&c->window_since, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->out_nudges, 1, __ATOMIC_RELAXED);   /* an edge for EPOLLET */
    return 1;
}

/* While the clock runs: ms to its end; 0 when it is due or stopped now, so
 * that the caller looks again (the window grew, or has room, whoever waits
 * and for what); -1 when no clock runs. */
static int window_clock_ms(struct lf_conn *c)
{
    uint64_t since = __atomic_load_n(&c->window_since, __ATOMIC_RELAXED);
    if (__builtin_expect(!since, 1))
        return -1;
    uint64_t now = monotonic_ns();
    if (now - since < WINDOW_IDLE_NS)
        return (int)((since + WINDOW_IDLE_NS - now + 999999) / 1000000);
    if (ring_poll_writable_upto(&c->tx, nb_window(c)) != 0) {
        window_room(c);
        return 0;
    }
    return window_closed(c) ? 0 : (int)(WINDOW_IDLE_NS / 1000000);
}

/* A writer that must not wait keeps to the window, and readiness says
 * writable by it until a writer that may wait writes (window_writer): one
 * that polls before it writes (socat) keeps to the kernel's rule on the
 * whole capacity.  So does a call that offers RING_PACE or more at once:
 * such a writer pays for each call by what it offers, not by what is
 * taken (Java NIO copies a heap buffer's whole remainder to a direct one
 * for every write: 50 MB to 10 clients took 3x the kernel's time in
 * 256 KiB calls), and kernel TCP takes megabytes a call. */
static void pace_start(struct pace *p, struct lf_conn *c, struct lf_sock *s, int flags,
                       size_t want)
{
    p->limit = ring_pace(&c->tx);
    p->tail = p->until = 0;
    int must_not_wait = (flags & MSG_DONTWAIT) ||
                        __atomic_load_n(&s->nonblock_seen, __ATOMIC_RELAXED) == 1;
    p->window = p->limit && must_not_wait && want < RING_PACE;
    if (p->limit && __atomic_load_n(&c->window_writer, __ATOMIC_RELAXED) != p->window)
        __atomic_store_n(&c->window_writer, p->window, __ATOMIC_RELAXED);
    if (p->window)
        p->limit = nb_window(c);
    else if (must_not_wait)
        p->limit = 0;
}

/* A writer that must not wait found no room under its limit: the window's,
 * or the pace's when its flag was learnt only now.  1 when the limit grew
 * (the window's growth, or a big offer's whole capacity) and the call goes
 * on; 0 when it is refused. */
static int window_refusal(struct lf_conn *c, struct pace *p, size_t want)
{
    if (want >= RING_PACE) {   /* a big offer keeps no window (pace_start) */
        p->limit = 0;
        return 1;
    }
    if (!p->window)
        __atomic_store_n(&c->window_writer, 1, __ATOMIC_RELAXED);
    int clock_ran = __atomic_load_n(&c->window_since, __ATOMIC_RELAXED) != 0;
    if (window_closed(c)) {
        p->limit = nb_window(c);
        return 1;
    }
    /* an idle epoll record (woken by doorbells alone) looks once, and stays
     * active while the clock runs: the growth's edge */
    if (!clock_ran && __atomic_load_n(&c->ep_idle, __ATOMIC_SEQ_CST))
        epoll_poke();
    return 0;
}

/* The writer is about to wait at its pace: does it stop pacing instead? */
static int pace_ends(struct pace *p, struct lf_conn *c)
{
    uint64_t tail = __atomic_load_n(&c->tx.ctl->tail, __ATOMIC_RELAXED), now = monotonic_ns();
    if (!p->until || tail != p->tail) {
        p->tail = tail;
        p->until = now + PACE_IDLE_NS;
        return 0;
    }
    return now >= p->until;
}

/* How long a paced wait may sleep: until its call's deadline, and no longer
 * than the pace's. */
static int pace_sleep_ms(const struct pace *p, int ms)
{
    if (!p->limit)
        return ms;
    uint64_t now = monotonic_ns();
    int left = now >= p->until ? 0 : (int)((p->until - now + 999999) / 1000000);
    return timeout_min(ms, left);
}

/* What tx_ring puts on the ring: the program's buffers, or (msg NULL) a
 * file's bytes read straight into the ring (sendfile). */
struct tx_source {
    const struct msghdr *msg;
    int file_fd;
    off_t file_pos;
    size_t file_len;
};

static ssize_t tx_ring(struct lf_sock *s, struct lf_conn *c, int fd, const struct tx_source *src,
                       int flags, struct dir_hold *hold)
{
    struct iovec iov[MAX_IOV];
    const struct msghdr *msg = src->msg;
    size_t want = msg ? iov_total(msg->msg_iov, msg->msg_iovlen) : src->file_len, done = 0;
    int timeout = -2;
    uint64_t deadline = 0;
    struct lf_caught call;
    struct pace pace;
    if (!want)
        return tx_nothing(c, fd, msg, flags);
    caught_now(&call);
    pace_start(&pace, c, s, flags, want);
    /* Writable, said a poll: the write must not wait while there is room,
     * as the kernel's does not, paced or not (socat polls a blocking socket
     * before each 8 KiB; waiting PACE_IDLE_NS for a reader that was itself
     * blocked on socat's reading made 10 echoes through tcpserver's `cat`
     * 4x slower than the kernel); the poll said so by the window of one
     * that must not wait, which has room then */
    if (__atomic_load_n(&c->out_told, __ATOMIC_RELAXED)) {
        __atomic_store_n(&c->out_told, 0, __ATOMIC_RELAXED);
        if (!pace.window)
            pace.limit = 0;
    }
    while (done < want) {
        if (c->broken)
            return done ? (ssize_t)done : -ECONNRESET;
        if (load32(&my_side(c)->shut_wr))
            return done ? (ssize_t)done : tx_after_shutdown(c, fd, flags);
        struct msghdr rest = msg ? msg_skip(msg, done, iov) : (struct msghdr){ 0 };
        if (my_tx(c) == TX_BACK)   /* while this call waited for room (sock_tx_back) */
            return msg ? tx_rest_back(c, fd, &rest, flags, done) : done ? (ssize_t)done : CONN_DECLINED;
        /* (with bytes written, no system call: the peer's close or
         * refusal in shared memory ends a write that waits for room) */
        if (peer_left(c, fd, done ? 0 : tcp_events(c, fd, 0))) {
            if (!msg)
                return tx_file_gone(c, fd, done);
            return done ? tx_rest_gone(c, fd, &rest, flags, done) : tx_gone(c, fd, msg, flags);
        }
        int err = 0;
        ssize_t n = msg ? ring_writev_upto(&c->tx, iov, (int)rest.msg_iovlen, pace.limit)
                        : ring_write_file(&c->tx, src->file_fd, src->file_pos + (off_t)done,
                                          want - done, pace.limit, &err);
        if (n == RING_SOURCE_END)   /* the file gave nothing more: its end (0), or pread's error */
            return done ? (ssize_t)done : -err;
        if (n < 0)
            return c->broken = 1, done ? (ssize_t)done : -ECONNRESET;
        if (n > 0) {
            done += (size_t)n;
            tx_wrote(c, n);
            if (pace.window && pace.limit)
                window_room(c);
            continue;
        }
        int dontwait = must_not_wait(s, c, fd, flags, 1, pace.limit ? pace.limit : 1, 1);
        if (dontwait < 0)
            continue;
        if (!dontwait && timeout == -2) {
            timeout = sock_timeout(s, fd, SO_SNDTIMEO);
            deadline = timeout < 0 ? 0 : monotonic_ns() + (uint64_t)timeout * 1000000;
        }
        if (pace.limit && dontwait) {
            if (window_refusal(c, &pace, want))
                continue;
        } else if (pace.limit && (deadline || pace_ends(&pace, c))) {
            /* (a writer with a send timeout does not pace: its time might
             * run out where the kernel would have taken the bytes) */
            pace.limit = 0;   /* the rest of the capacity, now */
            continue;
        }
        if (dontwait && done)
            return (ssize_t)done;
        if (dontwait && peer_left(c, fd, tcp_events(c, fd, 1)))   /* before saying EAGAIN */
            return msg ? tx_gone(c, fd, msg, flags) : CONN_DECLINED;
        if (dontwait)
            return -EAGAIN;
        short tev;
        dir_unlock(c, DIR_TX, *hold);   /* others may write meanwhile, as to the kernel */
        int w = wait_in_call(s, &fd, 1, pace.limit ? pace.limit : 1,
                             pace_sleep_ms(&pace, sleep_ms(c, deadline)), &call, !deadline, &tev);
        *hold = dir_lock(c, DIR_TX, -1, 0);
        if (w == -EINTR && pace.limit) {   /* the kernel would not have waited: no EINTR */
            pace.limit = 0;
            continue;
        }
        if (w < 0 && w != -EAGAIN)
            return done ? (ssize_t)done : w;
        if (peer_left(c, fd, tev))
            return !msg ? tx_file_gone(c, fd, done) : done ? (ssize_t)done : tx_gone(c, fd, msg, flags);
        if (w == -EAGAIN && deadline && monotonic_ns() >= deadline)
            return done ? (ssize_t)done : -EAGAIN;
    }
    return (ssize_t)done;
}

ssize_t conn_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    struct lf_conn *c = s->conn;
    struct lf_side *me = my_side(c);
    ssize_t r;
    server_uses(s, c, 1);
    struct dir_hold hold = dir_lock(c, DIR_TX, fd, flags);
    if (hold.refused)
        return -EAGAIN;
    tx_maybe_switch(c, s, fd);
    uint32_t state = load32(&me->tx_state);
    if (state != TX_RING) {
        /* The peer does not read rings yet: TCP, counted; or back on TCP. */
        r = lf_confined ? sandbox_send(fd, msg, flags) : libc.sendmsg(fd, msg, flags);
        if (r > 0 && state == TX_TCP)
            store64(&me->tx_tcp_bytes, load64(&me->tx_tcp_bytes) + (uint64_t)r);
        else if (r < 0)
            r = kernel_send_error(c, -errno, flags);
    } else {
        struct tx_source src = { .msg = msg };
        r = tx_ring(s, c, fd, &src, flags, &hold);
        if (r > 0)
            tx_counted(c);
    }
    dir_unlock(c, DIR_TX, hold);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* sendfile() to a fast socket whose writes are on the ring: the file's
 * bytes read into the ring at once (nginx serving big files to fast clients
 * spent half its time in the second copy through a buffer).  Bytes sent,
 * -errno, or CONN_DECLINED: nothing was done, and the buffered copy
 * answers (a direction not switched yet, a peer gone: what TCP says). */
ssize_t conn_send_file(struct lf_sock *s, int fd, int in_fd, off_t pos, size_t count)
{
    struct lf_conn *c = s->conn;
    struct dir_hold hold = dir_lock(c, DIR_TX, fd, 0);
    if (hold.refused)
        return -EAGAIN;
    ssize_t r = CONN_DECLINED;
    if (my_tx(c) == TX_RING) {
        struct tx_source src = { .file_fd = in_fd, .file_pos = pos, .file_len = count };
        r = tx_ring(s, c, fd, &src, 0, &hold);
        if (r > 0)
            tx_counted(c);
    }
    dir_unlock(c, DIR_TX, hold);
    return r;
}

/* The short path keeps to the window of a call that must not wait (as
 * last seen), to the pace otherwise (0); past it, tx_ring decides.  (A
 * ring that paces not keeps no window: ring_write_whole looks at that.) */
static inline __attribute__((always_inline)) uint64_t quick_window(struct lf_sock *s,
                                                                   struct lf_conn *c, int flags)
{
    return (flags & MSG_DONTWAIT) || __atomic_load_n(&s->nonblock_seen, __ATOMIC_RELAXED) == 1
               ? window_now(c) : 0;
}

/* One buffer (write, send) of a fast socket that the ring takes whole now,
 * on a switched direction with nothing to ask TCP: no msghdr, no wait, no
 * loop, one frame (ring_inline.h).  A 64 B
 * writer spent most of its time in the stores of conn_send's general path
 * (frames, msghdr and iovec copies), each queued behind the ring head's
 * store, whose line the spinning reader holds (docs/performance.md).
 * CONN_DECLINED when this is not that case: nothing was done, and
 * conn_send answers. */
ssize_t conn_write_fast(struct lf_sock *s, const void *buf, size_t len, int flags)
{
    if (sock_kind(s) != LF_FAST || (flags & (MSG_OOB | MSG_ZEROCOPY)))
        return CONN_DECLINED;
    struct lf_conn *c = s->conn;
    struct lf_side *me = my_side(c);
    struct dir_hold hold = dir_lock_copy(c, DIR_TX);
    if (hold.refused)
        return CONN_DECLINED;
    ssize_t r = CONN_DECLINED;
    /* (a TCP look that is due is conn_send's: its answer must not be lost) */
    if (len && load32(&me->tx_state) == TX_RING && !load32(&me->shut_wr) && !c->broken &&
        peer_plainly_here(c) && tcp_look_not_due(c) &&
        ring_write_whole_inline(&c->tx, buf, len, quick_window(s, c, flags)) > 0) {
        tx_wrote(c, (ssize_t)len);
        tx_counted(c);
        r = (ssize_t)len;
    }
    dir_unlock(c, DIR_TX, hold);
    return r;
}

/* ---- shutdown and close ---- */

int conn_shut_rd(struct lf_conn *c)
{
    return load32(&my_side(c)->shut_rd) != 0;
}

/* Our own state changed: our own waiters (other threads, other holders of
 * this end) look again, as the kernel wakes a socket's waiters at its
 * shutdown(); the doorbell's news bit sends our epoll sets to this slot. */
void conn_wake_own(struct lf_conn *c)
{
    ring_side(c, c->me, conn_bell_mine(c));
    /* and our futex sleepers (named ones hear that doorbell: wait.c): the
     * state stored before the flags are read, as a sleeper arms before it
     * looks; the flags are left for the peer, which may still owe them a
     * wake */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (load32(&c->rx.ctl->reader_armed) & RING_ARM_FUTEX)
        futex_wake_all(&c->rx.ctl->reader_wake);
    if (load32(&c->tx.ctl->writer_armed) & RING_ARM_FUTEX)
        futex_wake_all(&c->tx.ctl->writer_wake);
}

/* Both directions shut: Linux answers the peer's later bytes with a reset
 * (its socket in FIN_WAIT with reading shut), so the peer's next call fails
 * instead of filling a buffer nobody reads (a ring writer used to block for
 * good).  The flag goes first, so that a peer that sees our FIN sees why
 * (not a close: it owes no reset for bytes of its we left unread); then our
 * TCP socket is shut down for real, the peer writes on TCP from now on
 * (peer_left) and the kernel resets it.  Bytes it put on the ring before it
 * saw the flag are read as any others (a race the kernel has too). */
static int refuse_rx(struct lf_conn *c, int fd)
{
    uint32_t no = 0;
    if (!__atomic_compare_exchange_n(&my_side(c)->rx_refused, &no, 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return 0;
    libc.shutdown(fd, SHUT_RDWR);
    conn_ring_bell(c);   /* a writer waiting for room */
    return 1;
}

/* Both ends shut their writing down (on the rings or on TCP, where a
 * peer that shut down before its switch tells only TCP): the connection is
 * closed, as kernel TCP's (conn_tcp_state), where a shutdown() says
 * ENOTCONN. */
static int both_ends_shut(struct lf_conn *c, int fd)
{
    if (!load32(&my_side(c)->shut_wr))
        return 0;
    return peer_ended(c) || __atomic_load_n(&c->peer_gone, __ATOMIC_ACQUIRE) ||
           tcp_info_state(fd) == TCP_CLOSE;
}

/* getpeername(): a connection both ends shut down is closed, as the
 * kernel's, which says ENOTCONN; ours stayed ESTABLISHED, the FINs having
 * gone on the rings (fuzzer seeds 273, 436, 706). */
int conn_closed(struct lf_conn *c, int fd)
{
    return both_ends_shut(c, fd);
}

/* A server end shut both ways before its client took the answer stays
 * the kernel's: nothing more moves on it, and the kernel resets the
 * client's later bytes, which a switch would put on the ring (fuzzer seed
 * 649; a client so shut refuses the server's bytes at its switch:
 * handshake.c, become_fast). */
static void plain_if_both_shut(struct lf_sock *s, struct lf_conn *c, int how)
{
    if ((how == SHUT_WR && !conn_shut_rd(c)) || (how == SHUT_RD && !load32(&my_side(c)->shut_wr)))
        return;
    lf_lock(&s->lock);
    handshake_hand_off(c);   /* (revokes an answer not taken; else nothing) */
    lf_unlock(&s->lock);
}

int conn_shutdown(struct lf_sock *s, int fd, int how)
{
    struct lf_conn *c = s->conn;
    int r = 0;
    plain_if_both_shut(s, c, how);
    /* Once the peer's end is gone the kernel's socket answers for the
     * connection (section 7): after a reset, ENOTCONN, also after one
     * recorded here (the kernel saw only a FIN). */
    int kernels = c->broken || peer_left(c, fd, 0);
    if (kernels && load32(&my_side(c)->reset))
        return errno = ENOTCONN, -1;
    int closed = both_ends_shut(c, fd);   /* (the kernel's marks its shutdown still) */
    int set_wr = kernels && how != SHUT_RD && !load32(&my_side(c)->shut_wr);
    if (set_wr)
        store32(&my_side(c)->shut_wr, 1);   /* before TCP's FIN: a shutdown, no close */
    if (kernels && libc.shutdown(fd, how) < 0 && !closed) {
        if (set_wr)   /* no FIN went (a reset closed TCP): the peer's reset stays ECONNRESET */
            store32(&my_side(c)->shut_wr, 0);
        return -1;
    }
    if (closed)
        r = -1, errno = ENOTCONN;
    /* SHUT_RD stays off the kernel's socket (its shutdown would make our
     * TCP socket look like the peer's FIN), in our line for every holder. */
    if (how == SHUT_RD || how == SHUT_RDWR)
        store32(&my_side(c)->shut_rd, 1);
    /* (TCP was shut above) with both our directions shut, the peer finds
     * our refusal, and does not take our TCP socket's end for a death that
     * owes it a reset for its bytes unread (poll said POLLERR, SO_ERROR
     * EPIPE, after both ends' shutdown).  A SHUT_RD alone is no refusal:
     * the peer took it for our end, CLOSE where Linux's stays FIN_WAIT2. */
    if (kernels && conn_shut_rd(c) && load32(&my_side(c)->shut_wr))
        store32(&my_side(c)->rx_refused, 1);
    /* Refused before our FIN is on the ring: a peer that answers our end
     * of stream with bytes (the kernel resets it for them) must find the
     * refusal then, or its bytes went on the ring and were read as data
     * (tests/shutdown_answered.c). */
    int tcp_shut = 0;   /* by the refusal, both ways: a SHUT_WR after it finds TCP closed */
    if (!kernels && conn_shut_rd(c) && (how != SHUT_RD || load32(&my_side(c)->shut_wr)))
        tcp_shut = refuse_rx(c, fd);
    if (how == SHUT_WR || how == SHUT_RDWR) {
        lf_lock(&c->tx_lock);
        quick_locked(&c->bias[DIR_TX], 0);
        tx_maybe_switch(c, s, fd);
        int on_ring = my_tx(c) == TX_RING;
        store32(&my_side(c)->shut_wr, 1);   /* on TCP: it never switches now */
        if (on_ring)
            conn_ring_bell(c);
        lf_unlock(&c->tx_lock);
        if (!on_ring && !kernels && !tcp_shut && libc.shutdown(fd, SHUT_WR) < 0)
            r = -1;
    }
    conn_wake_own(c);
    return r;
}

/* SO_LINGER with a time: as Linux waits for the ACK of its FIN, close()
 * waits until the peer's kernel would have taken our bytes (the ring's
 * unread ones down to what its receive buffer holds), the peer is gone, a
 * handler runs, or the time is up.  A Java setSoLinger(true, 3) returned at
 * once with 1 MB unread, where the kernel's waited the 1.5 s its reader
 * slept.  Naps, not a sleep on the ring's words: a rare wait, and one
 * whose end may come a little late. */
static void linger_wait(struct lf_conn *c, int fd, int seconds)
{
    uint64_t deadline = monotonic_ns() + (uint64_t)seconds * 1000000000ull;
    uint64_t holds = bufsize_reader_holds(&c->tx);
    struct lf_side *peer = peer_side(c);
    int e = errno;
    for (long nap_us = 200;; nap_us = nap_us < 20000 ? nap_us * 2 : nap_us) {
        ssize_t n = ring_readable(&c->tx);
        if (n < 0 || (uint64_t)n <= holds || load32(&peer->closed) || load32(&peer->rx_refused) ||
            monotonic_ns() >= deadline || (poll_now(fd, 0) & (POLLERR | POLLHUP)))
            break;
        struct timespec t = { 0, nap_us * 1000 };
        if (nanosleep(&t, NULL) < 0 && errno == EINTR)
            break;
    }
    errno = e;
}

/* Bytes the peer sent that we never read, in the ring or still on TCP. */
static int unread(struct lf_conn *c, int fd)
{
    int queued = 0;
    if (ring_readable(&c->rx) != 0)
        return 1;
    return my_rx(c) != RX_RING && libc.ioctl(fd, SIOCINQ, &queued) == 0 && queued > 0;
}

/* ---- holders that died without letting go ----
 *
 * A process that holds an end (forked, spawned, the shell of system() or
 * popen()) and exits without closing it never gives back its count nor
 * its part of the slot's lease: the connection then never says `closed`
 * (its peer waits for the kernel's FIN) and its slot and pages stay taken
 * until the region goes.  So each such process is listed in the end's
 * line (as room allows), and whoever lets go next gives back the parts of
 * those that are gone.  A listed pid is only a hint: a peer that writes
 * one there makes us give back a part of its own connection. */

void conn_holder_note(struct lf_conn *c, pid_t pid)
{
    int32_t *list = my_side(c)->holder_pid;
    for (int i = 0; i < LF_HOLDER_PIDS && pid > 0; i++)
        if (__atomic_compare_exchange_n(&list[i], &(int32_t){ 0 }, pid, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return;
}

/* pid lets go properly (or was never started): it leaves the list. */
void conn_holder_forget(struct lf_conn *c, pid_t pid)
{
    int32_t *list = my_side(c)->holder_pid;
    for (int i = 0; i < LF_HOLDER_PIDS && pid > 0; i++)
        if (__atomic_compare_exchange_n(&list[i], &(int32_t){ pid }, 0, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return;
}

/* Gives back the parts of listed holders that no longer exist; what
 * `holders` is then. */
static uint32_t holders_reap(struct lf_conn *c, uint32_t left)
{
    int32_t *list = my_side(c)->holder_pid;
    for (int i = 0; i < LF_HOLDER_PIDS && left > 0 && !lf_confined; i++) {
        int32_t p = __atomic_load_n(&list[i], __ATOMIC_ACQUIRE);
        if (p <= 0 || p == lf_pid || kill(p, 0) == 0 || errno != ESRCH ||
            !__atomic_compare_exchange_n(&list[i], &p, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        left = __atomic_sub_fetch(&my_side(c)->holders, 1, __ATOMIC_ACQ_REL);
        link_give_back(c);
    }
    return left;
}

/* The last descriptor in this process goes: if no other process holds the
 * connection, tell the peer (unless SO_LINGER 0 asks for a reset: then only
 * the kernel's RST speaks).  A peer that has closed already hears nothing,
 * so its end spares us asking for SO_LINGER; nor does a client that never
 * took our answer (a short connection): revoked now, it never will, and
 * both directions are the kernel's alone. */
void conn_close(struct lf_sock *s, int fd)
{
    struct lf_conn *c = s->conn;
    struct lf_side *me = my_side(c);
    conn_holder_forget(c, lf_pid);
    uint32_t left = __atomic_sub_fetch(&me->holders, 1, __ATOMIC_ACQ_REL);
    if (left > 0 && __atomic_load_n(&c->shared_end, __ATOMIC_RELAXED))
        left = holders_reap(c, left);
    if (left == 0 && !handshake_unanswered(c) && !load32(&peer_side(c)->closed)) {
        int linger = sock_linger(s, fd), lingers = linger == 0;
        /* (not a connection both ends shut down: the kernel's is closed
         * then, and its close sends no reset) */
        if ((lingers || unread(c, fd)) && !both_ends_shut(c, fd)) {
            store32(&me->kernel_resets, 1);
            /* The kernel resets a connection closed with unread bytes; ours
             * are in the ring, so ask it to: SO_LINGER 0 makes the real
             * close() send the RST, and the peer hears the kernel's reset. */
            struct linger l = { .l_onoff = 1, .l_linger = 0 };
            if (!lingers)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            conn_ring_bell(c);   /* its sleepers wait on TCP for the reset (wait.c) */
            return;
        }
        /* SO_LINGER 0 once both ends shut down: the kernel's connection
         * is closed (LAST_ACK, CLOSING, TIME_WAIT) and its close sends no
         * reset; ours is open, its FINs having gone on the rings, and the
         * real close reset the peer (POLLERR, SO_ERROR EPIPE) */
        if (lingers)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 0 }, sizeof(struct linger));
        store32(&me->closed, 1);
        conn_ring_bell(c);
        if (linger > 0)
            linger_wait(c, fd, linger);
    }
}

/* ---- readiness ---- */

/* Has the peer switched, and were all its bytes from before read?  Then the
 * ring alone decides, as the next read would find: noted here too, so that
 * an idle connection in an event loop costs no system call per wait. */
int conn_rx_settled(struct lf_conn *c)
{
    struct lf_side *me = my_side(c), *peer = peer_side(c);
    uint32_t state = my_rx(c);
    if (state == RX_TCP && load32(&peer->tx_state) != TX_TCP &&
        load64(&me->rx_tcp_bytes) == load64(&peer->tx_tcp_bytes) && rx_move(c, RX_TCP, RX_RING))
        conn_note_cpu(c, 0);   /* the peer's, published before its switch (wait.c) */
    if (my_rx(c) != RX_RING)
        return 0;
    return peer_tx(c) != TX_BACK || !rx_went_back(c);
}

/* The kernel's socket stays ESTABLISHED when the FINs go on the rings;
 * over kernel TCP, our shutdown(SHUT_WR) makes it FIN_WAIT2, the peer's
 * CLOSE_WAIT, both CLOSE.  lighttpd, on POLLRDHUP, keeps a client that
 * only half-closed (CLOSE_WAIT) and closes one that is gone: it cut its
 * replies to half-closing clients short, or sent none.  A FIN that went on
 * TCP is the kernel's to tell, and any later state its own. */
int conn_tcp_state(struct lf_conn *c, int kernel)
{
    int ours = load32(&my_side(c)->shut_wr) != 0;
    int peers = peer_ended(c) || __atomic_load_n(&c->peer_gone, __ATOMIC_ACQUIRE);
    switch (kernel) {
    case TCP_ESTABLISHED:
        break;
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
        ours = 1;
        break;
    case TCP_CLOSE_WAIT:
        peers = 1;
        break;
    default:
        return kernel;
    }
    if (ours && peers)
        return TCP_CLOSE;
    if (ours)
        return kernel == TCP_FIN_WAIT1 ? TCP_FIN_WAIT1 : TCP_FIN_WAIT2;
    return peers ? TCP_CLOSE_WAIT : kernel;
}

/* While the peer's bytes come on TCP (before its switch, or bytes from
 * before it unread), a read returns only what TCP has: its data, or its FIN
 * or reset once they came (`tev`: what TCP reported, 0 when not asked).
 * Shared memory cannot say more: the peer sets `closed` before its close()
 * sends the FIN. */
static int rx_tcp_readable(struct lf_conn *c, short tev)
{
    return (tev & (POLLIN | POLLHUP | POLLERR)) || __atomic_load_n(&c->tcp_ended, __ATOMIC_RELAXED);
}

static int rx_tcp_hup(struct lf_conn *c, short tev)
{
    return (tev & (POLLRDHUP | POLLHUP | POLLERR)) || __atomic_load_n(&c->tcp_ended, __ATOMIC_RELAXED);
}

/* Bytes unread on TCP (before the peer's switch) and on the ring after
 * them: SO_RCVLOWAT counts both, as the kernel counts its one queue (TCP's
 * POLLIN, asked of its part alone, said no: 64 bytes there and 222 on the
 * ring, against a mark of 189). */
static int split_bytes_reach(struct lf_conn *c, int fd, size_t lowat)
{
    int queued = 0;
    ssize_t ring = ring_readable(&c->rx);
    return lowat > 1 && ring > 0 && !lf_confined && libc.ioctl(fd, SIOCINQ, &queued) == 0 &&
           (size_t)queued + (size_t)ring >= lowat;
}

static short poll_in(struct lf_conn *c, int fd, short tev, size_t lowat)
{
    struct lf_side *me = my_side(c);
    int dead = (tev & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) != 0;
    if (c->broken || conn_shut_rd(c))
        return POLLIN;
    if (load32(&me->rx_state) != RX_RING) {
        if (rx_tcp_readable(c, tev))
            return POLLIN;   /* pre-switch data, or EOF */
        /* below SO_RCVLOWAT: readable once the peer ended on its ring, as
         * the kernel's after a FIN (a read takes them, then EOF) */
        if (!conn_rx_settled(c))
            return split_bytes_reach(c, fd, lowat) || (peer_tx(c) == TX_RING && peer_ended(c))
                       ? POLLIN
                       : 0;
        dead = 0;            /* all TCP bytes consumed: the ring decides */
    }
    ssize_t n = ring_readable(&c->rx);   /* -1, corrupt: a read finds it */
    if (n == 0 && !conn_rx_settled(c))   /* the peer went back to TCP */
        return rx_tcp_readable(c, tev) ? POLLIN : 0;
    if (n < 0 || (n > 0 && (size_t)n >= lowat) || peer_ended(c) || dead)
        return POLLIN;
    return 0;
}

static short poll_out(struct lf_conn *c, int fd, short tev)
{
    uint32_t state = my_tx(c);
    if (state == TX_BACK)   /* asked now if not asked: edges were on the ring till now */
        return (tev & POLLOUT) ? POLLOUT : poll_now(fd, POLLOUT);
    int tx_on = state != TX_TCP || c->me == LF_CLIENT || load32(&peer_side(c)->ready);
    if (!tx_on)
        return tev & POLLOUT;
    /* after our SHUT_WR a write does not wait (EPIPE): writable, as TCP says */
    if (c->broken || load32(&peer_side(c)->closed) || load32(&my_side(c)->shut_wr))
        return POLLOUT;
    /* by the window of a writer that must not wait (the pace, above) */
    uint64_t window = __atomic_load_n(&c->window_writer, __ATOMIC_RELAXED) ? nb_window(c) : 0;
    if (ring_poll_writable_upto(&c->tx, window) != 0) {   /* -1, corrupt: a write finds it */
        if (window)
            window_room(c);
        return POLLOUT;
    }
    return window && window_closed(c) && ring_poll_writable_upto(&c->tx, nb_window(c)) != 0 ? POLLOUT : 0;
}

/* Once the peer's end is gone, a write does not wait (the kernel's socket
 * takes it, or fails), nor does a read on the ring (bytes, EOF or an
 * error); one on TCP waits for TCP's FIN (rx_tcp_readable).  POLLERR and
 * POLLHUP are the kernel's, or the recorded reset's. */
static short gone_events(struct lf_conn *c, short want, short tev)
{
    short r = want & (POLLOUT | POLLWRNORM);
    int settled = conn_rx_settled(c), shut_rd = conn_shut_rd(c);
    if (settled || shut_rd || rx_tcp_readable(c, tev))
        r |= want & (POLLIN | POLLRDNORM);
    if (settled || shut_rd || rx_tcp_hup(c, tev))
        r |= (want & POLLRDHUP) | (load32(&my_side(c)->shut_wr) ? POLLHUP : 0);
    r |= tev & want & POLLPRI;
    uint32_t reset = load32(&my_side(c)->reset);
    if (reset)
        return r | POLLHUP | (reset != RESET_TOLD ? POLLERR : 0);
    return r | (tev & (POLLERR | POLLHUP));
}

/* The peer ended its stream on its ring after bytes on TCP we have not
 * read: the kernel's FIN would stand behind them, reported at once.  Ours
 * counts once every one of them is in our socket's queue: a read then
 * takes them all and runs on into the ring (rx_tcp_then_ring), so a read
 * shorter than its buffer means the end, as libuv takes it with POLLRDHUP;
 * while some were still on their way, that short read lost the rest of a
 * node stream (33 of 84 KB).  Not in a sandbox: the end waits for the read. */
static int peer_ended_behind_tcp(struct lf_conn *c, int fd)
{
    if (peer_tx(c) != TX_RING || lf_confined || !peer_ended(c))
        return 0;
    uint64_t sent = load64(&peer_side(c)->tx_tcp_bytes), got = load64(&my_side(c)->rx_tcp_bytes);
    int queued = 0;
    return got <= sent && libc.ioctl(fd, SIOCINQ, &queued) == 0 && queued >= 0 &&
           (uint64_t)queued >= sent - got;
}

short conn_poll_state(struct lf_conn *c, int fd, short want, short tev)
{
    short r = 0;
    /* The peer went back to TCP now: its bytes there may have come before
     * its bell (a TCP edge taken while the ring decided) */
    if (my_rx(c) == RX_RING && peer_tx(c) == TX_BACK && !conn_rx_settled(c))
        tev |= poll_now(fd, POLLIN | POLLRDHUP);
    if (!c->broken && peer_left(c, fd, tev))
        return gone_events(c, want, tev) |
               (__atomic_load_n(&c->zc_pending, __ATOMIC_ACQUIRE) ? POLLERR : 0);
    if (want & (POLLIN | POLLRDNORM))
        r |= poll_in(c, fd, tev, conn_rcvlowat(c, fd)) ? (want & (POLLIN | POLLRDNORM)) : 0;
    if ((want & (POLLOUT | POLLWRNORM)) && poll_out(c, fd, tev)) {
        r |= want & (POLLOUT | POLLWRNORM);
        if (!__atomic_load_n(&c->out_told, __ATOMIC_RELAXED))
            __atomic_store_n(&c->out_told, 1, __ATOMIC_RELAXED);   /* the next write: no pace */
    }
    /* Reading is shut (the kernel's RCV_SHUTDOWN) by our SHUT_RD or by the
     * peer's end of its stream; with writing shut too, that is POLLHUP. */
    if (conn_shut_rd(c) || rx_tcp_hup(c, tev) ||
        (my_rx(c) == RX_RING && peer_tx(c) != TX_BACK && peer_ended(c)) ||
        (my_rx(c) != RX_RING && peer_ended_behind_tcp(c, fd)))
        r |= (want & POLLRDHUP) | (load32(&my_side(c)->shut_wr) ? POLLHUP : 0);
    r |= tev & (POLLHUP | POLLERR | (want & POLLPRI));   /* urgent data is TCP's */
    if (c->broken || __atomic_load_n(&c->zc_pending, __ATOMIC_ACQUIRE))
        r |= POLLERR;
    return r;
}

/* Our writes go to TCP: a server's before its client reads rings, or back. */
static int tx_on_tcp(struct lf_conn *c)
{
    uint32_t state = my_tx(c);
    return state == TX_BACK || (c->me == LF_SERVER && state == TX_TCP && !load32(&peer_side(c)->ready));
}

/* What the TCP socket must be asked when a poller waits on this connection. */
short conn_kernel_events(struct lf_conn *c, short want)
{
    /* pre-switch data, or the peer's end; an unclear FIN is not asked again
     * (it would wake every poll at once): conn_recheck_ms looks into it */
    short ev = __atomic_load_n(&c->fin_unclear, __ATOMIC_RELAXED) ? 0 : POLLIN | POLLRDHUP;
    if ((want & (POLLOUT | POLLWRNORM)) && tx_on_tcp(c))
        ev |= POLLOUT;
    if (urgent_on_tcp(c, want))
        ev |= POLLPRI;
    return ev;
}

/* After the flags are stored: 1 when this arm must be followed by a
 * membarrier (our side promises, or withdraws its promise now: the
 * membarrier reaches publishers that skipped their fence, barrier.c). */
static int promise_after_arm(uint32_t *promise, int withdraw)
{
    if (withdraw) {
        __atomic_store_n(promise, 0, __ATOMIC_SEQ_CST);
        return 1;
    }
    return __atomic_load_n(promise, __ATOMIC_SEQ_CST) != 0;
}

int conn_arm_flag(struct lf_conn *c, uint32_t *flag, uint32_t how)
{
    uint32_t *promise = &my_side(c)->arms_with_mb;
    int withdraw = promise_before_arm(c, promise);
    ring_arm(flag, how);
    return promise_after_arm(promise, withdraw);
}

int conn_arm(struct lf_conn *c, short want)
{
    uint32_t *promise = &my_side(c)->arms_with_mb;
    int withdraw = promise_before_arm(c, promise);
    if (want & (POLLIN | POLLRDNORM | POLLRDHUP))
        ring_arm(&c->rx.ctl->reader_armed, RING_ARM_BELL);
    if (want & (POLLOUT | POLLWRNORM))
        ring_arm(&c->tx.ctl->writer_armed, RING_ARM_BELL);
    return promise_after_arm(promise, withdraw);
}

int conn_plain(struct lf_conn *c)
{
    struct lf_side *me = my_side(c);
    return peer_plainly_here(c) && !load32(&me->shut_wr) && !load32(&me->shut_rd) &&
           !load32(&me->rx_refused) && !load32(&me->reset) && !load32(&peer_side(c)->shut_wr) &&
           !c->broken && !__atomic_load_n(&c->tcp_ended, __ATOMIC_RELAXED) &&
           my_tx(c) != TX_BACK && my_rx(c) != RX_BACK;
}

/* What an edge-triggered poller compares between reports: any new data or
 * state changes these. */
void conn_signature(struct lf_conn *c, uint64_t *in, uint64_t *out)
{
    struct lf_side *peer = peer_side(c);
    uint64_t flags = (uint64_t)load32(&peer->shut_wr) << 63 | (uint64_t)load32(&peer->closed) << 62 |
                     (uint64_t)(load32(&peer->tx_state) & 3) << 60 | (uint64_t)conn_shut_rd(c) << 59 |
                     (uint64_t)load32(&my_side(c)->shut_wr) << 58 | (uint64_t)(my_tx(c) & 3) << 56 |
                     (uint64_t)(my_rx(c) & 3) << 54;
    *in = (__atomic_load_n(&c->rx.ctl->head, __ATOMIC_ACQUIRE) + load64(&my_side(c)->rx_tcp_bytes)) ^ flags;
    /* (tail and nudges only grow: their sum changes when either does) */
    *out = (__atomic_load_n(&c->tx.ctl->tail, __ATOMIC_ACQUIRE) +
            ((uint64_t)__atomic_load_n(&c->out_nudges, __ATOMIC_RELAXED) << 32)) ^ flags;
}

/* A non-blocking sendfile's turn ends in EAGAIN though the ring has room
 * (sendfile.c): only when poll would say writable now, so that the wait
 * the program makes next returns at once; an edge for EPOLLET, and every
 * set looks at its idle records once. */
int conn_turn_refuse(struct lf_conn *c, int fd)
{
    /* (a peer gone, a reset: the call tells it now) */
    if (!conn_plain(c) || !(conn_poll_state(c, fd, POLLOUT, 0) & POLLOUT))
        return 0;
    __atomic_add_fetch(&c->out_nudges, 1, __ATOMIC_RELAXED);
    epoll_poke();
    return 1;
}

/* Does a level-triggered answer for `want` need the kernel's word on TCP? */
int conn_wants_kernel(struct lf_conn *c, short want)
{
    int rx_tcp = !conn_rx_settled(c);
    return ((want & POLLIN) && rx_tcp) || ((want & POLLOUT) && tx_on_tcp(c)) || urgent_on_tcp(c, want) ||
           __atomic_load_n(&c->peer_gone, __ATOMIC_ACQUIRE);
}
