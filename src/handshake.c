/*
 * handshake.c - how two opted-in ends find each other (docs/design.md, 4).
 *
 * The client offers before its SYN leaves: a unix listener in the abstract
 * namespace named after its TCP socket's inode.  The server answers inside
 * accept(), without waiting: it asks sock_diag who owns the client socket,
 * connects to the offer, checks SO_PEERCRED against that owner, and sends the
 * sealed memfd and two eventfds.  The client takes the answer at its next call,
 * after checking the sender the same way.  Every failure means plain TCP.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define NCANDIDATES 4


int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

int is_wildcard(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 1;
}

static socklen_t offer_name(uint64_t inode, struct sockaddr_un *un)
{
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    int n = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "loopfast-offer-%llu",
                     (unsigned long long)inode);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* ---- client: the offer ---- */

/* The offer's listener, or -1: no offer. */
static int offer_listener(int fd, const struct sockaddr *dst)
{
    struct stat st;
    struct sockaddr_un un;
    if (!policy_allows(dst, NULL) || !is_loopback(dst) || fstat(fd, &st) < 0)
        return -1;
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l < 0)
        return -1;
    socklen_t len = offer_name(st.st_ino, &un);
    if (bind(l, (struct sockaddr *)&un, len) < 0 || listen(l, NCANDIDATES) < 0) {
        libc.close_own(l);   /* EADDRINUSE: somebody squats the name */
        return -1;
    }
    return l;
}

/* The kind changes once, straight to its new value: epoll.c follows each
 * change (a passing PLAIN would hand a registration back to the kernel). */
void handshake_offer(struct lf_sock *s, int fd, const struct sockaddr *dst)
{
    s->offer_fd = offer_listener(fd, dst);
    int ok = s->offer_fd >= 0 && ownfd_adopt1(&s->offer_fd) == 0;
    sock_set_kind(s, ok ? LF_PENDING : LF_PLAIN);
}

/* ---- server: the answer ---- */

static int peer_uid(int unix_fd, uid_t *uid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(unix_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -1;
    *uid = cred.uid;
    return 0;
}

/* The owner of the socket at the other end of TCP connection fd, if the
 * policy lets this connection be fast.  ends: local and peer address, those
 * of family 0 still to be asked. */
static int tcp_peer_owner(int fd, struct diag_result *owner, struct sockaddr_storage ends[2])
{
    struct sockaddr_storage *local = &ends[0], *peer = &ends[1];
    socklen_t ll = sizeof *local, pl = sizeof *peer;
    if ((!local->ss_family && getsockname(fd, (struct sockaddr *)local, &ll) < 0) ||
        (!peer->ss_family && getpeername(fd, (struct sockaddr *)peer, &pl) < 0) ||
        !is_loopback((struct sockaddr *)peer) ||
        !policy_allows((struct sockaddr *)local, (struct sockaddr *)peer))
        return -1;
    return sockdiag_lookup(peer, local, owner);
}

/* Connects to the client's offer and checks who holds it; ends gets our
 * address and the client's. */
static int connect_offer(int fd, struct sockaddr_storage ends[2])
{
    struct diag_result owner;
    struct sockaddr_un un;
    uid_t uid;
    if (tcp_peer_owner(fd, &owner, ends) < 0)
        return -1;
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u < 0)
        return -1;
    socklen_t len = offer_name(owner.inode, &un);
    if (libc.connect(u, (struct sockaddr *)&un, len) < 0 || peer_uid(u, &uid) < 0 ||
        uid != owner.uid) {
        libc.close_own(u);
        return -1;
    }
    return u;
}

static int send_answer(int u, int memfd, const struct lf_conn *cn, uint64_t ring_size)
{
    struct answer_msg a = { LF_MAGIC, LF_VERSION, ring_size };
    struct iovec iov = { &a, sizeof a };
    union {
        char buf[CMSG_SPACE(ANSWER_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(ANSWER_FDS * sizeof(int));
    int fds[ANSWER_FDS] = { memfd, cn->bell_mine[BELL_DATA], cn->bell_mine[BELL_ROOM],
                            cn->bell_peer[BELL_DATA], cn->bell_peer[BELL_ROOM] };
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    return libc.sendmsg(u, &m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof a ? 0 : -1;
}

void handshake_answer(int fd, struct sockaddr_storage ends[2])
{
    if (lf_config.mode == LF_MODE_OFF)
        return;
    int u = connect_offer(fd, ends);
    if (u < 0)
        return;
    struct lf_conn *c = spare_take();
    if (!c) {
        libc.close_own(u);
        return;
    }
    c->sh->addr[LF_SERVER] = ends[0];
    c->sh->addr[LF_CLIENT] = ends[1];
    struct lf_sock *s = sock_new(LF_FAST);
    if (!s) {
        conn_free(c);
    } else {
        s->conn = c;
        /* Nothing after a successful send may fail: the client would switch. */
        if (fdtable_set(fd, s) == 0 &&
            send_answer(u, c->memfd, c, c->tx.size) < 0)
            fdtable_clear(fd);
        sock_put(s);
    }
    libc.close_own(u);
}

/* ---- client: taking the answer ---- */

static void close_all(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        libc.close_own(fds[i]);
}

/* Collects every descriptor the message carried, so that none leaks. */
static int received_fds(struct msghdr *m, int *fds, int max)
{
    int n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
            if (n < max)
                fds[n++] = f;
            else
                libc.close_own(f);
        }
    }
    return n;
}

/* The sender must own the server's end of our TCP connection, or be of our
 * own uid: the kernel lets such a process read and write our memory anyway
 * (ptrace, /proc/pid/mem), so asking sock_diag would add a round trip to
 * every set-up and protect nothing (docs/design.md, 9). */
static int sender_is_server(int u, int fd)
{
    struct diag_result owner;
    struct sockaddr_storage ends[2] = { { 0 }, { 0 } };
    uid_t uid;
    if (peer_uid(u, &uid) < 0)
        return 0;
    if (uid == geteuid())
        return 1;
    return tcp_peer_owner(fd, &owner, ends) == 0 && owner.uid == uid;
}

/* 1: a valid answer, now in *out; 0: nothing to read yet; -1: not an answer. */
static int read_answer(int u, int fd, struct lf_conn **out)
{
    struct answer_msg a;
    struct iovec iov = { &a, sizeof a };
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];   /* room to see (and close) extras */
        struct cmsghdr align;
    } ctl;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    ssize_t n = libc.recvmsg(u, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    int fds[ANSWER_FDS + 1], nfds = n > 0 ? received_fds(&m, fds, ANSWER_FDS + 1) : 0;
    struct lf_conn *c = NULL;
    uint64_t size;
    if (n > 0 && answer_parse(&a, (size_t)n, nfds, m.msg_flags, &size) == 0 && sender_is_server(u, fd))
        c = shm_attach(fds[0], LF_CLIENT, size);
    if (!c) {
        close_all(fds, nfds);
        return -1;
    }
    c->bell_peer[BELL_DATA] = fds[1];
    c->bell_peer[BELL_ROOM] = fds[2];
    c->bell_mine[BELL_DATA] = fds[3];
    c->bell_mine[BELL_ROOM] = fds[4];
    *out = c;
    return 1;
}

/* Publishes what the client did on TCP and switches its write direction. */
static void become_fast(struct lf_sock *s, struct lf_conn *c)
{
    struct lf_side *me = &c->sh->side[LF_CLIENT];
    __atomic_store_n(&me->rx_tcp_bytes, s->pending_rx, __ATOMIC_RELAXED);
    __atomic_store_n(&me->tx_tcp_bytes, s->pending_tx, __ATOMIC_RELAXED);
    if (s->pending_shut_wr)   /* its FIN went on TCP: c2s stays there (4.4) */
        __atomic_store_n(&me->shut_wr, 1, __ATOMIC_RELEASE);
    else
        __atomic_store_n(&me->tx_switched, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&me->ready, 1, __ATOMIC_RELEASE);
    s->conn = c;
    sock_set_kind(s, LF_FAST);   /* first: never PLAIN on the way (handshake_offer) */
    handshake_give_up(s);
    conn_ring_bell(c);
}

/* The answer's descriptors go high, with `spent`, a fresh candidate, closed
 * beside their low originals.  0: no room for them, plain TCP. */
static int keep_answer(struct lf_conn *c, int spent)
{
    int *const own[] = { &c->memfd, &c->bell_peer[BELL_DATA], &c->bell_peer[BELL_ROOM],
                         &c->bell_mine[BELL_DATA], &c->bell_mine[BELL_ROOM] };
    if (ownfd_adopt(own, 5, spent) == 0)
        return 1;
    conn_free(c);
    return 0;
}

int handshake_take_answer(struct lf_sock *s, int fd)
{
    /* Read what is already accepted first: the usual case takes one accept4. */
    for (int i = 0; i < NCANDIDATES; i++) {
        if (s->candidates[i] >= 0)
            continue;
        int u = libc.accept4(s->offer_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (u < 0)
            break;
        s->candidates[i] = u;
        struct lf_conn *c;
        int r = read_answer(u, fd, &c);
        if (r == 0) {
            ownfd_adopt1(&s->candidates[i]);   /* kept across calls: made high */
            continue;
        }
        s->candidates[i] = -1;
        if (r == 1 && keep_answer(c, u)) {
            bufsize_apply(s, c, fd);
            become_fast(s, c);
            return 1;
        }
        if (r < 0)
            libc.close_own(u);
    }
    for (int i = 0; i < NCANDIDATES; i++) {
        struct lf_conn *c;
        int r = s->candidates[i] >= 0 ? read_answer(s->candidates[i], fd, &c) : 0;
        if (r == 0)
            continue;
        reap_fd(s->candidates[i]);
        s->candidates[i] = -1;
        if (r == 1 && keep_answer(c, -1)) {
            bufsize_apply(s, c, fd);
            become_fast(s, c);
            return 1;
        }
    }
    return 0;
}

/* The offer's sockets are closed later (reap.c): taking or giving up on an
 * answer happens on the way to the caller's data. */
void handshake_give_up(struct lf_sock *s)
{
    for (int i = 0; i < NCANDIDATES; i++) {
        reap_fd(s->candidates[i]);
        s->candidates[i] = -1;
    }
    reap_fd(s->offer_fd);
    s->offer_fd = -1;
    if (sock_kind(s) == LF_PENDING)
        sock_set_kind(s, LF_PLAIN);
}
