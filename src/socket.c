/*
 * socket.c - one receive or send on a descriptor loopfast tracks, routed by
 * its kind: the kernel, the pending client, or the connection's rings.
 *
 * MSG_WAITALL and the all-or-nothing send of a blocking socket are done here,
 * once for every kind, because a connection may switch to its rings in the
 * middle of one such call; so are the flags whose meaning is not "read or
 * write these bytes" (MSG_TRUNC, MSG_PEEK|MSG_WAITALL, MSG_ERRQUEUE, MSG_OOB).
 */
#include <errno.h>

#include "internal.h"


static ssize_t recv_once(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    switch (sock_kind(s)) {
    case LF_PENDING:
        return pending_io(s, fd, msg, flags, 0);
    case LF_FAST:
        return conn_recv(s, fd, msg, flags);
    default:
        return libc.recvmsg(fd, msg, flags);
    }
}

static ssize_t send_once(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    switch (sock_kind(s)) {
    case LF_PENDING:
        return pending_io(s, fd, (struct msghdr *)msg, flags, 1);
    case LF_FAST:
        return conn_send(s, fd, msg, flags);
    default:
        return libc.sendmsg(fd, msg, flags);
    }
}

/* ---- an error met after some bytes moved ----
 * A blocking send, or a MSG_WAITALL read, that moved some bytes and then
 * met the connection's error (a reset) returns the count, and the kernel
 * keeps its error for the next call.  Ours is taken by the call that meets
 * it (the kernel's socket error is told once, so is a recorded reset):
 * python's writer, its 2 KiB sent, met the reset of a reader killed with
 * bytes unread in its next attempt, and its next send() said EPIPE (and
 * raised SIGPIPE) where Linux says ECONNRESET.  So the error is kept here
 * and told by the next call (or SO_ERROR). */
static int told_later(int e)
{
    return e == ECONNRESET || e == ETIMEDOUT || e == ECONNREFUSED || e == EHOSTUNREACH ||
           e == ENETUNREACH;
}

/* r: what the call after the first bytes returned. */
static void keep_for_later(struct lf_sock *s, ssize_t r)
{
    int none = 0;
    if (r < 0 && told_later(errno))
        __atomic_compare_exchange_n(&s->later_error, &none, errno, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
}

int sock_take_later_error(struct lf_sock *s)
{
    if (__builtin_expect(!__atomic_load_n(&s->later_error, __ATOMIC_RELAXED), 1))
        return 0;
    return __atomic_exchange_n(&s->later_error, 0, __ATOMIC_RELAXED);
}

static size_t msg_len(const struct msghdr *msg)
{
    size_t t = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        t += msg->msg_iov[i].iov_len;
    return t;
}

/* MSG_TRUNC on TCP discards up to len bytes without copying them (the
 * buffer may be NULL): here they are read into a scratch buffer instead.
 * Without MSG_WAITALL it takes what is there once the first bytes came.
 * An error met after the first bytes is the next call's, as the kernel's
 * (one tcp_recvmsg stops at it): the reset of a peer that closed with
 * bytes of ours unread was taken, and POLLERR and SO_ERROR were gone. */
static ssize_t recv_discard(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    char scratch[16384];
    size_t want = msg_len(msg), done = 0;
    int more = flags & ~MSG_TRUNC;
    if (!want)   /* nothing to discard: the read's answer alone (0, EAGAIN, an error) */
        return sock_recv(s, fd, msg, more);
    while (done < want) {
        struct iovec iov = { scratch, want - done < sizeof scratch ? want - done : sizeof scratch };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t r = sock_recv(s, fd, &m, more);
        if (r <= 0 && done)
            keep_for_later(s, r);
        if (r <= 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
        msg->msg_flags = m.msg_flags;
        msg->msg_controllen = 0;
        /* a MSG_WAITALL piece cut short met the end or an error (kept) */
        if ((flags & MSG_PEEK) || ((flags & MSG_WAITALL) && (size_t)r < iov.iov_len))
            break;
        if (!(flags & MSG_WAITALL))
            more |= MSG_DONTWAIT;
    }
    return (ssize_t)done;
}

/* The time left until a peek's SO_RCVTIMEO runs out, set at its first
 * sleep: the doorbell is the region's, so other connections' rings wake the
 * peek too, and each wake must not start the timeout again.  -1: none. */
static int peek_time_left(struct lf_sock *s, int fd, uint64_t *deadline)
{
    if (*deadline == 0) {
        int timeout = sock_timeout(s, fd, SO_RCVTIMEO);
        *deadline = timeout < 0 ? UINT64_MAX : monotonic_ns() + (uint64_t)timeout * 1000000;
    }
    if (*deadline == UINT64_MAX)
        return -1;
    uint64_t now = monotonic_ns();
    return now >= *deadline ? 0 : (int)((*deadline - now + 999999) / 1000000);
}

/* A peek that must see more than the ring holds (MSG_PEEK|MSG_WAITALL)
 * sleeps on the data doorbell until the ring holds more than `have`, the
 * peer ends, or TCP tells of its end.  0: look again; -1: the peek returns
 * what it saw, as the kernel's does on a timeout, a signal or the end. */
static int wait_more(struct lf_sock *s, int fd, int flags, size_t have, uint64_t *deadline)
{
    struct lf_conn *c = s->conn;
    const struct lf_side *peer = &c->sh->side[!c->me];
    /* after our SHUT_RD the kernel's peek waits no more (RCV_SHUTDOWN):
     * ours slept for good on bytes the peer had written */
    if (__atomic_load_n(&c->sh->side[c->me].rx_state, __ATOMIC_ACQUIRE) != RX_RING ||
        __atomic_load_n(&peer->tx_state, __ATOMIC_ACQUIRE) == TX_BACK ||
        (flags & MSG_DONTWAIT) || conn_shut_rd(c) || sock_nonblocking(s, fd))
        return -1;
    int timeout = peek_time_left(s, fd, deadline);
    if (timeout == 0)
        return -1;
    barrier_after_arm(conn_arm_flag(c, &c->rx.ctl->reader_armed, RING_ARM_BELL));
    /* the end's flags before the count: bytes written before them are in it */
    int ended = __atomic_load_n(&peer->shut_wr, __ATOMIC_ACQUIRE) ||
                __atomic_load_n(&peer->closed, __ATOMIC_ACQUIRE);
    ssize_t n = ring_readable(&c->rx);
    if (n < 0 || (size_t)n > have)
        return 0;
    if (ended)
        return -1;   /* no more will come: what it saw, as the kernel's at EOF (it spun) */
    int wfd = bell_wait_fd(c), t = timeout_min(timeout, bell_wait_cap_ms());
    struct pollfd p[2] = { { .fd = wfd, .events = POLLIN },
                           { .fd = fd, .events = POLLIN | POLLRDHUP } };
    int r;
    reap_now();
    r = poll_for_call(p, 2, t, timeout < 0);
    if (r > 0 && p[0].revents)
        bell_after_wake(c, wfd);
    if (r < 0 || p[1].revents || (r == 0 && peek_time_left(s, fd, deadline) == 0))
        return -1;   /* a signal, TCP's end or error, the program's timeout */
    return 0;
}

/* MSG_PEEK|MSG_WAITALL waits until the whole length can be peeked.  Not
 * across a direction's switch: bytes still on TCP are peeked alone. */
static ssize_t peek_all(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    size_t want = msg_len(msg);
    uint64_t deadline = 0;   /* not known before the first sleep */
    for (;;) {
        ssize_t r = recv_once(s, fd, msg, flags & ~MSG_WAITALL);
        if (r <= 0 || (size_t)r >= want)
            return r;
        if (sock_kind(s) == LF_PENDING && !(flags & MSG_DONTWAIT))
            return libc.recvmsg(fd, msg, flags);   /* nothing switches before the answer is taken */
        if (sock_kind(s) != LF_FAST || wait_more(s, fd, flags, (size_t)r, &deadline) < 0)
            return r;
    }
}

/* ---- one call's deadline across its pieces ----
 * A MSG_WAITALL read is done in pieces, each a read of its own; the
 * kernel's SO_RCVTIMEO bounds the whole call (tcp_recvmsg counts its waits
 * down), so the pieces after the first keep to the first one's time: with
 * a timeout for each, a reader of a header whose peer sent a byte now and
 * then never timed out (a slow-client defence, defeated). */
static __thread struct call_deadline {
    const struct lf_sock *s;
    uint64_t ns;
} call_deadline LF_TLS_IE;

uint64_t sock_call_deadline(const struct lf_sock *s, uint64_t own)
{
    if (__builtin_expect(call_deadline.s != s, 1) || !call_deadline.ns)
        return own;
    return own && own < call_deadline.ns ? own : call_deadline.ns;
}

/* After the first piece of a blocking MSG_WAITALL read, begun at started:
 * its deadline, 0 when none. */
static uint64_t recv_all_deadline(struct lf_sock *s, int fd, uint64_t started)
{
    int timeout = sock_timeout(s, fd, SO_RCVTIMEO);
    return timeout < 0 ? 0 : started + (uint64_t)timeout * 1000000;
}

static ssize_t recv_all(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    size_t want = msg_len(msg), done = 0;
    if (!want)   /* the kernel's wants one byte then too: EAGAIN, an error, or 0 */
        return recv_once(s, fd, msg, flags & ~MSG_WAITALL);
    uint64_t started = monotonic_ns();
    struct call_deadline outer = call_deadline;   /* a signal handler's call, then its own */
    ssize_t r = 0;
    while (done < want) {
        struct iovec iov[MAX_IOV];
        struct msghdr m = msg_skip(msg, done, iov);
        r = recv_once(s, fd, &m, flags & ~MSG_WAITALL);
        if (r <= 0 && done)
            keep_for_later(s, r);
        if (r <= 0)
            break;
        done += (size_t)r;
        if (done == (size_t)r && done < want) {
            /* One that must not wait takes what one piece finds (TCP's
             * bytes and the ring's), as the kernel's takes what is queued:
             * a second piece met the error after them and took it, kept in
             * this process alone (a forked child's read lost the reset for
             * its parent: no POLLERR, SO_ERROR 0). */
            if ((flags & MSG_DONTWAIT) || sock_nonblocking(s, fd))
                break;
            call_deadline = (struct call_deadline){ s, recv_all_deadline(s, fd, started) };
        }
    }
    call_deadline = outer;
    return done ? (ssize_t)done : r;
}

static ssize_t recv_routed(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    int kind = sock_kind(s);
    if (kind != LF_FAST && kind != LF_PENDING)
        return recv_once(s, fd, msg, flags);
    /* The error queue and urgent data belong to the kernel's socket,
     * whatever carries the stream; the ring's zerocopy notices join it. */
    if (flags & MSG_ERRQUEUE)
        return zerocopy_errqueue(s, fd, msg, flags);
    if (flags & MSG_OOB)
        return libc.recvmsg(fd, msg, flags);
    if (flags & MSG_TRUNC)
        return recv_discard(s, fd, msg, flags);
    if (flags & MSG_PEEK)
        return (flags & MSG_WAITALL) ? peek_all(s, fd, msg, flags) : recv_once(s, fd, msg, flags);
    if (!(flags & MSG_WAITALL))
        return recv_once(s, fd, msg, flags);
    return recv_all(s, fd, msg, flags);
}

/* A kept error (keep_for_later) comes after the bytes there are, as the
 * kernel's: a read that finds none, waiting for none, tells it. */
static ssize_t recv_told(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    if (__builtin_expect(!__atomic_load_n(&s->later_error, __ATOMIC_RELAXED), 1) ||
        (flags & (MSG_ERRQUEUE | MSG_OOB)))
        return recv_routed(s, fd, msg, flags);
    ssize_t r = recv_routed(s, fd, msg, (flags | MSG_DONTWAIT) & ~MSG_WAITALL);
    if (r > 0)
        return r;
    int found = r < 0 ? errno : 0, e = sock_take_later_error(s);
    if (e)
        return errno = e, -1;
    /* the read told an error itself, having taken the kept one (a read
     * after our SHUT_RD may ask SO_ERROR: rx_shut_end); read again, it
     * said EOF where Linux says ECONNRESET */
    if (found && found != EAGAIN && found != EWOULDBLOCK)
        return errno = found, -1;
    return recv_routed(s, fd, msg, flags);
}

ssize_t sock_recv(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    /* A failed recvmsg() leaves the program's msghdr as it was */
    size_t controllen = msg->msg_controllen;
    socklen_t namelen = msg->msg_namelen;
    int msg_flags = msg->msg_flags, e = errno;
    ssize_t r = recv_told(s, fd, msg, flags);
    if (r < 0) {
        msg->msg_controllen = controllen;
        msg->msg_namelen = namelen;
        msg->msg_flags = msg_flags;
        return r;
    }
    if (!(flags & (MSG_ERRQUEUE | MSG_OOB)))
        cmsg_after_read(s, fd, msg, controllen, r);
    errno = e;   /* a wait's timed-out sleeps and EAGAINs are ours (errno_kept) */
    return r;
}

/* The copy of a quick call (interpose.c): bytes already on a fast socket's
 * ring (conn_recv_buffer), never a spin.  MSG_DONTWAIT is the only flag the
 * copy honours as it is. */
ssize_t sock_recv_copy(struct lf_sock *s, void *buf, size_t len, int flags)
{
    return sock_kind(s) == LF_FAST && !(flags & ~MSG_DONTWAIT) ? conn_recv_buffer(s, buf, len)
                                                               : CONN_DECLINED;
}

/* After conn_read_fast declined (a spin it made, in vain, is noted for
 * conn_recv until the call is over). */
ssize_t sock_recv_buffer(struct lf_sock *s, int fd, void *buf, size_t len, int flags)
{
    int spun = !flags && sock_kind(s) == LF_FAST;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t r = sock_recv(s, fd, &m, flags);
    if (spun)
        conn_recv_spun_end();
    return r;
}

/* Urgent data (MSG_OOB) is the kernel's TCP alone: the rings cannot carry it
 * at its place in the stream.  A client still waiting for its answer gives
 * the fast path up and stays plain TCP; a fast connection's writes go to
 * TCP for good, after the ring's bytes (sock_tx_urgent), and the urgent
 * byte follows them there, where the peer's kernel marks it as over kernel
 * TCP (SIGURG, POLLPRI, recv(MSG_OOB), SIOCATMARK).  It was refused
 * (EOPNOTSUPP), and telnet's Ctrl-C and its `send synch` ended their
 * sessions (telnetd sends output flushes so; docs/design.md, 10). */
static void urgent_to_tcp(struct lf_sock *s)
{
    lf_lock(&s->lock);
    if (sock_kind(s) == LF_PENDING)
        handshake_give_up(s);
    int fast = sock_kind(s) == LF_FAST;
    lf_unlock(&s->lock);
    if (fast)
        sock_tx_urgent(s);
}

static ssize_t send_whole(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    int kind = sock_kind(s);
    if ((flags & MSG_OOB) && (kind == LF_FAST || kind == LF_PENDING))
        urgent_to_tcp(s);   /* (after our shutdown the send says EPIPE) */
    ssize_t r = send_once(s, fd, msg, flags);
    size_t want = msg_len(msg);
    if ((kind != LF_FAST && kind != LF_PENDING) || r <= 0 || (size_t)r == want || (flags & MSG_DONTWAIT) || sock_nonblocking(s, fd))
        return r;
    /* A blocking socket sends everything: a pending client's sends are
     * attempts that do not wait (pending.c), and the rest may go on the ring
     * once it switched.  A short count of the rings' or the kernel's is the
     * call's answer (its SO_SNDTIMEO ran out, or a signal came): the rest
     * is only tried without waiting, for the error it may meet (a writer
     * whose reader was stopped for longer than its timeout blocked for a
     * second timeout here).  An error then is told by the next call
     * (keep_for_later); EPIPE, a state, is found again there, and so is its
     * SIGPIPE. */
    size_t done = (size_t)r;
    int piece_kind = kind;
    while (done < want) {
        struct iovec iov[MAX_IOV];
        struct msghdr m = msg_skip(msg, done, iov);
        int answered = piece_kind != LF_PENDING;
        piece_kind = sock_kind(s);
        r = send_once(s, fd, &m, flags | MSG_NOSIGNAL | (answered ? MSG_DONTWAIT : 0));
        if (r <= 0) {
            keep_for_later(s, r);
            break;
        }
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* Bytes this end ever put on its ring (0 before it has one). */
static uint64_t ring_bytes_sent(struct lf_sock *s)
{
    return sock_kind(s) == LF_FAST ? __atomic_load_n(&my_stats(s->conn)->tx_bytes, __ATOMIC_RELAXED)
                                   : 0;
}

/* After conn_write_fast declined. */
ssize_t sock_send_buffer(struct lf_sock *s, int fd, const void *buf, size_t len, int flags)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    return sock_send(s, fd, &m, flags);
}

ssize_t sock_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    int e = sock_take_later_error(s);
    if (e)
        return errno = e, -1;
    e = errno;
    uint64_t before = flags & MSG_ZEROCOPY ? ring_bytes_sent(s) : 0;
    ssize_t r = send_whole(s, fd, msg, flags);
    if (r > 0 && (flags & MSG_ZEROCOPY))
        zerocopy_sent(s, fd, ring_bytes_sent(s) != before);
    if (r >= 0)
        errno = e;   /* a blocking write's waits leave ETIMEDOUT or EAGAIN (nuttcp: errno_kept) */
    return r;
}
