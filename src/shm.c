/*
 * shm.c - the shared memory of one connection: created and sealed by the
 * server, checked and mapped by both ends.
 *
 * Layout: one header page (struct lf_shared), then the client-to-server ring
 * data, then the server-to-client ring data.  The memfd has no name anyone
 * could open; it travels only by SCM_RIGHTS to the verified peer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static size_t map_size(uint64_t ring_size)
{
    return LF_HEADER_SIZE + 2 * (size_t)ring_size;
}

static struct lf_conn *conn_new(void *map, size_t len, int me, uint64_t ring_size)
{
    struct lf_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->sh = map;
    c->map_len = len;
    c->me = me;
    unsigned char *data = (unsigned char *)map + LF_HEADER_SIZE;
    int tx = me == LF_CLIENT ? LF_C2S : LF_S2C;
    ring_init(&c->tx, &c->sh->ring[tx], data + (size_t)tx * ring_size, ring_size);
    ring_init(&c->rx, &c->sh->ring[!tx], data + (size_t)!tx * ring_size, ring_size);
    c->bell_mine[0] = c->bell_mine[1] = c->bell_peer[0] = c->bell_peer[1] = c->memfd = -1;
    c->proof_ep = c->proof_fd = -1;
    c->peer_line = &c->sh->side[!me];   /* a server's waits for the client's proof */
    pthread_mutex_init(&c->proof_lock, NULL);
    pthread_mutex_init(&c->rx_lock, NULL);
    pthread_mutex_init(&c->tx_lock, NULL);
    waiters_init(c);
    return c;
}

/* Maps a memfd after checking everything a hostile creator could get wrong:
 * seals, size, magic, version and the ring size (read once).  On success the
 * connection owns the memfd. */
struct lf_conn *shm_attach(int memfd, int me, uint64_t expect_ring_size)
{
    struct stat st;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || (seals & REQUIRED_SEALS) != REQUIRED_SEALS || fstat(memfd, &st) < 0 ||
        !S_ISREG(st.st_mode) || !ring_size_valid(expect_ring_size) ||
        (uint64_t)st.st_size != map_size(expect_ring_size))
        return NULL;
    size_t len = map_size(expect_ring_size);
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (map == MAP_FAILED)
        return NULL;
    struct lf_shared *sh = map;
    uint32_t magic = __atomic_load_n(&sh->magic, __ATOMIC_RELAXED);
    uint32_t version = __atomic_load_n(&sh->version, __ATOMIC_RELAXED);
    uint64_t size = __atomic_load_n(&sh->ring_size, __ATOMIC_RELAXED);
    struct lf_conn *c = NULL;
    if (magic == LF_MAGIC && version == LF_VERSION && size == expect_ring_size)
        c = conn_new(map, len, me, expect_ring_size);
    if (!c)
        munmap(map, len);
    else
        c->memfd = memfd;
    if (c)
        my_stats(c)->pid = lf_pid;
    return c;
}

/* The server's side: a new memfd, sized, sealed and mapped, with the header
 * written through the mapping.  Nothing here needs checking: we made it. */
struct lf_conn *shm_create(uint64_t ring_size)
{
    int fd = memfd_create("loopfast", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return NULL;
    size_t len = map_size(ring_size);
    void *map = MAP_FAILED;
    if (ftruncate(fd, (off_t)len) == 0 && fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS) == 0)
        map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    struct lf_conn *c = map != MAP_FAILED ? conn_new(map, len, LF_SERVER, ring_size) : NULL;
    if (!c) {
        if (map != MAP_FAILED)
            munmap(map, len);
        libc.close_own(fd);
        return NULL;
    }
    struct lf_shared *sh = map;   /* a new memfd reads as zeros */
    sh->magic = LF_MAGIC;
    sh->version = LF_VERSION;
    sh->ring_size = ring_size;
    sh->side[LF_CLIENT].holders = 1;
    sh->side[LF_SERVER].holders = 1;
    sh->stats[LF_SERVER].pid = lf_pid;
    c->memfd = fd;
    c->made_by = lf_pid;
    c->peer_line = NULL;
    return c;
}

void conn_free(struct lf_conn *c)
{
    trim_forget(c);
    ownfd_close(&c->memfd);
    for (int i = 0; i < 2; i++) {
        ownfd_close(&c->bell_mine[i]);
        ownfd_close(&c->bell_peer[i]);
    }
    ownfd_close(&c->proof_ep);
    ownfd_close(&c->proof_fd);
    munmap(c->sh, c->map_len);
    pthread_mutex_destroy(&c->proof_lock);
    pthread_mutex_destroy(&c->rx_lock);
    pthread_mutex_destroy(&c->tx_lock);
    free(c);
}
