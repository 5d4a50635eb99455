/*
 * spare.c - the server's next connection, made before it is needed.
 *
 * Answering an offer needs a mapped slot of a region (a new one, with its
 * two doorbells, for a first contact: link.c), the
 * epoll that carries the server's proof and the unix socket that carries the
 * answer: ten system calls to make them and eight to move them high.  Made inside accept() they would sit between the client's SYN
 * and its first reply, so an opted-in accept() makes them first, before it
 * waits, and the connection it returns takes them.  One spare per process:
 * a header page of memory and seven descriptors.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "internal.h"

static struct lf_conn *spare;   /* swapped atomically: threads may accept at once */

/* The descriptors an answer sends and keeps, made where missing (a spare
 * whose descriptors went to a slot of an existing region keeps its own
 * region, and only these are made again). */
static int refill(struct lf_conn *c)
{
    int *const all[] = { &c->proof_ep, &c->proof_fd };
    int *fresh[2], n = 0, ok = 1;
    for (int i = 0; i < 2; i++) {
        if (*all[i] >= 0)
            continue;
        if (all[i] == &c->proof_ep)
            *all[i] = epoll_make_own();   /* not the program's: no reserve for it */
        else
            *all[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ok &= *all[i] >= 0;
        fresh[n++] = all[i];
    }
    if (ok && (n == 0 || ownfd_adopt(fresh, n, NULL, 0) == 0))   /* out of the program's numbers */
        return 0;
    for (int i = 0; i < n; i++)
        ownfd_close(fresh[i]);
    return -1;
}

/* Short of descriptors for a new region (six), an answer can still name a
 * slot of a region its client holds: a spare with no region of its own
 * (no link), only the two descriptors every answer needs. */
static struct lf_conn *light_conn(void)
{
    struct lf_conn *c = conn_bare(LF_SERVER);
    if (!c)
        return NULL;
    c->made_by = lf_pid;
    if (refill(c) == 0)
        return c;
    conn_free(c);
    return NULL;
}

/* A new connection's server end: slot 0 of a new region (with its
 * doorbells), the unix socket to the client's offer not yet connected. */
static struct lf_conn *server_conn(void)
{
    struct lf_link *l = link_create(config_ring_size());
    uint32_t slot;
    struct lf_conn *c =
        l && link_claim(l, &slot) == 0 ? shm_slot(l, slot, LF_SERVER, SLOT_FRESH) : NULL;
    if (l)
        link_put(l);   /* the connection holds it */
    if (c && refill(c) == 0)
        return c;
    if (c)
        conn_free(c);
    return light_conn();
}

/* Moves the spare's descriptors to c, a slot of a region its client already
 * holds; the spare keeps its own region. */
void spare_transplant(struct lf_conn *spare, struct lf_conn *c)
{
    int *const from[] = { &spare->proof_ep, &spare->proof_fd };
    int *const to[] = { &c->proof_ep, &c->proof_fd };
    for (int i = 0; i < 2; i++) {
        *to[i] = *from[i];
        ownfd_moved(*from[i], to[i]);
        *from[i] = -1;
    }
}

/* A spare made before a fork belongs to the parent: the child's copy maps the
 * same memory, so using it would wire two connections to one ring. */
static struct lf_conn *take_own(void)
{
    struct lf_conn *c = __atomic_exchange_n(&spare, NULL, __ATOMIC_ACQ_REL);
    if (c && c->made_by != lf_pid) {
        conn_free(c);   /* our copies only; the parent's stay */
        c = NULL;
    }
    if (c && refill(c) < 0) {
        conn_free(c);
        c = NULL;
    }
    return c;
}

void spare_prepare(void)
{
    struct lf_conn *c = take_own();
    if (c && !c->link) {   /* a light one: a full one again, if there is room now */
        conn_free(c);
        c = NULL;
    }
    if (!c)
        c = server_conn();
    if (c && !__atomic_compare_exchange_n(&spare, &(struct lf_conn *){ NULL }, c, 0,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        conn_free(c);   /* another thread made one meanwhile */
}

int spare_drop(void)
{
    struct lf_conn *c = __atomic_exchange_n(&spare, NULL, __ATOMIC_ACQ_REL);
    if (!c)
        return 0;
    int n = c->link ? 1 + 2 + 2 : 0;   /* its region, doorbells, channel (both ends) */
    conn_free(c);
    return n + 1 + 1;   /* and its proof epoll and unix socket */
}

struct lf_conn *spare_take(void)
{
    struct lf_conn *c = take_own();
    return c ? c : server_conn();
}

/* An answer to a request (request.c) sends the proof epoll alone: the
 * spare keeps the rest, and makes its epoll again before the next wait. */
int spare_take_epoll(int *where)
{
    struct lf_conn *c = take_own();
    if (!c)
        return ownfd_new(where, epoll_make_own());
    *where = c->proof_ep;
    ownfd_moved(c->proof_ep, where);
    c->proof_ep = -1;
    spare_return(c, ECONNREFUSED);
    return *where;
}

/* An answer that was not sent (the client made no offer: its name refused
 * the connection, or its backlog is full): the spare, untouched, is kept
 * for the next one.  A unix socket whose connect failed so is unchanged. */
void spare_return(struct lf_conn *c, int connect_errno)
{
    if ((connect_errno != ECONNREFUSED && connect_errno != EAGAIN) || c->made_by != lf_pid ||
        !__atomic_compare_exchange_n(&spare, &(struct lf_conn *){ NULL }, c, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        conn_free(c);
}
