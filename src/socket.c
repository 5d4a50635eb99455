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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

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

static size_t msg_len(const struct msghdr *msg)
{
    size_t t = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        t += msg->msg_iov[i].iov_len;
    return t;
}

/* MSG_TRUNC on TCP discards up to len bytes without copying them (the
 * buffer may be NULL): here they are read into a scratch buffer instead.
 * Without MSG_WAITALL it takes what is there once the first bytes came. */
static ssize_t recv_discard(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    char scratch[16384];
    size_t want = msg_len(msg), done = 0;
    int more = flags & ~MSG_TRUNC;
    while (done < want) {
        struct iovec iov = { scratch, want - done < sizeof scratch ? want - done : sizeof scratch };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t r = sock_recv(s, fd, &m, more);
        if (r <= 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
        msg->msg_flags = m.msg_flags;
        msg->msg_controllen = 0;
        if (flags & MSG_PEEK)
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
    if (!__atomic_load_n(&c->sh->side[c->me].rx_on_ring, __ATOMIC_ACQUIRE) ||
        (flags & MSG_DONTWAIT) || sock_nonblocking(s, fd))
        return -1;
    int timeout = peek_time_left(s, fd, deadline);
    if (timeout == 0)
        return -1;
    barrier_after_arm(conn_arm_flag(c, &c->rx.ctl->reader_armed));
    ssize_t n = ring_readable(&c->rx);
    if (n < 0 || (size_t)n > have || __atomic_load_n(&peer->shut_wr, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&peer->closed, __ATOMIC_ACQUIRE))
        return 0;
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
    size_t want = msg_len(msg), done = 0;
    while (done < want) {
        struct iovec iov[MAX_IOV];
        struct msghdr m = msg_skip(msg, done, iov);
        ssize_t r = recv_once(s, fd, &m, flags & ~MSG_WAITALL);
        if (r <= 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* ---- TCP_INQ ----
 * With TCP_INQ on, the kernel adds to each recvmsg() a TCP_CM_INQ message:
 * the bytes still queued (1 at the end of the stream when none are, so
 * that the program reads the end).  gRPC reads it to know whether to read
 * again.  A read from the ring adds it here; the option is asked of the
 * kernel only once this image has set it on some socket. */
static int inq_used;

void sock_inq_changed(int level, int optname)
{
    if (level == IPPROTO_TCP && optname == TCP_INQ)
        __atomic_store_n(&inq_used, 1, __ATOMIC_RELAXED);
}

static int ring_inq(struct lf_conn *c)
{
    ssize_t n = ring_readable(&c->rx);
    if (n > 0)
        return n > INT32_MAX ? INT32_MAX : (int)n;
    const struct lf_side *peer = conn_peer(c);
    return n == 0 && (__atomic_load_n(&peer->shut_wr, __ATOMIC_ACQUIRE) ||
                      __atomic_load_n(&peer->closed, __ATOMIC_ACQUIRE));
}

/* After a read that the ring answered (the kernel answers the others, with
 * its own control messages): `control` is the buffer's size as given. */
static void add_inq(struct lf_sock *s, int fd, struct msghdr *msg, size_t control)
{
    int on = 0;
    socklen_t len = sizeof on;
    if (!__atomic_load_n(&inq_used, __ATOMIC_RELAXED) || msg->msg_controllen ||
        sock_kind(s) != LF_FAST || lf_confined ||
        getsockopt(fd, IPPROTO_TCP, TCP_INQ, &on, &len) < 0 || !on)
        return;
    int inq = ring_inq(s->conn);
    sock_put_cmsg(msg, control, SOL_TCP, TCP_CM_INQ, &inq, sizeof inq);
}

/* One control message into msg's buffer of `control` bytes, cut as the
 * kernel's put_cmsg() cuts it when it does not fit (MSG_CTRUNC). */
void sock_put_cmsg(struct msghdr *msg, size_t control, int level, int type, const void *data,
                   size_t len)
{
    if (!msg->msg_control || control < sizeof(struct cmsghdr)) {
        msg->msg_flags |= MSG_CTRUNC;
        msg->msg_controllen = 0;
        return;
    }
    size_t whole = CMSG_LEN(len), cut = whole < control ? whole : control;
    if (cut < whole)
        msg->msg_flags |= MSG_CTRUNC;
    struct cmsghdr *cm = (struct cmsghdr *)msg->msg_control;
    cm->cmsg_level = level;
    cm->cmsg_type = type;
    cm->cmsg_len = cut;
    memcpy(CMSG_DATA(cm), data, cut - CMSG_LEN(0));
    msg->msg_controllen = CMSG_SPACE(len) < control ? CMSG_SPACE(len) : control;
}

ssize_t sock_recv(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    /* A failed recvmsg() leaves the program's msghdr as it was */
    size_t controllen = msg->msg_controllen;
    socklen_t namelen = msg->msg_namelen;
    int msg_flags = msg->msg_flags;
    ssize_t r = recv_routed(s, fd, msg, flags);
    if (r < 0) {
        msg->msg_controllen = controllen;
        msg->msg_namelen = namelen;
        msg->msg_flags = msg_flags;
    } else if (msg->msg_control && controllen && !(flags & (MSG_ERRQUEUE | MSG_OOB))) {
        add_inq(s, fd, msg, controllen);
    }
    return r;
}

/* Urgent data (MSG_OOB) is the kernel's TCP alone: the rings cannot carry it
 * at its place in the stream.  A client still waiting for its answer gives
 * the fast path up and stays plain TCP; a fast connection refuses it
 * (docs/design.md, 10). */
static int urgent_refused(struct lf_sock *s)
{
    lf_lock(&s->lock);
    if (sock_kind(s) == LF_PENDING)
        handshake_give_up(s);
    int fast = sock_kind(s) == LF_FAST;
    lf_unlock(&s->lock);
    return fast;
}

static ssize_t send_whole(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    int kind = sock_kind(s);
    if ((flags & MSG_OOB) && (kind == LF_FAST || kind == LF_PENDING) && urgent_refused(s))
        return errno = EOPNOTSUPP, -1;
    ssize_t r = send_once(s, fd, msg, flags);
    size_t want = msg_len(msg);
    if ((kind != LF_FAST && kind != LF_PENDING) || r <= 0 || (size_t)r == want || (flags & MSG_DONTWAIT) || sock_nonblocking(s, fd))
        return r;
    /* A blocking socket sends everything: the rest may go on the ring now. */
    size_t done = (size_t)r;
    while (done < want) {
        struct iovec iov[MAX_IOV];
        struct msghdr m = msg_skip(msg, done, iov);
        r = send_once(s, fd, &m, flags);
        if (r <= 0)
            break;
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

ssize_t sock_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    if (!(flags & MSG_ZEROCOPY))
        return send_whole(s, fd, msg, flags);
    uint64_t before = ring_bytes_sent(s);
    ssize_t r = send_whole(s, fd, msg, flags);
    if (r > 0)
        zerocopy_sent(s, fd, ring_bytes_sent(s) != before);
    return r;
}
