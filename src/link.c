/*
 * link.c - one region of shared memory per pair of processes, its slots
 * handed out one per connection (docs/design.md, 11).
 *
 * A server makes a region (a memfd sealed against shrinking) for the first
 * connection a client process opens to it and sends it with that answer.
 * While that process holds the region, later connections from it take a
 * free slot of the same region: the answer names the region by a random id
 * instead of carrying a new memfd, so a connection no longer costs a
 * descriptor for its memory, and whoever receives an answer it was not meant
 * for (a squatter) gets a slot number in a region it does not hold.  Every
 * answer in a region goes to the same process (the offer's listener, as
 * SO_PEERCRED names it), and the server writes to or reads from a slot only
 * once that slot's client proved itself (docs/design.md, 4.7).
 *
 * Each slot has a lease word in the region's first page: the processes
 * that hold it (both ends, forked copies counted as holders are), plus one
 * for the client while its answer may still be taken.  The one that lets go
 * last gives the slot's pages back and frees it; only the server's
 * process that made the region hands slots out.  A peer that scribbles on
 * leases can only make its own connections share or lose slots.
 *
 * Each region has a channel, a unix seqpacket pair, whose client end goes
 * with the region's first answer: the client's proofs come on it (design
 * 4.7).  What each slot's proof must be, and which were proved, the server
 * keeps in the region's verdict pages, under a key the client does not
 * have (verdict.c), so that its forked and exec'd holders share them.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_SEAL)
#define IDLE_KEPT 4   /* regions with no connection kept for the next one */


static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lf_link *links;   /* listed: findable for later connections */
static int idle;                /* listed regions with no connection */
/* Regions of ours whose clients may ask (request.c): each accept() looks at
 * their request words, so no more than ASKING_MAX, the most recently used;
 * the others' clients offer.  `asking` mirrors the region's `requests`
 * word in our own memory, so the look touches no other region's page. */
#define ASKING_MAX 64
static int asking_count;
static uint64_t ask_clock;


static void lock_for_fork(void) { lf_lock(&lock); }
static void unlock_after_fork(void) { lf_unlock(&lock); }

__attribute__((constructor)) static void link_init(void)
{
    lf_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

static uint64_t slot_offset(const struct lf_link *l, uint32_t slot)
{
    return LF_REGION_HEAD + (uint64_t)slot * l->slot_size;
}

static void punch_slot(struct lf_link *l, uint32_t slot)
{
    fallocate(l->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)slot_offset(l, slot),
              (off_t)l->slot_size);
}

/* Punches a free slot, its lease taken from 0 to LEASE_PUNCHING meanwhile
 * as a claim takes it from 0 to 2, so that no claim races the punch; a
 * slot in use keeps its pages. */
static void punch_if_free(struct lf_link *l, uint32_t slot)
{
    uint32_t *lease = &l->region->lease[slot], zero = 0;
    if (!__atomic_compare_exchange_n(lease, &zero, LEASE_PUNCHING, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    punch_slot(l, slot);
    __atomic_store_n(lease, 0, __ATOMIC_RELEASE);
}

static void punch_free_slots(struct lf_link *l)
{
    for (uint32_t slot = 0; slot < l->sized; slot++)
        punch_if_free(l, slot);
}

/* ---- warm slots ----
 *
 * A slot worth punching is not punched as its connection goes: a program
 * that opens a connection per request takes it again within milliseconds,
 * and would fault every page of its rings in again (about 15 us a page on a
 * VM: lighttpd without keep-alive was slower than kernel TCP).  It is kept
 * warm instead, and punched once it has stayed free for WARM_NS, in the
 * trim rounds (trim.c), unless a connection took it first.  The one that
 * let go last keeps the record; if it dies first, the slot waits for its
 * region to go idle: a region with no connection of ours for WARM_NS has
 * every free slot punched (a WHOLE_REGION record).  At most WARM_MAX
 * records; a region that goes punches its own, an exec punches them all.
 * The table is under the lock. */
#define WARM_MAX 64
#define WARM_NS (500ull * 1000000)
#define WHOLE_REGION UINT32_MAX

static struct warm_slot { struct lf_link *link; uint32_t slot; uint64_t since; } warm[WARM_MAX];
static int warm_count;
static uint64_t warm_due = UINT64_MAX;   /* when the oldest is to be punched */

static void warm_punch_locked(int k)
{
    struct warm_slot w = warm[k];
    warm[k] = warm[--warm_count];
    if (w.slot != WHOLE_REGION)
        punch_if_free(w.link, w.slot);
    else if (w.link->refs == 0)   /* else a connection came: it goes idle again later */
        punch_free_slots(w.link);
}

static void warm_due_locked(void)
{
    uint64_t due = UINT64_MAX;
    for (int k = 0; k < warm_count; k++)
        if (warm[k].since + WARM_NS < due)
            due = warm[k].since + WARM_NS;
    __atomic_store_n(&warm_due, due, __ATOMIC_RELAXED);
}

/* 1: the slot's (or the whole region's) pages are kept warm; 0: the table
 * is full, punch them now.  Lock held. */
static int keep_warm_locked(struct lf_link *l, uint32_t slot)
{
    if (lf_confined)
        return 1;   /* no punching there (sandbox.c): pages wait for the next connection */
    int k = 0;
    while (k < warm_count && !(warm[k].link == l && warm[k].slot == slot))
        k++;
    if (k == WARM_MAX)
        return 0;
    warm[k] = (struct warm_slot){ l, slot, monotonic_ns() };
    warm_count += k == warm_count;
    warm_due_locked();
    return 1;
}

static int keep_warm(struct lf_link *l, uint32_t slot)
{
    lf_lock(&lock);
    int kept = keep_warm_locked(l, slot);
    lf_unlock(&lock);
    return kept;
}

/* Punches the warm records of l (NULL: all) that are due at `now` (0: all). */
static void punch_warm(struct lf_link *l, uint64_t now)
{
    lf_lock(&lock);
    for (int k = 0; k < warm_count;)
        if ((!l || warm[k].link == l) && (!now || warm[k].since + WARM_NS <= now))
            warm_punch_locked(k);   /* the last entry moved into k */
        else
            k++;
    warm_due_locked();
    lf_unlock(&lock);
}

uint64_t link_warm_due(void)
{
    return __atomic_load_n(&warm_due, __ATOMIC_RELAXED);
}

void link_cool(uint64_t now)
{
    if (now >= link_warm_due())
        punch_warm(NULL, now);
}

/* Every warm slot punched now: no round may come to do it (reap.c: a
 * thread or a process that exits). */
void link_cool_all(void)
{
    if (link_warm_due() != UINT64_MAX)
        punch_warm(NULL, 0);
}

static struct lf_link *link_new(int fd, int role, uint64_t id, uint64_t ring_size)
{
    if (wake_sender_ready() < 0)
        return NULL;   /* a peer's long sleeper could not be woken (wait.c) */
    struct lf_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->region = addrspace_map(LF_REGION_HEAD, fd, 0);
    if (l->region == MAP_FAILED) {
        free(l);
        return NULL;
    }
    l->fd = fd;
    l->bell_mine = l->bell_peer = -1;
    l->chan = l->chan_peer = -1;
    if (role == LF_SERVER)   /* a client has no use for them */
        l->verdicts = (struct link_verdicts *)((unsigned char *)l->region + LF_HEADER_SIZE);
    pthread_mutex_init(&l->chan_lock, NULL);
    l->role = role;
    l->id = id;
    l->ring_size = ring_size;
    l->slot_size = LF_HEADER_SIZE + 2 * ring_size;
    l->owner = lf_pid;
    return l;
}

static void link_free(struct lf_link *l)
{
    punch_warm(l, 0);   /* before its file goes: nobody else would */
    if (l->maps) {
        for (uint32_t k = 0; k < LINK_SLOTS; k++)
            if (l->maps[k])
                addrspace_unmap(l->maps[k], l->slot_size);
        free(l->maps);
    }
    addrspace_unmap(l->region, LF_REGION_HEAD);
    ownfd_close(&l->fd);
    ownfd_close(&l->bell_mine);
    ownfd_close(&l->bell_peer);
    ownfd_close(&l->chan);
    ownfd_close(&l->chan_peer);
    pthread_mutex_destroy(&l->chan_lock);
    free(l->proofs);
    free(l->ep_news);   /* no connection left: no idle record points into it */
    free(l);
}

static void never_requests(struct lf_link *l);

/* Takes l off the list of regions later answers may use.  Lock held. */
static void unlist_locked(struct lf_link *l)
{
    never_requests(l);
    for (struct lf_link **pp = &links; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    l->listed = 0;
}

/* Puts l on the list of regions later answers may use.  Lock held. */
static void list_locked(struct lf_link *l)
{
    l->listed = 1;
    l->next = links;
    links = l;
}

/* One more reference; a listed region kept with none is no longer idle.
 * Lock held. */
static void take_locked(struct lf_link *l)
{
    if (l->refs++ == 0 && l->listed)
        idle--;
}

/* This process no longer holds l: a client's server stops naming it. */
static void link_let_go(struct lf_link *l)
{
    if (l->role == LF_CLIENT)   /* ours only: a forked child's copy going says nothing */
        __atomic_compare_exchange_n(&l->region->client_pid, &(int32_t){ lf_pid }, 0, 0,
                                    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    link_free(l);
}

/* RLIMIT_FSIZE bounds a memfd's size too, and a ftruncate past it raises
 * SIGXFSZ, whose default action ends the program (a server under `ulimit
 * -f 1024` died in its first accept()): such a size is not asked for, and
 * the connection stays plain TCP. */
static uint64_t size_allowed(void)
{
    struct rlimit r;
    return getrlimit(RLIMIT_FSIZE, &r) == 0 && r.rlim_cur != RLIM_INFINITY ? (uint64_t)r.rlim_cur
                                                                          : UINT64_MAX;
}

/* The file covers slots [0, want): grown by doubling, so that a pair
 * that keeps opening connections seldom pays for a ftruncate. */
static int grow(struct lf_link *l, uint32_t want)
{
    if (want <= l->sized)
        return 0;
    uint32_t n = l->sized ? l->sized : 4;
    while (n < want)
        n *= 2;
    if (n > LINK_SLOTS)
        n = LINK_SLOTS;
    uint64_t allowed = size_allowed();
    while (n > want && slot_offset(l, n) > allowed)
        n = n / 2 > want ? n / 2 : want;
    if (slot_offset(l, n) > allowed)
        return errno = EFBIG, -1;
    if (ftruncate(l->fd, (off_t)slot_offset(l, n)) < 0)
        return -1;
    l->sized = n;
    return 0;
}

struct lf_link *link_create(uint64_t ring_size)
{
    uint64_t id;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != sizeof id || verdict_key_ready() < 0)
        return NULL;   /* ids and verdicts must be unguessable: no links without them */
    int fd = memfd_create("loopfast", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return NULL;
    struct lf_link *l = NULL;
    if (fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS) == 0)   /* mapped before it is sized: */
        l = link_new(fd, LF_SERVER, id, ring_size);   /* not touched before grow() */
    if (!l) {
        libc.close_own(fd);
        return NULL;
    }
    l->bell_mine = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->bell_peer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int pair[2] = { -1, -1 }, most = 1 << 30;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0) {
        l->chan = pair[0];
        l->chan_peer = pair[1];
        /* the client's proofs queue in its end's send buffer until we read
         * them (768 bytes each), and ours, for requests, in ours until the
         * client does (request.c): as many as the kernel allows */
        setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &most, sizeof most);
        setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &most, sizeof most);
    }
    int *const own[] = { &l->fd, &l->bell_mine, &l->bell_peer, &l->chan, &l->chan_peer };
    if (l->bell_mine < 0 || l->bell_peer < 0 || l->chan < 0 || grow(l, 1) < 0 ||
        ownfd_adopt(own, 5, NULL, 0) < 0) {   /* out of the program's numbers */
        link_free(l);
        return NULL;
    }
    l->region->magic = LF_MAGIC;
    l->region->version = LF_VERSION;
    l->region->ring_size = ring_size;
    l->refs = 1;   /* the caller's */
    return l;
}

/* A doorbell another process sent: an eventfd, so that ringing it cannot
 * block or write to anything else (design 9 has the one way left). */
static int is_eventfd(int fd)
{
    char path[40], target[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target);
    int fl = libc.fcntl(fd, F_GETFL);
    return n == 20 && memcmp(target, "anon_inode:[eventfd]", 20) == 0 && fl >= 0 &&
           (fl & O_NONBLOCK);
}

/* A channel another process sent: a unix seqpacket socket, so that a proof
 * sent on it goes to whoever holds its other end and nowhere else. */
static int is_channel(int fd)
{
    int type = 0, domain = 0;
    socklen_t tl = sizeof type, dl = sizeof domain;
    return fd < 0 || (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
                      getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 &&
                      type == SOCK_SEQPACKET && domain == AF_UNIX);
}

/* A region another process made: checked for everything a hostile creator
 * could get wrong (seals, size, magic, version, ring size) before it is
 * believed.  fds: the region, our doorbell, the peer's, the channel (-1:
 * none); the link owns them from here on, also on failure. */
static struct lf_link *link_open(const int fds[4], int role, uint64_t id, uint64_t ring_size)
{
    int fd = fds[0];
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    struct lf_link *l = NULL;
    if (seals >= 0 && (seals & REQUIRED_SEALS) == REQUIRED_SEALS && fstat(fd, &st) == 0 &&
        S_ISREG(st.st_mode) && ring_size_valid(ring_size) && st.st_size >= (off_t)LF_REGION_HEAD &&
        is_eventfd(fds[1]) && is_eventfd(fds[2]) && is_channel(fds[3]))
        l = link_new(fd, role, id, ring_size);
    if (!l) {
        for (int i = 0; i < 4; i++)
            if (fds[i] >= 0)
                libc.close_own(fds[i]);
        return NULL;
    }
    l->bell_mine = fds[1];
    l->bell_peer = fds[2];
    l->chan = fds[3];
    if (__atomic_load_n(&l->region->magic, __ATOMIC_RELAXED) != LF_MAGIC ||
        __atomic_load_n(&l->region->version, __ATOMIC_RELAXED) != LF_VERSION ||
        __atomic_load_n(&l->region->ring_size, __ATOMIC_RELAXED) != ring_size) {
        link_free(l);
        return NULL;
    }
    uint64_t slots = ((uint64_t)st.st_size - LF_REGION_HEAD) / l->slot_size;
    l->sized = slots > LINK_SLOTS ? LINK_SLOTS : (uint32_t)slots;
    l->high = l->sized;
    l->refs = 1;   /* the caller's */
    return l;
}

/* A server that makes a new region for us no longer holds the ones it
 * made before: those we keep idle go.  Lock held. */
static struct lf_link *stale_locked(pid_t server)
{
    for (struct lf_link *l = links; l; l = l->next)
        if (l->refs == 0 && l->peer == server) {
            unlist_locked(l);
            idle--;
            return l;
        }
    return NULL;
}

struct lf_link *link_adopt(const int fds[4], uint64_t id, uint64_t ring_size, pid_t server)
{
    struct lf_link *l = link_open((const int[4]){ fds[0], fds[2], fds[1], fds[3] }, LF_CLIENT, id,
                                  ring_size);
    if (!l)
        return NULL;
    int *const own[] = { &l->fd, &l->bell_mine, &l->bell_peer, &l->chan };
    if (ownfd_adopt(own, 4, NULL, 0) < 0) {   /* out of the program's numbers */
        link_free(l);
        return NULL;
    }
    /* the server gives our process slots of it only while we hold it */
    __atomic_store_n(&l->region->client_pid, lf_pid, __ATOMIC_RELEASE);
    l->peer = server;
    lf_lock(&lock);
    struct lf_link *stale = server > 0 ? stale_locked(server) : NULL;
    list_locked(l);
    lf_unlock(&lock);
    if (stale)
        link_let_go(stale);
    return l;
}

/* exec: a region the old image held, its descriptor already high.  A
 * client's is findable again for later connections (a spawned process's
 * is not: the server names it to the process that took it first). */
struct lf_link *link_import(const int fds[4], int role, uint64_t id, uint64_t ring_size, int spawned)
{
    struct lf_link *l = link_open(fds, role, id, ring_size);
    if (!l)
        return NULL;
    if (ownfd_own(&l->fd) < 0 || ownfd_own(&l->bell_mine) < 0 || ownfd_own(&l->bell_peer) < 0 ||
        (l->chan >= 0 && ownfd_own(&l->chan) < 0)) {
        link_free(l);
        return NULL;
    }
    if (role == LF_CLIENT && !spawned) {
        /* Only the process named in client_pid asks here: requests its old
         * image left (their sockets are not fast in this one) go. */
        if (__atomic_load_n(&l->region->client_pid, __ATOMIC_RELAXED) == lf_pid)
            for (uint32_t i = 0; i < LINK_REQUESTS; i++)
                __atomic_store_n(&l->region->request[i], 0, __ATOMIC_RELEASE);
        lf_lock(&lock);
        list_locked(l);
        lf_unlock(&lock);
    }
    return l;
}

/* exec: the new image will hold only the regions its connections take
 * along (`kept`); the others are no longer held by this process, so the
 * server must stop naming them to it.  Undone if the exec fails. */
static pid_t let_go_pid;

void link_before_exec(int (*kept)(struct lf_link *, void *), void *arg)
{
    lf_lock(&lock);
    for (struct lf_link *l = links; l; l = l->next) {
        if (l->role == LF_CLIENT && !kept(l, arg))
            __atomic_compare_exchange_n(&l->region->client_pid, &(int32_t){ lf_pid }, -lf_pid, 0,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED);
        if (l->role == LF_SERVER && l->asking)   /* the new image hands out no slots of it */
            __atomic_store_n(&l->region->requests, 0, __ATOMIC_SEQ_CST);
    }
    let_go_pid = lf_pid;
    lf_unlock(&lock);
    punch_warm(NULL, 0);   /* the new image knows nothing of them */
}

void link_exec_failed(void)
{
    lf_lock(&lock);
    for (struct lf_link *l = links; l; l = l->next) {
        if (l->role == LF_CLIENT)
            __atomic_compare_exchange_n(&l->region->client_pid, &(int32_t){ -let_go_pid },
                                        let_go_pid, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
        if (l->role == LF_SERVER && l->asking)
            __atomic_store_n(&l->region->requests, 1, __ATOMIC_SEQ_CST);
    }
    lf_unlock(&lock);
}

/* A server's region stops taking requests (request.c): 1, unless a
 * client's request is already there (then it keeps taking them).  The
 * flag goes first and the words are read after, as the client writes its
 * word first and reads the flag after: one of the two sees the other. */
static int stop_requests(struct lf_link *l)
{
    if (l->role != LF_SERVER || !l->asking)
        return 1;
    __atomic_store_n(&l->region->requests, 0, __ATOMIC_SEQ_CST);
    for (uint32_t i = 0; i < LINK_REQUESTS; i++) {
        uint64_t w = __atomic_load_n(&l->region->request[i], __ATOMIC_SEQ_CST);
        if (w && !(w & 0xffff)) {
            __atomic_store_n(&l->region->requests, 1, __ATOMIC_SEQ_CST);
            return 0;
        }
    }
    l->asking = 0;
    asking_count--;
    return 1;
}

/* The same, for good: a request already there stays unanswered (that
 * connection plain).  Lock held. */
static void never_requests(struct lf_link *l)
{
    if (stop_requests(l) || !l->asking)
        return;
    __atomic_store_n(&l->region->requests, 0, __ATOMIC_SEQ_CST);
    l->asking = 0;
    asking_count--;
}

/* l's client may ask for connections in it from now on (it was just
 * used); the least recently used region of ours that may, if there are
 * ASKING_MAX already, stops.  Lock held. */
static void allow_requests(struct lf_link *l)
{
    l->asked_at = ++ask_clock;
    if (l->asking || l->owner != lf_pid)
        return;
    if (asking_count >= ASKING_MAX) {
        struct lf_link *oldest = NULL;
        for (struct lf_link *o = links; o; o = o->next)
            if (o->asking && o != l && (!oldest || o->asked_at < oldest->asked_at))
                oldest = o;
        if (!oldest || !stop_requests(oldest))
            return;   /* a request is waiting there: l offers this time */
    }
    l->asking = 1;
    asking_count++;
    __atomic_store_n(&l->region->requests, 1, __ATOMIC_SEQ_CST);
}

/* The oldest listed region with no connection and no request waiting,
 * unlisted; NULL when there is none, or (all == 0) when no more than
 * IDLE_KEPT are.  Lock held. */
static struct lf_link *evict_locked(int all)
{
    struct lf_link *oldest = NULL;
    for (struct lf_link *l = links; l; l = l->next)
        if (l->refs == 0 && (!oldest || l->idle_since < oldest->idle_since))
            oldest = l;
    if (oldest && (all || idle > IDLE_KEPT) && !stop_requests(oldest))
        return NULL;   /* its client is about to connect: another time */
    if (!oldest || (!all && idle <= IDLE_KEPT))
        return NULL;
    unlist_locked(oldest);
    idle--;
    return oldest;
}

/* Both ends keep a few regions with no connection (IDLE_KEPT in all): a
 * pair that opens one connection at a time then reuses its region, and a
 * client does not let go of it between two connections while its server,
 * which has not seen the close yet, names it in the next answer ("no
 * link": plain TCP).  A server's is used again only while its client still
 * holds it (link_of_peer). */
void link_put(struct lf_link *l)
{
    lf_lock(&lock);
    struct lf_link *gone = NULL;
    if (--l->refs == 0) {
        if (l->listed) {
            l->idle_since = monotonic_ns();
            if (!keep_warm_locked(l, WHOLE_REGION))
                punch_free_slots(l);
            idle++;
            gone = evict_locked(0);
        } else {
            gone = l;
        }
    }
    lf_unlock(&lock);
    if (gone)
        link_let_go(gone);
}

/* Every region kept with no connection goes, each by `release`; how many. */
static int drop_idle(void (*release)(struct lf_link *))
{
    int n = 0;
    for (;;) {
        lf_lock(&lock);
        struct lf_link *l = evict_locked(1);
        lf_unlock(&lock);
        if (!l)
            return n;
        release(l);
        n++;
    }
}

/* Out of descriptors: regions with no connection go. */
int link_drop_idle(void)
{
    return drop_idle(link_let_go);
}

/* A forked child never takes answers in its parent's regions (a server
 * names a region to the process holding it): a client's copy of the
 * channel goes, so that the server hears EOF once the parent lets go, and
 * so does a server's copy of the client's end.  The server's own end stays:
 * the child's connections' proofs may come on it. */
static void child_copies(struct lf_sock *s, void *arg)
{
    (void)arg;
    struct lf_link *l = sock_kind(s) == LF_FAST && s->conn ? s->conn->link : NULL;
    if (!l)
        return;
    pthread_mutex_init(&l->chan_lock, NULL);
    ownfd_close(l->role == LF_CLIENT ? &l->chan : &l->chan_peer);
    __atomic_store_n(&l->carry_gone, 1, __ATOMIC_RELAXED);
}

/* A forked child: its copies of the regions kept idle are its parent's
 * (a server names a client's to the parent only; a server's own are handed
 * out by the parent only); closed, the parent's claim left as it is. */
void link_after_fork_child(void)
{
    lf_lock(&lock);
    for (struct lf_link *l = links; l; l = l->next)
        l->asking = 0;   /* the parent's: their `requests` words stay as they are */
    asking_count = 0;
    warm_count = 0;   /* the parent's to punch */
    warm_due = UINT64_MAX;
    lf_unlock(&lock);
    drop_idle(link_free);
    fdtable_for_each(child_copies, NULL);
}

/* A writer that is about to ring `side`'s doorbell for a slot says which
 * slot, so that that side's epoll sets look at it alone (epoll.c).  A bit
 * already set costs no write. */
void link_note_news(struct lf_link *l, int side, uint32_t slot)
{
    uint64_t *word = &l->region->news[side & 1][slot / 64], bit = 1ull << (slot % 64);
    if (!(__atomic_load_n(word, __ATOMIC_RELAXED) & bit))
        __atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST);
}

/* After a fork, the child holds our regions' doorbells too, and every ring
 * wakes both.  Regions with connections in them (which the child may keep:
 * a fork-per-connection server) therefore take no more slots: the next
 * connection from that client gets a region of its own, so a postmaster's
 * backends do not wake one another. */
void link_after_fork_parent(void)
{
    lf_lock(&lock);
    for (struct lf_link **pp = &links; *pp;) {
        struct lf_link *l = *pp;
        if (l->role == LF_SERVER && l->refs > 0) {
            *pp = l->next;
            l->listed = 0;
            never_requests(l);
        } else {
            pp = &l->next;
        }
    }
    lf_unlock(&lock);
}

void link_get(struct lf_link *l)
{
    lf_lock(&lock);
    take_locked(l);
    lf_unlock(&lock);
}

struct lf_link *link_find(uint64_t id, uint64_t ring_size)
{
    lf_lock(&lock);
    struct lf_link *l = links;
    while (l && !(l->role == LF_CLIENT && l->id == id && l->ring_size == ring_size))
        l = l->next;
    if (l)
        take_locked(l);
    lf_unlock(&lock);
    return l;
}

/* A region of ours that an answer to peer may name: its client holds it,
 * or has not taken it yet and we still hold the channel's end to carry
 * with it.  Lock held. */
static int usable_locked(struct lf_link *l, pid_t peer, uint64_t ring_size, int32_t *holder)
{
    if (!(l->role == LF_SERVER && l->owner == lf_pid && l->peer == peer &&
          l->ring_size == ring_size))
        return 0;
    *holder = __atomic_load_n(&l->region->client_pid, __ATOMIC_ACQUIRE);
    return *holder == peer || (*holder == 0 && !l->carry_gone);
}

/* An answer that carries l: the client's end of its channel (-1: gone),
 * kept open until link_carry_end(l). */
int link_carry_begin(struct lf_link *l)
{
    lf_lock(&l->chan_lock);
    return l->chan_peer;
}

void link_carry_end(struct lf_link *l)
{
    lf_unlock(&l->chan_lock);
}

/* Once the client holds the region we close our copy of its channel end,
 * so that when the client's process lets go of its own, the channel says
 * so (EOF).  Not under `lock`: a close takes ownfd's, which fork takes
 * before ours. */
static void close_carry(struct lf_link *l)
{
    lf_lock(&l->chan_lock);
    ownfd_close(&l->chan_peer);
    lf_unlock(&l->chan_lock);
}

/* holder (the region's client_pid) is the client we made l for: our copy
 * of its channel end may go.  1: the caller closes it (close_carry, out of
 * the lock).  Lock held. */
static int carry_goes_locked(struct lf_link *l, int32_t holder)
{
    if (l->carry_gone || l->peer <= 0 || holder != l->peer)
        return 0;
    __atomic_store_n(&l->carry_gone, 1, __ATOMIC_RELAXED);
    return 1;
}

/* The client proved a connection: it holds the region, so our copy of its
 * channel end goes now rather than at the next answer to it (a client
 * with one connection would never see one). */
void link_client_holds(struct lf_link *l)
{
    if (l->role != LF_SERVER || __atomic_load_n(&l->carry_gone, __ATOMIC_RELAXED))
        return;
    lf_lock(&lock);
    int gone = carry_goes_locked(l, __atomic_load_n(&l->region->client_pid, __ATOMIC_ACQUIRE));
    lf_unlock(&lock);
    if (gone)
        close_carry(l);
}

struct lf_link *link_of_peer(pid_t peer, uint64_t ring_size, int *carry)
{
    if (peer <= 0)
        return NULL;
    lf_lock(&lock);
    struct lf_link *l = links;
    int32_t holder = 0;
    while (l && !usable_locked(l, peer, ring_size, &holder))
        l = l->next;
    int gone = l && carry_goes_locked(l, holder);
    if (l)
        take_locked(l);
    lf_unlock(&lock);
    if (gone)
        close_carry(l);
    *carry = l && holder == 0;
    return l;
}

void link_list(struct lf_link *l, pid_t peer)
{
    if (peer <= 0)
        return;
    lf_lock(&lock);
    if (!l->listed) {
        l->peer = peer;
        list_locked(l);
    }
    allow_requests(l);
    lf_unlock(&lock);
}

void link_used(struct lf_link *l)
{
    lf_lock(&lock);
    if (l->listed)
        allow_requests(l);
    lf_unlock(&lock);
}

void link_forget_peer(struct lf_link *l)
{
    lf_lock(&lock);
    l->peer = 0;
    lf_unlock(&lock);
}

/* A nearly full region takes no requests: every request its client may
 * have written must find a slot (a request nobody answers leaves its
 * connection plain), and its client offers instead, which a new region
 * answers.  Counted only once the region is nearly full.  Lock held. */
static void requests_while_room(struct lf_link *l)
{
    uint32_t free_slots = LINK_SLOTS - l->high;
    for (uint32_t k = 0; k < l->high; k++)
        free_slots += !__atomic_load_n(&l->region->lease[k], __ATOMIC_RELAXED);
    if (free_slots <= 2 * LINK_REQUESTS)
        stop_requests(l);
    else if (l->listed)
        allow_requests(l);
}

/* A free slot, leased for both ends (the client's part until it takes the
 * answer or cannot any more).  Slots once used are looked for first, so a
 * pair's region stays as small as its most connections at once. */
int link_claim(struct lf_link *l, uint32_t *slot)
{
    lf_lock(&lock);
    int r = -1;
    for (uint32_t k = 0; k < l->high && r < 0; k++) {
        uint32_t zero = 0;
        if (!__atomic_load_n(&l->region->lease[k], __ATOMIC_RELAXED) &&
            __atomic_compare_exchange_n(&l->region->lease[k], &zero, 2, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            *slot = k;
            r = 0;
        }
    }
    if (r < 0 && l->high < LINK_SLOTS && grow(l, l->high + 1) == 0) {
        *slot = l->high++;
        __atomic_store_n(&l->region->lease[*slot], 2, __ATOMIC_RELEASE);
        r = 0;
    }
    if (l->high + 2 * LINK_REQUESTS >= LINK_SLOTS)
        requests_while_room(l);
    lf_unlock(&lock);
    return r;
}

/* A short connection touches its slot's header page and the first pages of
 * its rings.  Punching those out costs a TLB shootdown in every process
 * mapping the slot and a fault per page for the next connection, more than
 * the rest of its set-up on a host where interrupts between CPUs are dear
 * (docs/performance.md, "Set-up"); the first few slots, which a pair that
 * opens one connection at a time keeps reusing, keep pages that little
 * used.  The heads are read from shared memory: a peer that lies about them
 * only keeps or loses pages of its own pair's region, bounded by this. */
#define KEPT_SLOTS 8
#define KEPT_RING_BYTES (32u << 10)

static int worth_punching(const struct lf_conn *c)
{
    return c->slot >= KEPT_SLOTS ||
           __atomic_load_n(&c->sh->ring[LF_C2S].head, __ATOMIC_RELAXED) > KEPT_RING_BYTES ||
           __atomic_load_n(&c->sh->ring[LF_S2C].head, __ATOMIC_RELAXED) > KEPT_RING_BYTES;
}

/* The slot's pages back, then the slot free: punched first, so that no
 * server hands it out while its old pages are still going. */
void link_give_back(struct lf_conn *c)
{
    struct lf_link *l = c->link;
    uint32_t *lease = &l->region->lease[c->slot];
    uint32_t one = 1;
    if (!__atomic_compare_exchange_n(lease, &one, LEASE_PUNCHING, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED)) {
        __atomic_sub_fetch(lease, 1, __ATOMIC_ACQ_REL);
        return;
    }
    /* otherwise (confined, or a first slot little used) its pages wait for
     * the slot's next connection */
    if (!lf_confined && worth_punching(c) && !keep_warm(l, c->slot))
        punch_slot(l, c->slot);
    __atomic_store_n(lease, 0, __ATOMIC_RELEASE);
}

/* c->slot was checked by shm_slot, its only setter. */
void link_hold(struct lf_conn *c, int delta)
{
    __atomic_add_fetch(&c->link->region->lease[c->slot], (uint32_t)delta, __ATOMIC_ACQ_REL);
}

void link_release(struct lf_conn *c)
{
    if (c->leased_by == lf_pid)
        link_give_back(c);
    link_put(c->link);
}

/* A slot the client was told of: within the file, which may have grown
 * since we last looked (it never shrinks: sealed). */
int link_covers(struct lf_link *l, uint32_t slot)
{
    if (slot >= LINK_SLOTS)
        return 0;
    if (slot < __atomic_load_n(&l->sized, __ATOMIC_RELAXED))
        return 1;
    struct stat st;
    if (fstat(l->fd, &st) < 0 || (uint64_t)st.st_size < slot_offset(l, slot + 1))
        return 0;
    __atomic_store_n(&l->sized, slot + 1, __ATOMIC_RELAXED);
    return 1;
}

uint64_t link_slot_offset(const struct lf_link *l, uint32_t slot)
{
    return slot_offset(l, slot);
}

/* A slot's mapping outlives its connection, for the next connection in the
 * same slot: unmapping costs a TLB shootdown and the page tables, mapping
 * again a fault per table, and together they were the larger part of a
 * short connection's time (docs/performance.md, "Set-up").  Kept at most
 * one per slot, so the address space held is the most slots in use at
 * once; they go with the region. */
void *link_take_map(struct lf_link *l, uint32_t slot)
{
    void **maps = __atomic_load_n(&l->maps, __ATOMIC_ACQUIRE);
    return maps && slot < LINK_SLOTS ? __atomic_exchange_n(&maps[slot], NULL, __ATOMIC_ACQ_REL)
                                     : NULL;
}

void link_keep_map(struct lf_link *l, uint32_t slot, void *map)
{
    void **maps = __atomic_load_n(&l->maps, __ATOMIC_ACQUIRE);
    if (!maps) {
        void **fresh = calloc(LINK_SLOTS, sizeof *fresh);
        if (fresh && !__atomic_compare_exchange_n(&l->maps, &maps, fresh, 0, __ATOMIC_ACQ_REL,
                                                  __ATOMIC_ACQUIRE))
            free(fresh);   /* another thread's array won: maps holds it */
        else
            maps = fresh;
    }
    void *old = maps && slot < LINK_SLOTS ? __atomic_exchange_n(&maps[slot], map, __ATOMIC_ACQ_REL)
                                          : map;
    if (old)
        addrspace_unmap(old, l->slot_size);
}

/* ---- requests: later connections asked for in a region (request.c) ---- */

static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* A region of ours whose server answered connections to dst, and which we
 * can still send proofs on (a forked child's copies cannot: it closed the
 * channel, and its parent may use them). */
struct lf_link *link_for_dst(const struct sockaddr_storage *dst)
{
    lf_lock(&lock);
    struct lf_link *l = links;
    while (l && !(l->role == LF_CLIENT && l->chan >= 0 && l->peer > 0 &&
                  __atomic_load_n(&l->region->client_pid, __ATOMIC_RELAXED) == lf_pid &&
                  __atomic_load_n(&l->region->requests, __ATOMIC_RELAXED) && l->dst_alone &&
                  same_address(&l->dst, dst)))
        l = l->next;
    if (l)
        take_locked(l);
    lf_unlock(&lock);
    return l;
}

/* dst is served by l's server now: later connections to it are asked for
 * in l when that server accepts alone, else offered (and a short one keeps
 * no region: handshake_keep_region). */
/* No region of ours records dst any more.  Lock held. */
static void forget_dst_locked(const struct sockaddr_storage *dst)
{
    for (struct lf_link *o = links; o; o = o->next)
        if (o->role == LF_CLIENT && same_address(&o->dst, dst))
            o->dst.ss_family = AF_UNSPEC;
}

void link_note_dst(struct lf_link *l, const struct sockaddr_storage *dst, int alone)
{
    lf_lock(&lock);
    forget_dst_locked(dst);
    l->dst = *dst;
    l->dst_alone = alone;
    lf_unlock(&lock);
}

/* A request there went unanswered: forgotten, so that the next connection
 * offers, and the region its answer carries or names is kept again. */
void link_forget_dst(const struct sockaddr_storage *dst)
{
    lf_lock(&lock);
    forget_dst_locked(dst);
    lf_unlock(&lock);
}

/* Whether a region of ours records dst, whether or not it may be asked. */
int link_knows_dst(const struct sockaddr_storage *dst)
{
    lf_lock(&lock);
    struct lf_link *l = links;
    while (l && !(l->role == LF_CLIENT && same_address(&l->dst, dst)))
        l = l->next;
    lf_unlock(&lock);
    return l != NULL;
}

/* The request for the client socket `ino` among the regions this process
 * made and hands slots of, whose client holds them.  What a client wrote
 * there is only a hint: it is answered with a slot whose use still needs
 * the client's proof (design 4.7). */
struct lf_link *link_requested(uint64_t ino, uint32_t *idx, uint64_t *word)
{
    lf_lock(&lock);
    struct lf_link *l = links;
    for (; l; l = l->next) {
        if (!l->asking || l->role != LF_SERVER || l->owner != lf_pid || l->peer <= 0 ||
            l->chan < 0 || __atomic_load_n(&l->region->client_pid, __ATOMIC_RELAXED) != l->peer)
            continue;
        uint32_t i = 0;
        for (; i < LINK_REQUESTS; i++) {
            uint64_t w = __atomic_load_n(&l->region->request[i], __ATOMIC_ACQUIRE);
            if (w >> 32 == (ino & 0xffffffffu) && (w & 0xffff) == 0) {
                *idx = i;
                *word = w;
                break;
            }
        }
        if (i < LINK_REQUESTS)
            break;
    }
    if (l) {
        take_locked(l);
        l->asked_at = ++ask_clock;
    }
    lf_unlock(&lock);
    return l;
}

