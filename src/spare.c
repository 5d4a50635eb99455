/*
 * spare.c - the server's next connection, made before it is needed.
 *
 * Answering an offer needs a sealed, mapped memfd, four eventfds, the
 * epoll that carries the server's proof and the unix socket that carries the
 * answer: ten system calls to make them and eight to move them high.  Made inside accept() they would sit between the client's SYN
 * and its first reply, so an opted-in accept() makes them first, before it
 * waits, and the connection it returns takes them.  One spare per process:
 * a header page of memory and seven descriptors.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "internal.h"

static struct lf_conn *spare;   /* swapped atomically: threads may accept at once */

/* A new connection's server end: memfd mapped, bells made, the unix socket
 * to the client's offer not yet connected. */
static struct lf_conn *server_conn(void)
{
    struct lf_conn *c = shm_create(lf_config.ring_size);
    if (!c)
        return NULL;
    c->proof_ep = epoll_make_own();   /* not the program's: no reserve for it */
    c->proof_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int ok = c->proof_ep >= 0 && c->proof_fd >= 0;
    for (int i = 0; i < 2; i++) {
        c->bell_mine[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        c->bell_peer[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ok &= c->bell_mine[i] >= 0 && c->bell_peer[i] >= 0;
    }
    int *const own[] = { &c->memfd, &c->bell_mine[0], &c->bell_mine[1],
                         &c->bell_peer[0], &c->bell_peer[1], &c->proof_ep, &c->proof_fd };
    if (ok && ownfd_adopt(own, 7, NULL, 0) == 0)   /* out of the program's numbers */
        return c;
    conn_free(c);   /* closes the memfd and bells too */
    return NULL;
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
    return c;
}

void spare_prepare(void)
{
    struct lf_conn *c = take_own();
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
    conn_free(c);
    return 1 + 4 + 1 + 1;
}

struct lf_conn *spare_take(void)
{
    struct lf_conn *c = take_own();
    return c ? c : server_conn();
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
