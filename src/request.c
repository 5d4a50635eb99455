/*
 * request.c - later connections between two processes that already share a
 * region, asked for in that region instead of offered (docs/design.md, 4.8).
 *
 * A client remembers, per region, the server address whose answers came
 * from it (when that server's listener is its process's alone).  Its next
 * connect() there makes no offer (no unix listener): it writes its TCP
 * socket's inode in one of the region's request words.  The server's
 * accept() looks the client socket up as for an offer (sock_diag), finds
 * the inode in a region of its own, takes a free slot and writes it in the
 * word before accept() returns: so a client that read a TCP byte and finds
 * no slot in its word will never get one.  The client switches as it
 * would after an answer (its first exchange stays on TCP): it checks the
 * server's proof, takes its part of the slot's lease and sends its own
 * proof.  The server's proof is its descriptor of the socket, named in the
 * slot and read by the client in /proc/<server>/fd; a client that may not
 * read that asks for epolls on the region's channel instead, as offers
 * use.  Nothing is made for the connection on either end.
 *
 * What a request word says is a hint, as an offer's name is: the server
 * answers a request only in a region whose client holds it, and neither
 * end switches before the other proved, with the kernel as witness, that it
 * holds its end of the TCP connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define TAG_BITS 0xffffffffffff0000ull   /* the inode and our tag: whose request it is */
#define DROPS_PER_READ 16                /* answers let go before their proofs are read away */

/* ---- client ---- */

/* TCP spoke and no answer came: the destination has another acceptor now
 * (a server that was alone forked, or handed its listener on).  The next
 * connection there offers, and its answer says whether to ask again. */
void request_missed(struct lf_sock *s)
{
    link_forget_dst(&s->dst);
    request_withdraw(s);
}

/* Whether we may read the server's /proc/<pid>/fd, where a requested
 * connection's server proves itself by default.  The directory belongs to
 * the server's uid while it is dumpable, to root otherwise, mode 0500, so
 * the check our effective ids pass is the one its readlink would pass in
 * the usual cases (another uid: squid's workers as `proxy`, a server that
 * made itself not dumpable, hidepid).  Looked at once a region, before the
 * first request: a client refused there used to find out with that
 * request's readlink, and the connection stayed plain (4.8). */
static void probe_proc(struct lf_link *l)
{
    l->proc_probed = 1;
    if (lf_confined || l->peer <= 0 || __atomic_load_n(&l->region->epoll_proofs, __ATOMIC_RELAXED))
        return;
    char path[32];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)l->peer);
    if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0)
        __atomic_store_n(&l->region->epoll_proofs, 1, __ATOMIC_RELAXED);   /* before the word */
}

int request_post(struct lf_sock *s, uint64_t ino)
{
    static uint16_t next_tag;
    if (!s->dst.ss_family)
        return -1;
    struct lf_link *l = link_for_dst(&s->dst);
    if (!l)
        return -1;
    if (!l->proc_probed)
        probe_proc(l);
    uint64_t tag = __atomic_add_fetch(&next_tag, 1, __ATOMIC_RELAXED);
    uint64_t w = (ino & 0xffffffffu) << 32 | tag << 16;
    for (uint32_t i = 0; i < LINK_REQUESTS; i++) {
        uint64_t free_word = 0;
        if (__atomic_compare_exchange_n(&l->region->request[i], &free_word, w, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
            /* A server that stops answering here clears `requests` first
             * and then looks for requests: one of us sees the other. */
            if (!__atomic_load_n(&l->region->requests, __ATOMIC_SEQ_CST) &&
                __atomic_compare_exchange_n(&l->region->request[i], &w, 0, 0, __ATOMIC_SEQ_CST,
                                            __ATOMIC_RELAXED))
                break;   /* withdrawn unseen: this one offers */
            s->req_link = l;
            s->req_idx = i;
            s->req_word = w;
            s->req_slot = -1;
            return 0;
        }
    }
    link_put(l);   /* all asked already: this one offers */
    return -1;
}

/* The proofs the server sent for slots whose client socket waits for one
 * (read_word set `wanted`); NULL when there is no memory for them. */
static struct link_proof *proofs_of(struct lf_link *l)
{
    if (!l->proofs)
        l->proofs = calloc(LINK_SLOTS, sizeof *l->proofs);
    return l->proofs;
}

/* Whether the proof for slot k is one a socket of ours waits for: its
 * answer was read, or is still in a request word.  Channel lock held. */
static int proof_wanted(struct lf_link *l, uint32_t k)
{
    if (l->proofs[k].wanted)
        return 1;
    for (uint32_t i = 0; i < LINK_REQUESTS; i++) {
        uint64_t w = __atomic_load_n(&l->region->request[i], __ATOMIC_ACQUIRE);
        if (w && (w & 0xffff) == k + 1)
            return 1;
    }
    return 0;
}

/* What a proof's epoll holds, recorded; the epoll itself is closed. */
static void record_proof(struct lf_link *l, const struct proof_msg *p, int ep)
{
    uint64_t ino, dev;
    if (handshake_epoll_target(ep, &ino, &dev) == 0) {
        l->proofs[p->slot].nonce = p->nonce;
        l->proofs[p->slot].ino = ino;
        l->proofs[p->slot].dev = dev;
    }
}

/* Whether any proof queued may be one a socket of ours waits for.
 * Channel lock held. */
static int any_wanted(struct lf_link *l)
{
    if (l->proofs_wanted)
        return 1;
    for (uint32_t i = 0; i < LINK_REQUESTS; i++)
        if (__atomic_load_n(&l->region->request[i], __ATOMIC_ACQUIRE) & 0xffff)
            return 1;
    return 0;
}

/* Proofs nobody waits for, dropped many at a time: received with no room
 * for their descriptors, which the kernel then closes itself.  How many. */
static int drop_proofs(struct lf_link *l)
{
    struct mmsghdr v[DROPS_PER_READ];
    struct proof_msg p[DROPS_PER_READ];
    struct iovec iov[DROPS_PER_READ];
    memset(v, 0, sizeof v);
    for (int i = 0; i < DROPS_PER_READ; i++) {
        iov[i] = (struct iovec){ &p[i], sizeof p[i] };
        v[i].msg_hdr.msg_iov = &iov[i];
        v[i].msg_hdr.msg_iovlen = 1;
    }
    long n = syscall(SYS_recvmmsg, l->chan, v, DROPS_PER_READ, MSG_DONTWAIT, NULL);
    return n > 0 ? (int)n : 0;
}

/* Reads the server's proofs queued on the channel: the ones a socket of
 * ours waits for are recorded, the others (connections that never switched)
 * dropped; until for_slot's is recorded, or all of them (LINK_SLOTS).
 * Channel lock held. */
static void read_proofs(struct lf_link *l, uint32_t for_slot)
{
    if (lf_confined)
        return;   /* recvmsg may be forbidden (6.1): the proofs stay queued */
    if (!l->proofs || !any_wanted(l)) {
        for (int rounds = 0; rounds < 4 && drop_proofs(l) == DROPS_PER_READ; rounds++)
            ;
        return;
    }
    for (int budget = 4 * DROPS_PER_READ; budget > 0; budget--) {
        struct proof_msg p;
        int fds[2], nfds, flags;
        ssize_t n = handshake_recv_fds(l->chan, &p, sizeof p, 0, fds, 2, &nfds, &flags);
        if (n < 0)
            return;
        if (n == 0 && !nfds && !(flags & MSG_CTRUNC))
            return;   /* the server's end is gone */
        if (proof_parse(&p, (size_t)n, nfds, flags, &p) == 0 && proof_wanted(l, p.slot))
            record_proof(l, &p, fds[0]);
        for (int i = 0; i < nfds; i++)
            libc.close_own(fds[i]);
        if (for_slot < LINK_SLOTS && l->proofs[for_slot].nonce)
            return;   /* the one looked for: the rest can wait */
    }
}

/* A slot whose proof a socket of ours waits for, or no longer.  Channel
 * lock held. */
static void want_proof(struct lf_link *l, uint32_t slot, int on)
{
    if (l->proofs[slot].wanted != on)
        l->proofs_wanted += on ? 1 : -1;
    if (on)
        l->proofs[slot].wanted = 1;
    else
        memset(&l->proofs[slot], 0, sizeof l->proofs[slot]);
}

/* Our request word, read: 1 the server answered (the slot in req_slot,
 * the word free again), 0 not yet, -1 never (the word was taken from us). */
static int read_word(struct lf_sock *s)
{
    if (s->req_slot >= 0)
        return 1;
    if (!s->req_word)
        return -1;
    struct lf_link *l = s->req_link;
    uint64_t *word = &l->region->request[s->req_idx];
    uint64_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    uint32_t slot = (uint32_t)(w & 0xffff) - 1;
    uint64_t mine = s->req_word;
    if ((w & TAG_BITS) == mine && !(w & 0xffff))
        return 0;
    s->req_word = 0;
    if ((w & TAG_BITS) != mine || slot >= LINK_SLOTS)
        return -1;   /* scribbled on by the peer: no answer to believe */
    lf_lock(&l->chan_lock);
    struct link_proof *proofs = proofs_of(l);
    if (proofs)
        want_proof(l, slot, 1);   /* before the word goes: read_proofs keeps it */
    lf_unlock(&l->chan_lock);
    __atomic_compare_exchange_n(word, &w, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    s->req_slot = proofs ? (int)slot : -1;
    return proofs ? 1 : -1;
}

int request_answered(struct lf_sock *s)
{
    return read_word(s) > 0;
}

/* The server's proof for our slot, taken out of the record: 0 when it
 * never came (lost with a descriptor that could not be received). */
static struct link_proof take_recorded(struct lf_link *l, uint32_t slot)
{
    lf_lock(&l->chan_lock);
    if (!l->proofs[slot].nonce)
        read_proofs(l, slot);
    struct link_proof got = l->proofs[slot];
    want_proof(l, slot, 0);
    lf_unlock(&l->chan_lock);
    return got;
}

/* The server's proof by /proc: its descriptor `server_fd` names the socket
 * at the other end of our connection.  Reading another process's
 * /proc/<pid>/fd takes what ptrace's read check takes (the same uid, a
 * dumpable process); when it is refused, or names something else (the
 * server moved or handed the socket on, our /proc is another pid
 * namespace's), the server is told to prove with epolls from now on
 * (`epoll_proofs`), which hold wherever the socket goes, and this
 * connection stays plain. */
static int proved_by_proc(struct lf_link *l, int32_t server_fd, const struct diag_result *server)
{
    char path[64], want[48], got[48];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)l->peer, (int)server_fd);
    ssize_t n = readlink(path, got, sizeof got - 1);
    int w = snprintf(want, sizeof want, "socket:[%llu]", (unsigned long long)server->inode);
    if (n == w && memcmp(got, want, (size_t)n) == 0)
        return 1;
    __atomic_store_n(&l->region->epoll_proofs, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Our slot, mapped once its server proved itself (by /proc, or by the
 * epoll its proof carried); its nonce in *nonce.  NULL: not proved. */
static struct lf_conn *proved_slot(struct lf_sock *s, int fd, uint32_t slot, uint64_t *nonce)
{
    struct lf_link *l = s->req_link;
    struct diag_result server;
    struct lf_conn *c = link_covers(l, slot) ? shm_slot(l, slot, LF_CLIENT, 0) : NULL;
    int32_t server_fd = c ? __atomic_load_n(&c->sh->server_fd, __ATOMIC_ACQUIRE) : -1;
    int ok = 0;
    if (c && server_fd >= 0) {   /* no proof on the channel: forget the slot there */
        lf_lock(&l->chan_lock);
        want_proof(l, slot, 0);
        lf_unlock(&l->chan_lock);
        uint64_t offer = __atomic_load_n(&c->sh->offer, __ATOMIC_ACQUIRE);
        *nonce = offer >> 2;
        ok = offer >> 2 && ((offer & 3) == OFFER_OFFERED || (offer & 3) == OFFER_HELD) &&
             handshake_server_socket(fd, &s->dst, &server) > 0 &&
             proved_by_proc(l, server_fd, &server);
    } else {
        struct link_proof got = take_recorded(l, slot);
        *nonce = got.nonce;
        ok = c && got.nonce && handshake_server_socket(fd, &s->dst, &server) > 0 &&
             server.inode == got.ino && got.dev == handshake_sockfs_dev();
    }
    if (c && !ok) {
        conn_free(c);
        c = NULL;
    }
    return c;
}

int request_take(struct lf_sock *s, int fd)
{
    int answered = read_word(s);
    if (answered < 0)
        request_withdraw(s);   /* lost: its offer, if any, may still be answered */
    if (answered <= 0)
        return 0;
    struct lf_link *l = s->req_link;
    uint64_t nonce = 0;
    struct lf_conn *c = proved_slot(s, fd, (uint32_t)s->req_slot, &nonce);
    s->req_slot = -1;   /* its record is gone: nothing left to let go */
    if (c)
        c->leased_by = 0;   /* our part of the lease is ours once we took the offer */
    s->req_link = NULL;   /* the connection holds the region now, or nothing does */
    s->dst_alone = 1;     /* its server still answers here */
    link_put(l);
    if (c && handshake_switch(s, c, nonce, fd, -1))
        return 1;
    if (!s->held)
        handshake_give_up(s);
    return 0;
}

/* A socket that gives up its request: its word goes back to free, and the
 * proof of an answer it will not take is read away with the next few. */
void request_withdraw(struct lf_sock *s)
{
    struct lf_link *l = s->req_link;
    if (s->req_word) {
        uint64_t mine = s->req_word;
        if (!__atomic_compare_exchange_n(&l->region->request[s->req_idx], &mine, 0, 0,
                                         __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            read_word(s);   /* answered meanwhile: its proof is queued */
        s->req_word = 0;
    }
    if (s->req_slot >= 0) {
        lf_lock(&l->chan_lock);
        want_proof(l, (uint32_t)s->req_slot, 0);
        /* proofs by /proc put nothing on the channel */
        if (__atomic_load_n(&l->region->epoll_proofs, __ATOMIC_RELAXED) &&
            ++l->proofs_unread >= DROPS_PER_READ) {
            l->proofs_unread = 0;
            read_proofs(l, LINK_SLOTS);
        }
        lf_unlock(&l->chan_lock);
        s->req_slot = -1;
    }
    s->req_link = NULL;
    link_put(l);
}

/* ---- server ---- */

struct request_spot { uint32_t idx; uint64_t word; };

/* An epoll proof goes on the region's channel first, then the slot in the
 * request word: a client that sees its slot finds the proof queued (a proof
 * by /proc is the slot's server_fd, written already). */
static int tell_request(struct lf_conn *c, void *arg)
{
    struct request_spot *at = arg;
    struct proof_msg p = { LF_MAGIC, LF_VERSION, c->slot, 0, c->nonce };
    uint64_t asked = at->word;
    return (c->proof_ep < 0 || handshake_send_fds(c->link->chan, &p, sizeof p, &c->proof_ep, 1) == 0) &&
                   __atomic_compare_exchange_n(&c->link->region->request[at->idx], &asked,
                                               asked | (c->slot + 1), 0, __ATOMIC_SEQ_CST,
                                               __ATOMIC_RELAXED)
               ? 0
               : -1;   /* withdrawn: an epoll proof sent is read away by the client */
}

int request_answer(int fd, const struct diag_result *client, struct sockaddr_storage ends[2])
{
    struct request_spot at;
    struct lf_link *l = link_requested(client->inode, &at.idx, &at.word);
    if (!l)
        return 0;
    uint32_t slot;
    struct lf_conn *c = NULL;
    if (handshake_proof_room() && link_claim(l, &slot) == 0) {
        c = shm_slot(l, slot, LF_SERVER, SLOT_FRESH);
        if (!c)
            __atomic_store_n(&l->region->lease[slot], 0, __ATOMIC_RELEASE);
    }
    link_put(l);
    if (!c)
        return 0;   /* no slot (the region filled): an offer, if any, may be answered */
    /* Proved by /proc unless the client said it cannot read ours: then by
     * an epoll holding our socket, as an answer to an offer is (4.7). */
    int by_epoll = __atomic_load_n(&c->link->region->epoll_proofs, __ATOMIC_RELAXED) != 0;
    if ((by_epoll && spare_take_epoll(&c->proof_ep) < 0) ||
        handshake_server_end(c, fd, client, ends) < 0) {
        if (by_epoll && c->proof_ep < 0)
            link_give_back(c);
        conn_free(c);
        return 1;
    }
    handshake_commit(fd, c, tell_request, &at);
    return 1;
}
