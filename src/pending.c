/*
 * pending.c - a client socket between its offer and the server's answer.
 *
 * Its data goes on TCP, counted, so that the switch offset is exact.  The
 * answer is taken only once the connection shows it is more than one short
 * exchange (docs/design.md, 4.3): a connection that is connect, request,
 * reply, close never pays for the switch.  Sends are made non-blocking under
 * the socket's lock and their wait happens outside it, and reads outside it
 * altogether, so a thread blocked in one call cannot keep another from
 * making its own (and taking the answer).  Before a fork, and before a
 * socket is sent to another process, a pending socket settles.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* Worth switching: a write after a read (a second exchange), or much data,
 * or many calls.  Before that the connection's first exchange stays on TCP,
 * unless the descriptors its offer holds meanwhile are scarce (a client
 * with thousands of connections waiting for their first reply). */
#define SWITCH_BYTES (64u << 10)
#define SWITCH_CALLS 16

static int may_switch(const struct lf_sock *s, int is_send)
{
    return (is_send && s->pending_rx > 0) || s->pending_rx + s->pending_tx >= SWITCH_BYTES ||
           s->pending_calls >= SWITCH_CALLS || ownfd_crowded();
}

/* An answer is queued, or a connection to the offer that will carry one. */
static int answer_may_be_queued(struct lf_sock *s)
{
    if (s->held || (s->req_link && request_answered(s)))
        return 1;
    for (int i = 0; i < 4; i++)
        if (s->candidates[i] >= 0)
            return 1;
    struct pollfd p = { .fd = s->offer_fd, .events = POLLIN };
    return s->offer_fd >= 0 && libc.poll(&p, 1, 0) == 1;
}

/* After a byte or FIN came on TCP, an answer that is not queued never comes:
 * the server answers before its accept() returns.  One that is queued is
 * taken now only if the connection is worth switching. */
static void after_tcp_input(struct lf_sock *s, int fd)
{
    if (sock_kind(s) != LF_PENDING)
        return;
    if (s->req_link && !request_answered(s))
        request_missed(s);   /* another process accepted it; its offer may be answered */
    if (may_switch(s, 0) ? handshake_take_answer(s, fd) || s->held : answer_may_be_queued(s))
        return;   /* an answer its server holds is asked again (handshake_switch) */
    handshake_give_up(s);
}

/* A data call begins: counted, and the answer taken if the connection is
 * worth switching now.  The socket's kind then; the lock stays held while
 * it is still pending. */
static int pending_begin(struct lf_sock *s, int fd, int is_send)
{
    lf_lock(&s->lock);
    s->pending_calls++;
    if (sock_kind(s) == LF_PENDING && may_switch(s, is_send))
        handshake_take_answer(s, fd);
    int kind = sock_kind(s);
    if (kind != LF_PENDING)
        lf_unlock(&s->lock);
    return kind;
}

/* One non-blocking send under the lock; -EAGAIN, -errno, or a count.  Sets
 * *kind to what the socket was when the attempt was made. */
static ssize_t pending_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags,
                            int *kind)
{
    if ((*kind = pending_begin(s, fd, 1)) != LF_PENDING)
        return -EAGAIN;
    ssize_t r = libc.sendmsg(fd, msg, flags | MSG_DONTWAIT);
    if (r > 0)
        s->pending_tx += (uint64_t)r;
    if (r < 0)
        r = -errno;
    lf_unlock(&s->lock);
    return r;
}

/* A thread cancelled in pending_read's recvmsg (design 6.2). */
static void tcp_read_cancelled(void *arg)
{
    struct lf_sock *s = arg;
    cancel_unwound();
    lf_lock(&s->lock);
    s->tcp_readers--;
    lf_unlock(&s->lock);
}

/* A read is the program's own call, made outside the lock: it blocks,
 * times out (SO_RCVTIMEO) and restarts (SA_RESTART) in the kernel exactly
 * as it would without loopfast, in one system call.  The server switches
 * nothing before we take its answer, so what the read waits for comes on
 * TCP, and the answer is taken at the next call that finds it worth it
 * (waking for the answer alone would cost every connection a wake-up).  No
 * switch happens while a read is in flight (tcp_readers, checked by
 * handshake_take_answer): the switch publishes the bytes read so far. */
static ssize_t pending_read(struct lf_sock *s, int fd, struct msghdr *msg, int flags, int *kind)
{
    if ((*kind = pending_begin(s, fd, 0)) != LF_PENDING)
        return -EAGAIN;
    s->tcp_readers++;
    lf_unlock(&s->lock);
    if (!(flags & MSG_DONTWAIT))
        reap_now();   /* it may block: leftovers go first, as before every wait */
    ssize_t r;
    pthread_cleanup_push(tcp_read_cancelled, s);   /* else its switch never comes */
    r = libc.recvmsg(fd, msg, flags);
    pthread_cleanup_pop(0);
    int e = errno;
    lf_lock(&s->lock);
    s->tcp_readers--;
    if (r > 0 && !(flags & MSG_PEEK))
        s->pending_rx += (uint64_t)r;
    if (r >= 0)
        after_tcp_input(s, fd);
    lf_unlock(&s->lock);
    return r < 0 ? -e : r;
}

/* A writer that must wait waits for TCP alone, for the same reason;
 * 0, or -errno (timeout or O_NONBLOCK: -EAGAIN). */
static int pending_wait_writable(int fd)
{
    if (fd_nonblocking(fd))
        return -EAGAIN;
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int timeout = sock_timeout_ms(fd, SO_SNDTIMEO);
    int r;
    reap_now();
    r = poll_for_call(&p, 1, timeout, timeout < 0);
    if (r < 0)
        return -errno;
    return r == 0 ? -EAGAIN : 0;
}

ssize_t pending_io(struct lf_sock *s, int fd, struct msghdr *msg, int flags, int is_send)
{
    for (;;) {
        int kind;
        ssize_t r = is_send ? pending_send(s, fd, msg, flags, &kind)
                            : pending_read(s, fd, msg, flags, &kind);
        if (kind != LF_PENDING)
            return is_send ? sock_send(s, fd, msg, flags) : sock_recv(s, fd, msg, flags);
        if (is_send && r == -EAGAIN && !(flags & MSG_DONTWAIT)) {
            int w = pending_wait_writable(fd);
            if (w == 0)
                continue;
            r = w;
        }
        if (r >= 0)
            return r;
        errno = (int)-r;
        return -1;
    }
}

/* A shutdown takes the answer first, so that a client that can still switch
 * shuts down on its ring.  Without an answer the kernel's FIN goes on TCP,
 * and the write direction must then stay on TCP for good: a switch would
 * make that FIN look like a close to the server (docs/design.md, 4.4). */
int pending_shutdown(struct lf_sock *s, int fd, int how)
{
    lf_lock(&s->lock);
    if (sock_kind(s) == LF_PENDING)
        handshake_take_answer(s, fd);
    if (sock_kind(s) == LF_FAST) {
        lf_unlock(&s->lock);
        return conn_shutdown(s, fd, how);
    }
    int r = libc.shutdown(fd, how);
    if (r == 0 && how != SHUT_RD)
        s->pending_shut_wr = 1;
    if (r == 0 && how != SHUT_WR)
        s->pending_shut_rd = 1;
    lf_unlock(&s->lock);
    return r;
}

/* fork(): a pending connection must be one connection in every process that
 * holds it, but its byte counts and its answer live in this process.  So
 * before a fork each pending client takes its answer if it is queued (a
 * fast connection's state is shared, and the child counts as a holder), and
 * otherwise gives up in both copies: plain TCP both ways, for good.  The
 * server may still answer; it then waits for a `ready` that never comes and
 * keeps to TCP too (docs/design.md, 4.4). */
static void settle_one(int fd)
{
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return;
    if (sock_kind(s) == LF_PENDING) {
        lf_lock(&s->lock);
        s->settling = 1;   /* whether or not the server used it yet */
        if (sock_kind(s) == LF_PENDING && !handshake_take_answer(s, fd))
            handshake_give_up(s);
        s->settling = 0;
        lf_unlock(&s->lock);
    }
    sock_put(s);
}

/* A pending client whose answer its server holds (until the server's
 * program reads the connection through us: sshd re-exec'd onto it) asks
 * again at its next call; one that then waits in poll() for the server's
 * reply would ask only after the server had revoked it (sshd's pre-auth
 * child, handshake.c's settle).  So its poll wakes about every millisecond
 * while the answer is held, and asks (at most HELD_TRIES times). */
int pending_ask_held(struct lf_sock *s, int fd)
{
    if (sock_kind(s) != LF_PENDING || !__atomic_load_n(&s->held, __ATOMIC_RELAXED))
        return 0;
    lf_lock(&s->lock);
    if (sock_kind(s) == LF_PENDING && s->held)
        handshake_take_answer(s, fd);
    int still = sock_kind(s) == LF_PENDING && s->held;
    lf_unlock(&s->lock);
    return still;
}

/* The same when the program runs out of descriptors (interpose.c): each
 * pending client's offer is one of ours, held until its next call, which an
 * idle connection may never make (a pool of thousands after their first
 * exchange); settled, the offers are given back. */
void pending_settle_all(void)
{
    fdtable_for_each_fd(0, ~0u, settle_one);
}

/* A connection that has not switched yet stays off the rings for good: a
 * pending client gives up, a server end revokes an answer its client has
 * not taken.  `handed`: its descriptor is about to be sent with SCM_RIGHTS
 * (the receiver gets a plain socket: nothing tells its loopfast about our
 * rings, and its flags are the receiver's too). */
static void stay_plain(int fd, int handed)
{
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return;
    lf_lock(&s->lock);
    if (handed)
        __atomic_store_n(&s->desc_own, 0, __ATOMIC_RELEASE);
    if (sock_kind(s) == LF_PENDING)
        handshake_give_up(s);
    else if (sock_kind(s) == LF_FAST)
        handshake_hand_off(s->conn);
    lf_unlock(&s->lock);
    sock_put(s);
}

/* O_ASYNC asks the kernel for SIGIO when data comes, which it cannot see on
 * a ring; stdio reads with libc's internal read(), which no interposition
 * sees (a socket given to fdopen()): such a connection stays on TCP if it
 * has not switched yet. */
void pending_stay_plain(int fd)
{
    stay_plain(fd, 0);
}

/* A TCP upper layer protocol (TCP_ULP: kernel TLS) makes the kernel
 * handle the socket's bytes itself, encrypting what is written, which it
 * cannot do to bytes on a ring.  A connection that has not switched stays
 * plain for good (an answer its client has not taken is revoked); 1: it
 * is on the rings already, and the upper layer must be refused. */
int pending_before_ulp(int fd)
{
    stay_plain(fd, 0);
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return 0;
    lf_lock(&s->lock);
    int fast = sock_kind(s) == LF_FAST && !handshake_revoked(s->conn);
    lf_unlock(&s->lock);
    sock_put(s);
    return fast;
}

/* A socket on stdin may be read by stdio too (an inetd's service reading
 * with fgets(stdin)), or through us (sshd re-exec'd onto its connection):
 * a client end stays plain; a server end holds its answer until the
 * program reads it through us (handshake_hold). */
void pending_on_stdin(int fd)
{
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return;
    int fast = sock_kind(s) == LF_FAST && s->conn->me == LF_SERVER;
    if (fast) {
        lf_lock(&s->lock);
        handshake_hold(s->conn);
        lf_unlock(&s->lock);
    }
    sock_put(s);
    if (!fast)
        stay_plain(fd, 0);
}

void pending_hand_off_fds(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        stay_plain(fds[i], 1);
}

void pending_hand_off(const struct msghdr *msg)
{
    int fds[SCM_MAX_FD];
    int n = msg && msg->msg_control ? handoff_message_fds(msg, fds, SCM_MAX_FD) : 0;
    pending_hand_off_fds(fds, n);
}
