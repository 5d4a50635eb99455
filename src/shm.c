/*
 * shm.c - the shared memory of one connection: a slot of its link's region
 * (link.c), initialised by the server, checked and mapped by both ends.
 *
 * Layout: one header page (struct lf_shared), then the client-to-server ring
 * data, then the server-to-client ring data.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct lf_conn *conn_bare(int me)
{
    struct lf_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->me = me;
    c->proof_ep = c->proof_fd = -1;
    c->leased_by = lf_pid;
    /* Its set-up just saw the peer's socket alive (sock_diag, its proof):
     * the first look at TCP for its death waits the usual millisecond (it
     * was a poll() at each end's first write, on every connection). */
    c->next_tcp_check = coarse_ns() + 1000000;
    pthread_mutex_init(&c->proof_lock, NULL);
    pthread_mutex_init(&c->rx_lock, NULL);
    pthread_mutex_init(&c->tx_lock, NULL);
    return c;
}

static struct lf_conn *conn_new(void *map, size_t len, int me, uint64_t ring_size)
{
    struct lf_conn *c = conn_bare(me);
    if (!c)
        return NULL;
    c->sh = map;
    c->map_len = len;
    unsigned char *data = (unsigned char *)map + LF_HEADER_SIZE;
    int tx = me == LF_CLIENT ? LF_C2S : LF_S2C;
    ring_init(&c->tx, &c->sh->ring[tx], data + (size_t)tx * ring_size, ring_size);
    ring_init(&c->rx, &c->sh->ring[!tx], data + (size_t)!tx * ring_size, ring_size);
    ring_hold(&c->tx, config_ring_hold(ring_size));
    ring_hold(&c->rx, config_ring_hold(ring_size));
    ring_limit(&c->tx, memlimit_budget());   /* under a memory limit: pages from its budget */
    c->peer_line = &c->sh->side[!me];   /* a server's waits for the client's proof */
    return c;
}

/* The server writes a fresh slot's header through the mapping; a client
 * checks what a hostile server could get wrong (magic, version, ring size,
 * read once) before it believes the slot. */
static int slot_header(struct lf_shared *sh, int fresh, uint64_t ring_size)
{
    if (fresh) {
        memset(sh, 0, sizeof *sh);   /* a slot given back unpunched (sandbox) keeps old values */
        sh->magic = LF_MAGIC;
        sh->version = LF_VERSION;
        sh->ring_size = ring_size;
        sh->side[LF_CLIENT].holders = 1;
        sh->side[LF_SERVER].holders = 1;
        sh->side[LF_SERVER].holder_pid[0] = lf_pid;
        sh->stats[LF_SERVER].pid = lf_pid;
        return 0;
    }
    return __atomic_load_n(&sh->magic, __ATOMIC_RELAXED) == LF_MAGIC &&
                   __atomic_load_n(&sh->version, __ATOMIC_RELAXED) == LF_VERSION &&
                   __atomic_load_n(&sh->ring_size, __ATOMIC_RELAXED) == ring_size
               ? 0
               : -1;
}

struct lf_conn *shm_slot(struct lf_link *l, uint32_t slot, int me, int flags)
{
    int fresh = flags & SLOT_FRESH;
    if (slot >= LINK_SLOTS)
        return NULL;
    size_t len = (size_t)l->slot_size;
    void *map = link_take_map(l, slot);
    if (!map)
        map = addrspace_map(len, l->fd, (off_t)link_slot_offset(l, slot));
    if (map == MAP_FAILED)
        return NULL;
    struct lf_conn *c = NULL;
    if (slot_header(map, fresh, l->ring_size) == 0)
        c = conn_new(map, len, me, l->ring_size);
    if (!c) {
        addrspace_unmap(map, len);
        return NULL;
    }
    link_get(l);
    c->link = l;
    c->slot = slot;
    if (!(flags & SLOT_HOLDER))
        my_stats(c)->pid = lf_pid;
    if (fresh) {
        c->made_by = lf_pid;
        c->peer_line = NULL;
        conn_note_cpu(c, 1);   /* ours, for the client to compare (wait.c) */
    }
    return c;
}

void conn_free(struct lf_conn *c)
{
    trim_forget(c);
    ownfd_close(&c->proof_ep);
    ownfd_close(&c->proof_fd);
    if (c->link) {   /* a light spare has none (spare.c) */
        link_keep_map(c->link, c->slot, c->sh);
        link_release(c);
    }
    pthread_mutex_destroy(&c->proof_lock);
    pthread_mutex_destroy(&c->rx_lock);
    pthread_mutex_destroy(&c->tx_lock);
    free(c);
}
