/*
 * handshake.c - how two opted-in ends find each other (docs/design.md, 4).
 *
 * The client offers before its SYN leaves: a unix listener in the abstract
 * namespace named after its TCP socket's inode.  The server answers inside
 * accept(), without waiting: it asks sock_diag for the client socket's inode,
 * connects to the offer, and sends its region (or names one the client
 * holds: link.c), two eventfds and the region's channel, and its
 * proof, an epoll holding its TCP socket.  The client takes the answer at its
 * next call once the proof names the socket at the other end of its
 * connection, and proves itself in turn by sending its TCP socket on the
 * region's channel; the server believes the client's header line only
 * after checking that (4.7).  Names and uids prove nothing.  Every failure
 * means plain TCP.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define NCANDIDATES 4
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

/* sockfs's device, as the kernel prints it in fdinfo: every socket has it. */
static uint64_t sockfs_dev;


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

/* The offer's listener for the socket `inode`, or -1: no offer. */
static int offer_listener(uint64_t inode)
{
    struct sockaddr_un un;
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l < 0)
        return -1;
    socklen_t len = offer_name(inode, &un);
    if (bind(l, (struct sockaddr *)&un, len) < 0 || listen(l, NCANDIDATES) < 0) {
        libc.close_own(l);   /* EADDRINUSE: somebody squats the name */
        return -1;
    }
    return l;
}

static void remember_destination(struct lf_sock *s, const struct sockaddr *dst)
{
    memset(&s->dst, 0, sizeof s->dst);
    if (dst->sa_family == AF_INET)
        memcpy(&s->dst, dst, sizeof(struct sockaddr_in));
    else if (dst->sa_family == AF_INET6)
        memcpy(&s->dst, dst, sizeof(struct sockaddr_in6));
}

/* A destination whose server already shares a region with us is asked
 * for in that region (request.c); any other is offered, unless its
 * connections have been closing before they switch (shortlived.c).  The kind changes
 * once, straight to its new value: epoll.c follows each change (a passing
 * PLAIN would hand a registration back to the kernel). */
void handshake_offer(struct lf_sock *s, int fd, const struct sockaddr *dst)
{
    struct stat st;
    int kind = LF_PLAIN;
    if (policy_allows(dst, NULL) && is_loopback(dst) && !shortlived_skip(dst) &&
        fstat(fd, &st) == 0) {
        __atomic_store_n(&sockfs_dev, ((uint64_t)major(st.st_dev) << 20) | minor(st.st_dev),
                         __ATOMIC_RELAXED);
        remember_destination(s, dst);
        handshake_kept_take();   /* a region a short connection set aside */
        if (request_post(s, st.st_ino) == 0)
            kind = LF_PENDING;
        else if ((s->offer_fd = offer_listener(st.st_ino)) >= 0 && ownfd_adopt1(&s->offer_fd) == 0)
            kind = LF_PENDING;
    }
    sock_set_kind(s, kind);
}

uint64_t handshake_sockfs_dev(void)
{
    return __atomic_load_n(&sockfs_dev, __ATOMIC_RELAXED);
}

/* ---- server: the answer ---- */

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

/* Connects the spare's unix socket to the client's offer.  Whoever holds
 * the name gets the answer: the client's proof, not the name, decides (4.7).
 * 0, or errno. */
static int connect_offer(struct lf_conn *c, const struct diag_result *client)
{
    struct sockaddr_un un;
    socklen_t len = offer_name(client->inode, &un);
    int old = nocancel_begin();   /* set-up under the connection's locks (design 6.2) */
    int r = libc.connect(c->proof_fd, (struct sockaddr *)&un, len) < 0 ? errno : 0;
    nocancel_end(old);
    return r;
}

int handshake_send_fds(int u, const void *head, size_t len, const int *fds, int nfds)
{
    struct iovec iov = { (void *)head, len };
    union {
        char buf[CMSG_SPACE(ANSWER_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf, .msg_controllen = CMSG_SPACE(nfds * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    int old = nocancel_begin();
    int r = libc.sendmsg(u, &m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
    nocancel_end(old);
    return r;
}

static int send_answer(int u, const struct lf_conn *cn, int new_link, int alone)
{
    struct answer_msg a = { LF_MAGIC, LF_VERSION, cn->tx.size, cn->link->id, cn->slot,
                            (new_link ? ANSWER_NEW_LINK : 0) | (alone ? ANSWER_ALONE : 0),
                            cn->nonce };
    if (!new_link)
        return handshake_send_fds(u, &a, sizeof a, &cn->proof_ep, 1);
    /* the channel's end is ours until another answer sees the client hold it */
    int fds[ANSWER_FDS] = { cn->link->fd, cn->link->bell_mine, cn->link->bell_peer,
                            link_carry_begin(cn->link), cn->proof_ep };
    int r = fds[3] >= 0 ? handshake_send_fds(u, &a, sizeof a, fds, ANSWER_FDS) : -1;
    link_carry_end(cn->link);
    return r;
}

/* The process at the other end of a unix connection: for a server, the
 * client that listens on the offer (later connections from it may take
 * slots of the region this answer makes); for a client, the server that
 * made the region (link.c). */
static pid_t unix_peer_pid(int u)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    return getsockopt(u, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : 0;
}

/* A slot of a region made for the client process, with the spare's
 * descriptors moved onto it; NULL: the spare's own new region it is.
 * *carry: the client does not hold that region (it has not taken the
 * answer that carried it yet, or let it go), so this answer carries it. */
static struct lf_conn *slot_for(struct lf_conn *spare, pid_t client, int *carry)
{
    struct lf_link *l = link_of_peer(client, config_ring_size(), carry);
    uint32_t slot;
    struct lf_conn *c = NULL;
    if (l && link_claim(l, &slot) == 0) {
        c = shm_slot(l, slot, LF_SERVER, SLOT_FRESH);
        if (!c)
            __atomic_store_n(&l->region->lease[slot], 0, __ATOMIC_RELEASE);
    }
    if (l)
        link_put(l);
    if (c)
        spare_transplant(spare, c);
    return c;
}

static void drain_now_and_then(struct lf_link *l);

/* What an answer needs made beforehand: the spare, and room for the proof. */
static struct lf_conn *answer_reserves(void)
{
    return handshake_proof_room() ? spare_take() : NULL;
}

/* The server's end of an answer about to go: its proof epoll holds our TCP
 * socket, and the client's part of the slot is offered under a new nonce,
 * which the client's proof must name with its socket (4.7).  0, or -1 with
 * the client's part given back. */
int handshake_server_end(struct lf_conn *c, int fd, const struct diag_result *client,
                         const struct sockaddr_storage ends[2])
{
    struct epoll_event none = { 0 };
    if (c->proof_ep >= 0 && libc.epoll_ctl(c->proof_ep, EPOLL_CTL_ADD, fd, &none) < 0) {
        link_give_back(c);   /* the client's part: no answer was sent */
        return -1;
    }
    c->sh->server_fd = c->proof_ep >= 0 ? -1 : fd;   /* no epoll: proved by /proc (4.8) */
    c->sh->side[LF_SERVER].arms_with_mb = 0;   /* until its sleeps are rare (conn.c) */
    c->sh->addr[LF_SERVER] = ends[0];
    c->sh->addr[LF_CLIENT] = ends[1];
    c->peer_cookie = client->cookie;
    c->nonce = __atomic_add_fetch(&c->link->next_nonce, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&c->sh->offer, c->nonce << 2 | OFFER_OFFERED, __ATOMIC_RELAXED);
    link_expect(c->link, c->slot, c->nonce, client->cookie);
    /* accept() gave stdin's number (tcpserver closes stdin so that its
     * connections land there, and execs its service onto it): held from
     * the start, as for one moved there (pending_on_stdin), before the
     * client can see the answer */
    if (fd == STDIN_FILENO)
        handshake_hold(c);
    return 0;
}

/* fd becomes c's server end, and then `tell` sends the answer: 0 sent.
 * Nothing after a successful send may fail: the client would switch.  c is
 * the socket's from here on, whatever happens. */
int handshake_commit(int fd, struct lf_conn *c, int (*tell)(struct lf_conn *, void *), void *arg)
{
    struct lf_sock *s = sock_new(LF_FAST);
    if (!s) {
        link_give_back(c);
        conn_free(c);
        return -1;
    }
    s->conn = c;
    int r = fdtable_set(fd, s) == 0 && tell(c, arg) == 0 ? 0 : -1;
    if (r == 0) {
        reap_fd(c->proof_ep);   /* the client holds it now */
        c->proof_ep = -1;
        drain_now_and_then(c->link);
    } else {
        c->nonce = 0;
        link_give_back(c);   /* the client's part: no answer was sent */
        fdtable_clear(fd);
    }
    sock_put(s);
    return r;
}

struct offer_answer { pid_t owner; int new_link, alone; };

/* The answer goes on the unix connection to the offer, where it stays
 * queued for the client after we close our end: the client's proof comes
 * on the region's channel. */
static int tell_offer(struct lf_conn *c, void *arg)
{
    struct offer_answer *a = arg;
    if (send_answer(c->proof_fd, c, a->new_link, a->alone) < 0)
        return -1;
    reap_fd(c->proof_fd);
    c->proof_fd = -1;
    if (a->new_link)
        link_list(c->link, a->owner);
    else
        link_used(c->link);   /* its client may ask there again */
    return 0;
}

void handshake_answer(int fd, struct sockaddr_storage ends[2], int alone)
{
    struct diag_result client;
    if (lf_config.mode == LF_MODE_OFF || tcp_peer_owner(fd, &client, ends) < 0 ||
        request_answer(fd, &client, ends))
        return;
    struct lf_conn *c = answer_reserves();
    if (!c && reap_now() + link_drop_idle() > 0)
        c = answer_reserves();   /* our own reserves must not cost this connection */
    if (!c)
        return;
    int e = connect_offer(c, &client);
    if (e) {
        spare_return(c, e);   /* no offer: kept for the next answer */
        return;
    }
    struct offer_answer a = { unix_peer_pid(c->proof_fd), 0, alone };
    int carry = 0;
    struct lf_conn *reused = slot_for(c, a.owner, &carry);
    a.new_link = !reused || carry;
    if (!reused && !c->link) {   /* a light spare: no region to offer a first contact */
        conn_free(c);
        return;
    }
    if (reused) {
        spare_return(c, ECONNREFUSED);   /* its new region waits for a first contact */
        c = reused;
    }
    if (handshake_server_end(c, fd, &client, ends) < 0)
        conn_free(c);
    else
        handshake_commit(fd, c, tell_offer, &a);
}

/* ---- server: the client's proof ---- */

static void close_all(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        libc.close_own(fds[i]);
}

/* Collects every descriptor the message carried, so that none leaks. */
int handshake_received_fds(struct msghdr *m, int *fds, int max)
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

/* Receiving a proof takes a descriptor (the client's socket, closed at
 * once).  A server whose program filled its table would otherwise never
 * read the proof of a client that switched, and wait on TCP for bytes that
 * are on the ring: so while it answers, a server holds one descriptor it
 * gives up for the moment a proof is read (`proof_room`). */
static int proof_room = -1;
static pthread_mutex_t proof_room_lock = PTHREAD_MUTEX_INITIALIZER;

int handshake_proof_room(void)
{
    lf_lock(&proof_room_lock);
    if (proof_room < 0)
        ownfd_new(&proof_room, eventfd(0, EFD_CLOEXEC));
    int ok = proof_room >= 0;
    lf_unlock(&proof_room_lock);
    return ok;
}

ssize_t handshake_recv_fds(int u, void *buf, size_t len, int flags, int *fds, int max, int *nfds,
                           int *msg_flags)
{
    struct iovec iov = { buf, len };
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];   /* room to see (and close) extras */
        struct cmsghdr align;
    } ctl;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    int old = nocancel_begin();   /* under the channel's lock */
    ssize_t n = libc.recvmsg(u, &m, flags | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    nocancel_end(old);
    *nfds = n >= 0 ? handshake_received_fds(&m, fds, max) : 0;
    *msg_flags = m.msg_flags;
    return n;
}

/* A peek at the channel's first message: 1 a message (its proof, if it is
 * one, checked and recorded), 0 none, -1 the client's end is gone (EOF),
 * -2 no descriptor free to receive it (try again later).  A peek loses
 * nothing when the descriptor cannot be received; the message is then
 * consumed without its descriptor (chan_next). */
static int peek_proof(struct lf_link *l)
{
    struct proof_msg p;
    int fds[2], nfds, flags;
    ssize_t n = handshake_recv_fds(l->chan, &p, sizeof p, MSG_PEEK, fds, 2, &nfds, &flags);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (n == 0 && !nfds && !(flags & MSG_CTRUNC))
        return -1;   /* EOF, or an empty message, which no client of ours sends */
    if ((flags & MSG_CTRUNC) && !nfds)
        return -2;
    uint64_t got = 0;
    socklen_t len = sizeof got;
    if (proof_parse(&p, (size_t)n, nfds, flags, &p) == 0 &&
        getsockopt(fds[0], SOL_SOCKET, SO_COOKIE, &got, &len) == 0)
        link_record_proof(l, p.slot, p.nonce, got);
    close_all(fds, nfds);   /* at once: the client's FIN waits for its last holder */
    return 1;
}

/* The peeked message goes, its descriptors dropped by the kernel. */
static void chan_next(struct lf_link *l)
{
    char b;
    struct iovec iov = { &b, 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    int old = nocancel_begin();   /* under the channel's lock */
    libc.recvmsg(l->chan, &m, MSG_DONTWAIT);
    nocancel_end(old);
}

/* peek_proof, in the room of proof_room when no other descriptor is free. */
static int peek_proof_in_room(struct lf_link *l)
{
    int r = peek_proof(l);
    if (r != -2)
        return r;
    lf_lock(&proof_room_lock);
    if (proof_room >= 0) {
        ownfd_close(&proof_room);
        r = peek_proof(l);
        ownfd_new(&proof_room, eventfd(0, EFD_CLOEXEC));
    }
    lf_unlock(&proof_room_lock);
    return r;
}

/* Reads the region's channel until slot's proof under nonce is recorded
 * (nonce 0: until nothing is left): 1 proved, 0 not (and never will be:
 * the real client queues its proof before it sets `ready`), -2 ask again
 * (no descriptor, or another holder is reading).  Every proof read is
 * recorded for whichever holder's connection it is (link.c).  *eof: the
 * client's end is gone. */
static int drain_channel(struct lf_link *l, uint32_t slot, uint64_t nonce, int *eof)
{
    *eof = 0;
    if (nonce && link_proved(l, slot, nonce))
        return 1;
    if (link_lock_channel(l) < 0)
        return l->verdicts && l->chan >= 0 ? -2 : 0;
    __atomic_store_n(&l->answers_unread, 0, __ATOMIC_RELAXED);
    int r;
    while ((r = peek_proof_in_room(l)) == 1) {
        chan_next(l);
        if (nonce && link_proved(l, slot, nonce))
            break;
    }
    link_unlock_channel(l);
    *eof = r == -1;
    return nonce && link_proved(l, slot, nonce) ? 1 : r == -2 ? -2 : 0;
}

/* A client that takes its answers after the server's first look at each
 * connection (its first exchange on TCP) leaves proofs queued that nobody
 * asked for yet; each holds its socket and a part of the channel's buffer,
 * which a few hundred fill.  So every so many answers the server reads
 * what came. */
#define ANSWERS_PER_DRAIN 32

static void drain_now_and_then(struct lf_link *l)
{
    int eof;
    if (__atomic_add_fetch(&l->answers_unread, 1, __ATOMIC_RELAXED) >= ANSWERS_PER_DRAIN)
        drain_channel(l, 0, 0, &eof);
}

/* 1: the client proved itself, 0: not, and never will; -2: ask again. */
static int take_proof(struct lf_conn *c)
{
    int eof;
    int r = drain_channel(c->link, c->slot, c->nonce, &eof);
    __atomic_store_n(&c->proof_deferred, r == -2, __ATOMIC_RELAXED);
    if (r == 0)
        c->refused = 1;
    return r;
}

static void believe_client(struct lf_conn *c)
{
    __atomic_store_n(&c->peer_line, &c->sh->side[LF_CLIENT], __ATOMIC_RELEASE);
    __atomic_store_n(&c->link->revoked_run, 0, __ATOMIC_RELAXED);
    link_client_holds(c->link);
}

/* A server connection closed before its client proved itself: the
 * client's part of the lease is revoked unless the client took it (then
 * its proof is on the channel, or coming: it is read now, which lets the
 * client's socket go).  Revoked answers are where a client that no longer
 * holds its region shows (an image exec'd past loopfast: it cannot take
 * them): the channel then says EOF, and the client's next connection gets a
 * new region.  Only the last holder of the server's end looks (conn_close
 * counted it). */
/* The client's part of the lease is revoked unless it took it: 1 when
 * this call revoked it (and gave that part back). */
static int revoke_answer(struct lf_conn *c)
{
    uint64_t seen = c->nonce << 2 | OFFER_OFFERED;
    /* Offered or held (handshake_hold): a holder's read may turn one into
     * the other meanwhile. */
    while (!__atomic_compare_exchange_n(&c->sh->offer, &seen, c->nonce << 2 | OFFER_REVOKED, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        if (seen != (c->nonce << 2 | OFFER_OFFERED) && seen != (c->nonce << 2 | OFFER_HELD))
            return 0;
    link_give_back(c);
    return 1;
}

static int unanswered_locked(struct lf_conn *c)
{
    if (!c->nonce ||
        __atomic_load_n(&c->sh->side[LF_SERVER].holders, __ATOMIC_ACQUIRE) != 0 ||
        __atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE))
        return 0;
    if (__atomic_load_n(&c->sh->offer, __ATOMIC_ACQUIRE) == (c->nonce << 2 | OFFER_REVOKED)) {
        c->nonce = 0;   /* revoked when it was handed off (handshake_hand_off) */
        return 1;
    }
    int revoked = revoke_answer(c);
    unsigned run = revoked ? __atomic_add_fetch(&c->link->revoked_run, 1, __ATOMIC_RELAXED) : 0;
    if (!revoked || (run & (run - 1)) == 0) {   /* runs of revokes look seldom */
        int eof;
        drain_channel(c->link, c->slot, c->nonce, &eof);
        if (eof)
            link_forget_peer(c->link);
    }
    c->nonce = 0;   /* looked at once */
    return revoked;
}

/* Under the proof lock: another thread of ours may still be inside a call
 * on the connection after its last descriptor went (a poll() that began
 * before the close), and handshake_peer_line reads the nonce there. */
int handshake_unanswered(struct lf_conn *c)
{
    if (c->me != LF_SERVER || lf_confined)
        return 0;
    lf_lock(&c->proof_lock);
    int revoked = unanswered_locked(c);
    lf_unlock(&c->proof_lock);
    return revoked;
}

/* A server end sent to another process (SCM_RIGHTS: an acceptor handing
 * connections to workers), whose new copy is a plain socket to it: while
 * the client has not taken its answer it never will now, and both
 * directions stay the kernel's, whoever reads them.  One it took already
 * is on the ring, where the receiver cannot follow (design 10). */
void handshake_hand_off(struct lf_conn *c)
{
    if (c->me == LF_SERVER && c->nonce && !__atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE))
        revoke_answer(c);
}

/* A server end whose answer was revoked before its client took it: both
 * directions stay the kernel's for good. */
int handshake_revoked(struct lf_conn *c)
{
    return c->me == LF_SERVER && c->nonce && !__atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&c->sh->offer, __ATOMIC_ACQUIRE) == (c->nonce << 2 | OFFER_REVOKED);
}

/* A server end that lands on stdin (an inetd's service, sshd's re-exec) may
 * be read by stdio, with libc's internal read(), which passes us by: while
 * its client has not taken the answer, the offer is held, and the client
 * keeps asking on TCP until a read of ours shows the program reads it
 * through us (handshake_consent).  A service that reads with fgets(stdin)
 * never does, and its connection stays the kernel's (4.3). */
void handshake_hold(struct lf_conn *c)
{
    if (c->me != LF_SERVER || !c->nonce || __atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE))
        return;
    uint64_t offered = c->nonce << 2 | OFFER_OFFERED, held = c->nonce << 2 | OFFER_HELD;
    __atomic_compare_exchange_n(&c->sh->offer, &offered, held, 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_RELAXED);
    __atomic_store_n(&c->held, __atomic_load_n(&c->sh->offer, __ATOMIC_ACQUIRE) == held,
                     __ATOMIC_RELAXED);
}

void handshake_consent(struct lf_conn *c)
{
    __atomic_store_n(&c->held, 0, __ATOMIC_RELAXED);
    if (!c->nonce)
        return;
    uint64_t held = c->nonce << 2 | OFFER_HELD;
    if (__atomic_compare_exchange_n(&c->sh->offer, &held, c->nonce << 2 | OFFER_OFFERED, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        __atomic_store_n(&c->consented, 1, __ATOMIC_RELAXED);
}

/* The last moment recvmsg is allowed (sandbox.c): a proof already queued is
 * checked now; one that comes later can only be taken on trust (section 9). */
void handshake_before_confinement(struct lf_conn *c)
{
    if (c->me != LF_SERVER)
        return;
    lf_lock(&c->proof_lock);
    if (!c->peer_line && c->nonce &&
        __atomic_load_n(&c->sh->side[LF_CLIENT].ready, __ATOMIC_ACQUIRE) && take_proof(c) == 1)
        believe_client(c);
    lf_unlock(&c->proof_lock);
}

/* The program is about to lower RLIMIT_NOFILE so that no number below it
 * stays free: a proof, which comes with its socket, could never be received
 * after, and a client that switched would write on a ring its server never
 * reads (vsftpd's pre-login child at 0 hung on the first command).  So a
 * server end whose client has not proved itself settles now: an answer not
 * taken is revoked (the connection stays the kernel's); the proof of one
 * taken is read (the client sends it right after it took the answer, then
 * says `ready`). */
#define SETTLE_WAIT_STEPS 1000   /* of 100 us: for a client between its take and its proof */

/* An offer held until our first read (sshd re-exec'd onto its connection)
 * was asked for by its client while held, and the client asks again about
 * every millisecond while it waits (poll.c): sshd's pre-auth child lowers
 * RLIMIT_NOFILE right after that first read, and revoked the answer before
 * the client came back (half of all ssh sessions stayed on TCP).  So such an
 * offer is given a little time to be taken. */
#define CONSENT_WAIT_STEPS 50    /* of 100 us */

static void wait_for_taker(struct lf_conn *c)
{
    struct timespec step = { 0, 100000 };
    uint64_t offered = c->nonce << 2 | OFFER_OFFERED;
    for (int i = 0; i < CONSENT_WAIT_STEPS && __atomic_load_n(&c->consented, __ATOMIC_RELAXED) &&
                    __atomic_load_n(&c->sh->offer, __ATOMIC_ACQUIRE) == offered;
         i++)
        nanosleep(&step, NULL);
}

static void settle_before_fd_limit(struct lf_sock *s, void *arg)
{
    (void)arg;
    struct lf_conn *c = s->conn;
    if (sock_kind(s) != LF_FAST || !c || c->me != LF_SERVER)
        return;
    lf_lock(&c->proof_lock);
    if (!c->peer_line && c->nonce && !c->refused)
        wait_for_taker(c);
    if (!c->peer_line && c->nonce && !c->refused && !revoke_answer(c)) {
        struct timespec step = { 0, 100000 };
        for (int i = 0; i < SETTLE_WAIT_STEPS &&
                        !__atomic_load_n(&c->sh->side[LF_CLIENT].ready, __ATOMIC_ACQUIRE); i++)
            nanosleep(&step, NULL);
        if (__atomic_load_n(&c->sh->side[LF_CLIENT].ready, __ATOMIC_ACQUIRE) && take_proof(c) == 1)
            believe_client(c);
    }
    lf_unlock(&c->proof_lock);
}

void handshake_before_fd_limit(void)
{
    fdtable_for_each(settle_before_fd_limit, NULL);
}

/* Confined: proofs on the channel cannot be received, only read() away,
 * which lets the client sockets they hold go (else their FIN never comes). */
static void drop_proofs_confined(struct lf_link *l)
{
    char b[64];
    int old = nocancel_begin();
    if (l->chan >= 0)
        while (libc.read(l->chan, b, sizeof b) > 0)
            ;
    nocancel_end(old);
}

/* What a zero line says: not ready, nothing switched, nothing closed. */
static struct lf_side unproved;

/* The client's line, once the client proved itself; zeros until then.  The
 * real client queues its proof before it sets `ready`, so a line that says
 * ready with no proof queued comes from someone else, and is refused for
 * good, as is a false proof. */
struct lf_side *handshake_peer_line(struct lf_conn *c)
{
    struct lf_side *line = &c->sh->side[!c->me];
    if (c->me != LF_SERVER)
        return line;
    if (!__atomic_load_n(&line->ready, __ATOMIC_ACQUIRE))
        return &unproved;
    lf_lock(&c->proof_lock);
    if (!c->peer_line && c->nonce && !c->refused && lf_confined) {
        believe_client(c);   /* a sandbox forbids recvmsg: taken on trust (section 9) */
        drop_proofs_confined(c->link);
    }
    else if (!c->peer_line && c->nonce && !c->refused && take_proof(c) == 1)
        believe_client(c);
    lf_unlock(&c->proof_lock);
    return c->peer_line ? c->peer_line : &unproved;
}

/* ---- client: taking the answer ---- */

/* The socket at the other end of our TCP connection, as sock_diag finds it:
 * 1 found, in *server; 0 not known now; -1 gone for good: no such socket, or
 * one its last holder closed (an orphan that sent its FIN; a socket not yet
 * accepted has no file either, but sent none).  Then no answer can prove
 * itself any more, its epoll having lost its target: the client need not
 * read one (docs/design.md, 4.3). */
int handshake_server_socket(int fd, const struct sockaddr_storage *dst, struct diag_result *server)
{
    struct sockaddr_storage ends[2] = { { 0 }, { 0 } };
    if (dst && dst->ss_family)
        ends[1] = *dst;   /* where we connected is our peer's address: one call fewer */
    server->state = -1;
    if (tcp_peer_owner(fd, server, ends) == 0)
        return 1;
    switch (server->state) {
    case 0:
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
    case TCP_TIME_WAIT:
    case TCP_CLOSE:
    case TCP_LAST_ACK:
    case TCP_CLOSING:
        return -1;
    default:
        return 0;
    }
}

/* The server's proof: the epoll it sent holds exactly `server`, the socket
 * sock_diag found at the other end of our TCP connection (4.7). */
int handshake_epoll_target(int ep, uint64_t *ino, uint64_t *dev)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    ssize_t n = read_small_file(path, text, sizeof text);
    return n > 0 && (size_t)n < sizeof text - 1 ? fdinfo_only_target(text, ino, dev) : -1;
}

static int server_proved(const struct diag_result *server, int ep)
{
    uint64_t ino, dev;
    return server && handshake_epoll_target(ep, &ino, &dev) == 0 && ino == server->inode &&
           dev == __atomic_load_n(&sockfs_dev, __ATOMIC_RELAXED);
}

/* Our own proof: our TCP socket, to the server that proved itself, on the
 * region's channel, naming the slot and the answer. */
static int send_proof(struct lf_conn *c, uint64_t nonce, int fd)
{
    struct proof_msg p = { LF_MAGIC, LF_VERSION, c->slot, 0, nonce };
    return c->link->chan >= 0 ? handshake_send_fds(c->link->chan, &p, sizeof p, &fd, 1) : -1;
}

/* Our part of the slot's lease, offered under the answer's nonce: taken (0),
 * unless the server revoked it meanwhile (its end went) or the slot
 * already serves a later answer (-1), or the server holds it (-2). */
static int take_offer(struct lf_conn *c, uint64_t nonce)
{
    uint64_t seen = nonce << 2 | OFFER_OFFERED;
    if (__atomic_compare_exchange_n(&c->sh->offer, &seen, nonce << 2 | OFFER_TAKEN, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return 0;
    return seen == (nonce << 2 | OFFER_HELD) ? -2 : -1;
}

/* The slot an answer names, mapped: in a new region it carries (fd, owned
 * from here on), or in one we hold.  One we do not hold (an exec'd image, a
 * region we let go) leaves the connection plain; the server hears of it by
 * the channel's EOF (handshake_unanswered). */
static struct lf_link *answered_region(const struct answer_msg *a, const int *fds, int u)
{
    /* A region the answer carries may be one we took from an earlier answer
     * (answers to concurrent connections are taken in any order). */
    struct lf_link *l = link_find(a->link_id, a->ring_size);
    if (l && fds)
        close_all(fds, 4);
    else if (fds)
        l = link_adopt(fds, a->link_id, a->ring_size, unix_peer_pid(u));
    return l;
}

static struct lf_conn *answered_slot(const struct answer_msg *a, const int *fds, int u)
{
    struct lf_link *l = answered_region(a, fds, u);
    if (!l)
        return NULL;
    struct lf_conn *c = link_covers(l, a->slot) ? shm_slot(l, a->slot, LF_CLIENT, 0) : NULL;
    link_put(l);
    if (c)
        c->leased_by = 0;   /* our part of the lease is ours once we took the offer */
    return c;
}

/* 1: a valid answer, its slot now in *out (with its proof epoll) and its
 * nonce in *nonce; 0: nothing to read yet; -1: not an answer.  server: the
 * socket at the other end of ours (NULL: unknown, refused). */
static int read_answer(int u, const struct diag_result *server, struct lf_conn **out,
                       uint64_t *nonce, int *alone)
{
    struct answer_msg a;
    int fds[ANSWER_FDS + 1], nfds, flags;
    ssize_t n = handshake_recv_fds(u, &a, sizeof a, 0, fds, ANSWER_FDS + 1, &nfds, &flags);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    struct lf_conn *c = NULL;
    if (n <= 0 || answer_parse(&a, (size_t)n, nfds, flags, &a) != 0) {
        close_all(fds, nfds);
        return -1;
    }
    int fresh = (a.flags & ANSWER_NEW_LINK) != 0;
    *alone = (a.flags & ANSWER_ALONE) != 0;
    int proof_ep = fds[fresh ? 4 : 0];   /* after the region, its doorbells and channel, if new */
    int consumed = 0;
    if (server_proved(server, proof_ep)) {
        c = answered_slot(&a, fresh ? fds : NULL, u);
        consumed = fresh ? 4 : 0;   /* the region's are the link's now, or closed */
    }
    if (!c) {
        close_all(fds + consumed, nfds - consumed);
        return -1;
    }
    c->proof_ep = proof_ep;   /* checked: closed with the low originals (switch_to) */
    *out = c;
    *nonce = a.nonce;
    return 1;
}

/* Publishes what the client did on TCP and switches its write direction. */
static void become_fast(struct lf_sock *s, struct lf_conn *c, int fd)
{
    struct lf_side *me = &c->sh->side[LF_CLIENT];
    __atomic_store_n(&me->rx_tcp_bytes, s->pending_rx, __ATOMIC_RELAXED);
    __atomic_store_n(&me->tx_tcp_bytes, s->pending_tx, __ATOMIC_RELAXED);
    __atomic_store_n(&me->arms_with_mb, 0, __ATOMIC_RELAXED);   /* until its sleeps are rare */
    c->tcp_shut_rd = s->pending_shut_rd;
    if (s->pending_shut_rd)   /* its reads end as after a SHUT_RD of ours (readiness, EOF) */
        __atomic_store_n(&me->shut_rd, 1, __ATOMIC_RELEASE);
    if (s->pending_shut_wr)   /* its FIN went on TCP: c2s stays there (4.4) */
        __atomic_store_n(&me->shut_wr, 1, __ATOMIC_RELEASE);
    /* Shut both ways on TCP: Linux resets the peer's later bytes, so they
     * must go to our TCP socket (peer_left), not on a ring read as data. */
    if (s->pending_shut_rd && s->pending_shut_wr)
        __atomic_store_n(&me->rx_refused, 1, __ATOMIC_RELEASE);
    else if (!sock_stdio_may_write(s) && !sock_written_past_us(s, fd, s->pending_tx))
        /* else its writes stay on TCP (4.4) */
        __atomic_store_n(&me->tx_state, TX_RING, __ATOMIC_RELEASE);
    conn_note_cpu(c, 1);   /* before ready: the server compares once it sees it */
    __atomic_store_n(&me->ready, 1, __ATOMIC_RELEASE);
    s->conn = c;
    if (s->dst.ss_family) {
        link_note_dst(c->link, &s->dst, s->dst_alone);   /* later connections there ask in it */
        shortlived_switched(&s->dst);
    }
    sock_set_kind(s, LF_FAST);   /* first: never PLAIN on the way (handshake_offer) */
    handshake_give_up(s);
    conn_ring_bell(c);
}

/* An answer taken: its spent descriptors (the proof epoll, and `spent`, a
 * fresh candidate, or -1) are closed, the region's having gone high with
 * its link, and the socket switches.  Returns 1. */
static int switch_to(struct lf_sock *s, struct lf_conn *c, int fd, int spent)
{
    int lows[2] = { spent, c->proof_ep };
    c->proof_ep = -1;
    ownfd_adopt(NULL, 0, lows, 2);   /* nothing to move high: it closes them */
    bufsize_apply(s, c, fd);
    become_fast(s, c, fd);
    return 1;
}

/* An answer held (by a server end on stdin until its program reads it
 * through us, handshake_consent), or not yet used by the server's program
 * (server_used), is asked at least this many
 * times, for at least HELD_NS, and then the connection stays plain.  (A
 * client that writes fast asks 64 times within a millisecond, before a
 * busy server's first read.) */
#define HELD_TRIES 64
#define HELD_NS (1000ull * 1000000)

/* An accepted socket may be handed to an image that passes us by: one
 * that reads it with stdio (an inetd's service: tcpserver or socat running
 * sha256sum), or one without loopfast at all (a static binary, a Go
 * program, a set-uid one: systemd-socket-activate's services, inetd's).
 * Until the server's program reads or writes it through us, no client
 * takes the answer.  One that uploads at once took it after 64 KiB, or with
 * its shutdown, and the stdio service waited on TCP for ever; one that had
 * read a banner the image wrote past us took it at its next write, and the
 * image waited on TCP for ever.  A fork or a shortage of descriptors
 * settles without waiting (pending.c). */
static int server_used(struct lf_sock *s, struct lf_conn *c)
{
    return s->settling || __atomic_load_n(&c->sh->side[LF_SERVER].used, __ATOMIC_ACQUIRE);
}

/* The answer's slot c taken and the socket switched: 1.  0: not (c freed,
 * `spent` left to the caller), or held by its server: then s keeps c, and
 * asks again at later calls (handshake_take_answer). */
int handshake_switch(struct lf_sock *s, struct lf_conn *c, uint64_t nonce, int fd, int spent)
{
    int r = server_used(s, c) ? take_offer(c, nonce) : -2;
    if (r == -2 && !s->held_tries)
        s->held_since = coarse_ns();
    if (r == -2 && (s->held_tries < HELD_TRIES || coarse_ns() - s->held_since < HELD_NS)) {
        s->held = c;
        s->held_nonce = nonce;
        s->held_tries++;
        ownfd_adopt1(&c->proof_ep);   /* kept across calls: made high */
        return 0;
    }
    if (r < 0) {
        conn_free(c);   /* revoked: not ours */
        return 0;
    }
    c->leased_by = lf_pid;   /* taken: ours to give back, whatever follows */
    conn_holder_note(c, lf_pid);
    if (send_proof(c, nonce, fd) < 0) {   /* last: a proof sent means we switch */
        conn_free(c);
        return 0;
    }
    return switch_to(s, c, fd, spent);
}

/* A held answer asked again; when its server still holds it after
 * HELD_TRIES, the connection stays plain. */
static int take_held(struct lf_sock *s, int fd)
{
    struct lf_conn *c = s->held;
    s->held = NULL;
    if (handshake_switch(s, c, s->held_nonce, fd, -1))
        return 1;
    if (!s->held)
        handshake_give_up(s);
    return 0;
}

/* The server is looked up once per call, before the first answer is read:
 * when its socket is gone (-1), the answer (six descriptors to receive and
 * close) is not read at all, and the client gives up.  *known: 0 not asked
 * yet, 1 found (in *server), -1 not known. */
static int look_up_server(int fd, struct diag_result *server, int *known)
{
    if (*known)
        return 0;
    int r = handshake_server_socket(fd, NULL, server);
    *known = r > 0 ? 1 : -1;
    return r < 0 ? -1 : 0;
}

/* An answer's connection on the offer's listener, if one came (set-up
 * under the socket's lock: no cancellation point, design 6.2). */
static int accept_offer(int offer_fd)
{
    int old = nocancel_begin();
    int u = libc.accept4(offer_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    nocancel_end(old);
    return u;
}

int handshake_take_answer(struct lf_sock *s, int fd)
{
    if (lf_confined) {   /* a sandbox may kill us at accept4, recvmsg or readlink (6.1) */
        handshake_give_up(s);
        return 0;
    }
    if (s->tcp_readers)
        return 0;   /* a read in flight would make the switch's byte count wrong */
    if (s->held)
        return take_held(s, fd);
    if (s->req_link) {
        int r = request_take(s, fd);
        if (r || s->held || sock_kind(s) != LF_PENDING || s->offer_fd < 0)
            return r;
    }
    struct diag_result server;
    int known = 0;   /* 0: not asked yet, 1: found, -1: not found */
    /* Read what is already accepted first: the usual case takes one accept4. */
    for (int i = 0; i < NCANDIDATES; i++) {
        if (s->candidates[i] >= 0)
            continue;
        int u = accept_offer(s->offer_fd);
        if (u < 0)
            break;
        if (look_up_server(fd, &server, &known) < 0) {
            libc.close_own(u);   /* low: now, not later */
            handshake_give_up(s);
            return 0;
        }
        s->candidates[i] = u;
        struct lf_conn *c;
        uint64_t nonce;
        int r = read_answer(u, known > 0 ? &server : NULL, &c, &nonce, &s->dst_alone);
        if (r == 0) {
            ownfd_adopt1(&s->candidates[i]);   /* kept across calls: made high */
            continue;
        }
        s->candidates[i] = -1;
        if (r == 1 && handshake_switch(s, c, nonce, fd, u))
            return 1;
        libc.close_own(u);
        if (s->held)
            return 0;
    }
    for (int i = 0; i < NCANDIDATES; i++) {
        struct lf_conn *c;
        if (s->candidates[i] < 0)
            continue;
        if (look_up_server(fd, &server, &known) < 0) {
            handshake_give_up(s);
            return 0;
        }
        uint64_t nonce;
        int r = read_answer(s->candidates[i], known > 0 ? &server : NULL, &c, &nonce,
                            &s->dst_alone);
        if (r == 0)
            continue;
        reap_fd(s->candidates[i]);
        s->candidates[i] = -1;
        if (r == 1 && handshake_switch(s, c, nonce, fd, -1))
            return 1;
        if (s->held)
            return 0;
    }
    return 0;
}

/* The offer's sockets are closed later (reap.c): taking or giving up on an
 * answer happens on the way to the caller's data. */
void handshake_give_up(struct lf_sock *s)
{
    if (s->req_link)
        request_withdraw(s);
    if (s->held) {
        conn_free(s->held);   /* never taken: its server revokes it */
        s->held = NULL;
    }
    for (int i = 0; i < NCANDIDATES; i++) {
        reap_fd(s->candidates[i]);
        s->candidates[i] = -1;
    }
    reap_fd(s->offer_fd);
    s->offer_fd = -1;
    if (sock_kind(s) == LF_PENDING)
        sock_set_kind(s, LF_PLAIN);
}

/* A connection whose client never takes its answer (a short one: its first
 * exchange stays on TCP, 4.3) would leave the client holding no region,
 * and every later connection of the pair would make an offer and get one
 * carried again.  So a client closing a pending socket whose answer is
 * queued, with no region for its destination yet, keeps the region the
 * answer carries or names (not the slot: the server revokes that), and
 * later connections there are asked for in it (request.c).  Nothing of the
 * server is believed for that: each connection asked for in the region
 * still needs its server's proof before the client switches, so an
 * impostor's region only keeps the client's connections plain, until one
 * goes unanswered and the next offers again.
 *
 * Taking the region costs about 25 system calls (the answer, its
 * descriptors checked and moved high, the region mapped), which doubled
 * the close of a one-shot client (connect, request, reply, close, exit).
 * So the close only sets the answer's connection aside (kept[]), and the
 * region is taken at the process's next connect(), which is what it is
 * for; a process that never connects again never pays. */
#define KEPT_MAX 4

static struct kept_answer {
    int fd;                         /* the answer's connection, or the offer's listener; -1: none */
    int listener;                   /* fd is the listener: the answer's connection is queued there */
    int busy;                       /* claimed by a thread that fills or takes it */
    struct sockaddr_storage dst;
} kept[KEPT_MAX] = { { .fd = -1 }, { .fd = -1 }, { .fd = -1 }, { .fd = -1 } };
static int kept_count;
/* Guards only the claims: no other lock is taken under it (each lock's
 * fork handler takes it in a fixed order, which nesting would invert). */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void kept_lock_for_fork(void) { lf_lock(&kept_lock); }
static void kept_unlock_after_fork(void) { lf_unlock(&kept_lock); }

__attribute__((constructor)) static void kept_init(void)
{
    lf_atfork(kept_lock_for_fork, kept_unlock_after_fork, kept_unlock_after_fork);
}

/* The region the answer on u carries or names, kept for dst. */
static void keep_region_from(int u, const struct sockaddr_storage *dst)
{
    struct answer_msg a;
    int fds[ANSWER_FDS + 1], nfds, flags, consumed = 0;
    ssize_t n = handshake_recv_fds(u, &a, sizeof a, 0, fds, ANSWER_FDS + 1, &nfds, &flags);
    struct lf_link *l = NULL;
    if (n > 0 && answer_parse(&a, (size_t)n, nfds, flags, &a) == 0) {
        int fresh = (a.flags & ANSWER_NEW_LINK) != 0;
        l = answered_region(&a, fresh ? fds : NULL, u);
        consumed = fresh ? 4 : 0;   /* the link's now, or closed */
    }
    if (l) {
        link_note_dst(l, dst, (a.flags & ANSWER_ALONE) != 0);
        link_put(l);
    }
    close_all(fds + consumed, nfds - consumed);
}

/* The same through fd, an answer's connection, or for a listener the
 * connection queued on it: 0 when none is queued. */
static int keep_region_via(int fd, int listener, const struct sockaddr_storage *dst)
{
    int u = listener ? accept_offer(fd) : fd;
    if (u < 0)
        return 0;
    keep_region_from(u, dst);
    if (listener)
        libc.close_own(u);
    return 1;
}

/* Claims a free entry for dst: its index; -1: none free; -2: one holds
 * dst already. */
static int kept_claim_free(const struct sockaddr_storage *dst)
{
    int slot = -1, same = 0;
    lf_lock(&kept_lock);
    for (int i = 0; i < KEPT_MAX; i++) {
        int used = kept[i].busy || kept[i].fd >= 0;   /* busy first: its claimer writes fd */
        same |= used && memcmp(&kept[i].dst, dst, sizeof *dst) == 0;
        if (!used && slot < 0)
            slot = i;
    }
    if (same)
        slot = -2;
    if (slot >= 0) {
        kept[slot].busy = 1;
        kept[slot].dst = *dst;
    }
    lf_unlock(&kept_lock);
    return slot;
}

/* Claims entry i if it holds an answer. */
static int kept_claim_held(int i)
{
    lf_lock(&kept_lock);
    /* busy first: a claimer writes fd outside this lock (ownfd_close) */
    int mine = !kept[i].busy && kept[i].fd >= 0;
    if (mine)
        kept[i].busy = 1;
    lf_unlock(&kept_lock);
    return mine;
}

static void kept_release(int i, int count)
{
    lf_lock(&kept_lock);
    kept[i].busy = 0;
    __atomic_add_fetch(&kept_count, count, __ATOMIC_RELEASE);
    lf_unlock(&kept_lock);
}

/* Takes the regions set aside (at a connect), or only drops them (drop: a
 * process out of descriptors or confined).  How many were dropped. */
static int kept_settle(int drop)
{
    if (!__atomic_load_n(&kept_count, __ATOMIC_ACQUIRE))
        return 0;
    int dropped = 0;
    for (int i = 0; i < KEPT_MAX; i++) {
        if (!kept_claim_held(i))
            continue;
        if (drop || lf_confined || link_knows_dst(&kept[i].dst) ||
            !keep_region_via(kept[i].fd, kept[i].listener, &kept[i].dst))
            dropped++;
        ownfd_close(&kept[i].fd);
        kept_release(i, -1);
    }
    return dropped;
}

void handshake_kept_take(void) { kept_settle(0); }
int handshake_kept_drop(void) { return kept_settle(1); }

/* A forked child (one thread) closes its copies, also of entries another
 * thread of the parent was filling or taking. */
void handshake_kept_after_fork_child(void)
{
    for (int i = 0; i < KEPT_MAX; i++) {
        kept[i].busy = 0;
        ownfd_close(&kept[i].fd);
    }
    kept_count = 0;
}

void handshake_keep_region(struct lf_sock *s)
{
    if (sock_kind(s) != LF_PENDING || s->offer_fd < 0 || !s->dst.ss_family || lf_confined ||
        link_knows_dst(&s->dst))   /* kept already, or its server does not accept alone */
        return;
    if (s->held) {
        link_note_dst(s->held->link, &s->dst, s->dst_alone);
        return;
    }
    /* an answer's connection read already, else the listener it is queued
     * on (taking it costs an accept, a move high and a close, which wait) */
    int u = -1, listener = 0;
    for (int i = 0; i < NCANDIDATES && u < 0; i++)
        if ((u = s->candidates[i]) >= 0)
            s->candidates[i] = -1;   /* ours now: handshake_give_up closes the others */
    if (u < 0) {
        u = s->offer_fd;
        s->offer_fd = -1;
        listener = 1;
    }
    ownfd_moved(u, &u);
    int slot = kept_claim_free(&s->dst);
    if (slot < 0) {
        if (slot == -1)   /* no room: at once, as before */
            keep_region_via(u, listener, &s->dst);
        ownfd_close(&u);   /* (-2: dst's is set aside already) */
        return;
    }
    kept[slot].fd = u;
    kept[slot].listener = listener;
    ownfd_moved(u, &kept[slot].fd);
    kept_release(slot, 1);
}
