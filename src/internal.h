/*
 * internal.h - what loopfast's source files share with each other.  Nothing
 * here is exported: the library is built with -fvisibility=hidden and only
 * the names in loopfast.map (the public API and the interposed libc calls)
 * leave it.
 */
#ifndef LOOPFAST_INTERNAL_H
#define LOOPFAST_INTERNAL_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "ring.h"

#define LF_EXPORT __attribute__((visibility("default")))

/* A spinning loop's hint to the CPU (and to a sibling hyperthread). */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- libc.c: the real entry points, behind one narrow interface ---- */
struct libc_calls {
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*write)(int, const void *, size_t);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*writev)(int, const struct iovec *, int);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*send)(int, const void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*close)(int);
    int (*close_own)(int);   /* for descriptors loopfast made itself (libc.c) */
    int (*shutdown)(int, int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
    int (*epoll_ctl)(int, int, int, struct epoll_event *);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*ioctl)(int, unsigned long, ...);
    pid_t (*fork)(void);
};
extern struct libc_calls libc;
/* fd's number was just given out by the kernel: state kept under it is stale (interpose.c). */
void fd_number_fresh(int fd);
void libc_init(void);
int libc_closing_own(void);   /* inside libc.close_own (TSan builds: see libc.c) */
void *dlsym_next(const char *name);
void *dlsym_next_cached(void **slot, const char *name);   /* thread-safe lazy dlsym_next */
/* The start of a small file (a /proc entry), NUL-terminated; its length, or
 * -1 when it cannot be read. */
ssize_t read_small_file(const char *path, char *buf, size_t size);
const char *proc_stat_fields(pid_t pid, char *buf, size_t size, int *gone);

/* ---- config.c ---- */
enum lf_mode { LF_MODE_OFF, LF_MODE_OPTIN, LF_MODE_ALL };
struct lf_config {
    enum lf_mode mode;
    unsigned spin_us;       /* LOOPFAST_SPIN_US */
    uint64_t ring_size;     /* LOOPFAST_RING_KB, rounded to a power of two; 0: unset */
    unsigned max_fds;       /* LOOPFAST_MAX_FDS; 0: a quarter of RLIMIT_NOFILE (ownfd.c) */
};
extern struct lf_config lf_config;
void config_init(void);
/* The size of the rings a server makes (LOOPFAST_RING_KB, or one that holds
 * what kernel TCP holds), and the bytes a writer keeps in flight in a ring of
 * a given size when the program set no buffer sizes. */
uint64_t config_ring_size(void);
uint64_t config_ring_hold(uint64_t ring_size);

/* ---- policy.c ---- */
void policy_init(void);
int policy_allows(const struct sockaddr *a, const struct sockaddr *b);
uint64_t monotonic_ns(void);
/* CLOCK_MONOTONIC_COARSE: a few ns, fine for rate limits.  Inline: every
 * short write reads it (conn.c, tcp_look_not_due). */
static inline uint64_t coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* shortlived.c: destinations whose connections close before they switch */
int shortlived_skip(const struct sockaddr *dst);             /* 1: make no offer there */
void shortlived_unswitched(const struct sockaddr_storage *dst);   /* a client end closed so */
void shortlived_switched(const struct sockaddr_storage *dst);     /* a client end switched */

/* ThreadSanitizer ignores the lock calls made inside a call it intercepts
 * as blocking (epoll_wait, poll...), which loopfast's own versions of those
 * calls are, seen from TSan: locks taken there are told to it directly. */
#if defined(__SANITIZE_THREAD__)
#define LF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LF_TSAN 1
#endif
#endif
#ifdef LF_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_acquire(p) __tsan_acquire(p)
#define tsan_release(p) __tsan_release(p)
#else
#define tsan_acquire(p) ((void)0)
#define tsan_release(p) ((void)0)
#endif

/* ---- signals.c: the program's handlers wait while we hold a lock ----
 * A handler may call read() or write() (they are async-signal-safe); one
 * that ran while the code it interrupted held one of our locks, or was
 * inside a ring's direction, would wait on that lock forever or write into
 * the ring under the interrupted call's feet.  So every lock and every
 * direction section counts itself here, and an asynchronous signal caught
 * meanwhile is delivered again when the count drops to 0 (signals.c). */
/* Initial-exec: a thread-local read without a __tls_get_addr call; kept to a
 * few words (a dlopen of the library gets little static TLS). */
#define LF_TLS_IE __attribute__((tls_model("initial-exec")))
extern __thread int lf_signal_hold LF_TLS_IE;        /* sections entered */
/* epoll_wait, poll and select calls this thread made: an event loop's turns
 * (sendfile.c) */
extern __thread unsigned lf_thread_waits LF_TLS_IE;
extern __thread volatile int lf_signal_held LF_TLS_IE;   /* a signal waits for the end */
void signal_release_held(void);

static inline void signals_hold(void)
{
    lf_signal_hold++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static inline void signals_release(void)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (--lf_signal_hold == 0 && lf_signal_held)
        signal_release_held();
}

/* ---- forks.c: our handlers around a fork, also run around a raw clone() ---- */
void lf_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
void forks_prepare(void);
void forks_parent(void);
void forks_child(void);

/* ---- quick.c: a threaded process's hot calls without locked instructions ----
 * A thread's record: words only that thread writes, scanned by the rare
 * side after its membarrier (quick.c). */
struct lf_thread {
    _Alignas(64) struct lf_sock *hazard;   /* the socket of its quick call, or NULL */
    void *dir;                           /* the direction it is in as owner, or NULL */
    pid_t tid;                           /* 0: free */
    int usable;                          /* 0: the stand-in of a thread that found no record */
};
/* One direction of a connection in this process (conn.c: bias[DIR_TX..]). */
struct lf_bias {
    struct lf_thread *owner;   /* may enter without the mutex; set and cleared under it */
    uint32_t revoke;           /* another user is taking it back */
    uint32_t run, revokes;     /* mutex takings in a row by `last`; revocations so far */
    struct lf_thread *last;
};
enum { QUICK_UNSET, QUICK_ON, QUICK_DRAINING, QUICK_OFF };
extern __thread struct lf_thread *lf_self LF_TLS_IE;
extern int lf_quick;

/* The owner enters its direction: 1, or 0 to take the mutex instead. */
static inline int quick_enter(struct lf_bias *b)
{
    struct lf_thread *me = lf_self;
    if (!me || __atomic_load_n(&b->owner, __ATOMIC_RELAXED) != me)
        return 0;
    __atomic_store_n(&me->dir, b, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* the CPU's order: the revoker's membarrier */
    if (__atomic_load_n(&b->revoke, __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&b->owner, __ATOMIC_RELAXED) != me ||
        __atomic_load_n(&lf_quick, __ATOMIC_RELAXED) != QUICK_ON) {
        __atomic_store_n(&me->dir, NULL, __ATOMIC_RELEASE);
        return 0;
    }
    return 1;
}

static inline void quick_leave(void)
{
    __atomic_store_n(&lf_self->dir, NULL, __ATOMIC_RELEASE);
}

/* The hazard on s before the table's slot is loaded again: 0 when this
 * thread makes no quick calls (the ordinary way then). */
static inline int quick_hazard_set(struct lf_sock *s)
{
    struct lf_thread *me = lf_self;
    if (!me || !me->usable)
        return 0;
    __atomic_store_n(&me->hazard, s, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* the CPU's order: the closer's membarrier */
    return __atomic_load_n(&lf_quick, __ATOMIC_RELAXED) == QUICK_ON;
}

static inline void quick_hazard_drop(void)
{
    if (lf_self)
        __atomic_store_n(&lf_self->hazard, NULL, __ATOMIC_RELEASE);
}

/* The direction's mutex was just taken: another thread's bias revoked;
 * may_bias: a call that could be quick, counted towards biasing it to us. */
void quick_after_lock(struct lf_bias *b, int may_bias);
static inline void quick_locked(struct lf_bias *b, int may_bias)
{
    struct lf_thread *owner = __atomic_load_n(&b->owner, __ATOMIC_RELAXED);
    if (owner ? owner != lf_self : may_bias)
        quick_after_lock(b, may_bias);
}
static inline int quick_owned_elsewhere(struct lf_bias *b)
{
    struct lf_thread *owner = __atomic_load_n(&b->owner, __ATOMIC_RELAXED);
    return owner && owner != lf_self;
}
/* Mutex held, for the trim keeper: 1 when nobody else may enter after it;
 * 0 when the owner is inside (never waited for: it may wait for the trim
 * keeper's lock in there).  Not counted against the bias. */
int quick_try_take_back(struct lf_bias *b);
void quick_bias_reset(struct lf_bias *b);       /* a forked child's copy */
void quick_wait_hazards(struct lf_sock *s);     /* before s is torn down */
void quick_confine(void);                       /* before a seccomp filter */

/* Is the socket's int option `name` on (non-zero) as the kernel reports it? */
static inline int sockopt_on(int fd, int level, int name)
{
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, level, name, &on, &len) == 0 && on;
}

/* The kernel socket's TCP state (TCP_ESTABLISHED...), or -1 when it has
 * none: the kernel's own, not the one getsockopt() tells the program of a
 * fast connection (conn_tcp_state). */
static inline int tcp_info_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    return syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? ti.tcpi_state : -1;
}

#define MAX_IOV 64

/* msg with its first `done` bytes skipped, in `iov` (MAX_IOV of them: a
 * longer vector is written in more than one call). */
static inline struct msghdr msg_skip(const struct msghdr *msg, size_t done, struct iovec *iov)
{
    struct msghdr m = *msg;
    size_t k = 0;
    for (size_t i = 0; i < msg->msg_iovlen && k < MAX_IOV; i++) {
        if (done >= msg->msg_iov[i].iov_len) {
            done -= msg->msg_iov[i].iov_len;
            continue;
        }
        iov[k].iov_base = (char *)msg->msg_iov[i].iov_base + done;
        iov[k++].iov_len = msg->msg_iov[i].iov_len - done;
        done = 0;
    }
    m.msg_iov = iov;
    m.msg_iovlen = k;
    return m;
}

/* Every lock of loopfast's is taken and dropped through these (see above). */
static inline void lf_lock(pthread_mutex_t *m)
{
    signals_hold();
    pthread_mutex_lock(m);
    tsan_acquire(m);
}

static inline void lf_unlock(pthread_mutex_t *m)
{
    tsan_release(m);
    pthread_mutex_unlock(m);
    signals_release();
}

/* ---- shm.c: the per-connection shared memory ---- */
#define LF_MAGIC   0x6c6f6f70u   /* "loop" */
#define LF_VERSION 17u   /* 3: slots of a region per pair of processes (link.c); 4: one doorbell an end;
                         * 5: one doorbell an end per region, news bits; 6: the region's channel;
                         * 7: requests in the region (request.c); 8: the server's verdicts
                         * in the region, under its key (verdict.c), and holder pids;
                         * 9: kernel_resets; 10: rx_refused; 11: futex sleeps
                         * (RING_ARM_FUTEX, the rings' wake words); 12: long sleeps woken
                         * by name (RING_ARM_NAMED, the rings' name words); 13: the
                         * rings' origin (base); 14: the origin before it (base_before);
                         * 15: the server's `used`; 16: a direction back on TCP
                         * (tx_state TX_BACK, rx_state RX_BACK); 17: a ring's head
                         * alone on its line */
#define LF_HEADER_SIZE 4096u

enum { LF_CLIENT = 0, LF_SERVER = 1 };
/* A direction's writer: on TCP, counted in tx_tcp_bytes; on the ring; back
 * on TCP for good once stdio may write the socket (uncounted: docs/design.md,
 * 4.4).  Its reader: on TCP until it consumed the counted bytes, then on the
 * ring; back on TCP for good once the writer went back and the ring is empty. */
enum { TX_TCP = 0, TX_RING = 1, TX_BACK = 2 };
enum { RX_TCP = 0, RX_RING = 1, RX_BACK = 2 };
enum { LF_C2S = 0, LF_S2C = 1 };

#define LF_HOLDER_PIDS 6
/* One endpoint's published state; only that endpoint writes it. */
struct lf_side {
    _Alignas(64) uint32_t ready;      /* client: answer taken, reads rings */
    uint32_t tx_state;                /* TX_*: where our writes go */
    uint64_t tx_tcp_bytes;            /* bytes we wrote on TCP before the ring */
    uint64_t rx_tcp_bytes;            /* peer's bytes we consumed from TCP */
    uint32_t rx_state;                /* RX_*: where we read the peer's bytes */
    uint32_t shut_wr;                 /* no more data from us */
    uint32_t closed;                  /* our last holder closed */
    uint32_t holders;                 /* processes holding our end */
    /* those of them that hold a part of the slot's lease, as far as room
     * goes, so that one that died without letting go is found (conn.c) */
    int32_t holder_pid[LF_HOLDER_PIDS];
    uint32_t arms_with_mb;            /* we arm with membarrier: the peer may skip its fence (barrier.c) */
    int32_t busy[2];                  /* [LF_C2S.. as tx, rx]: pid using that direction (conn.c) */
    uint32_t reset;                   /* the peer died owing us a reset: 1, 2 once reported */
    uint32_t kernel_resets;           /* our close sends the kernel's reset: the peer records none */
    /* both our directions are shut down (SHUT_RDWR, or SHUT_RD and SHUT_WR):
     * our TCP socket is shut down too, so the peer's later bytes go there
     * and the kernel answers them with a reset, as Linux does (conn.c) */
    uint32_t rx_refused;
    /* our shutdown(SHUT_RD), by any holder: every holder's reads end, as
     * the kernel's shutdown ends them on a socket shared by processes */
    uint32_t shut_rd;
    /* the one CPU our process may run on, + 1; 0: more than one, or not
     * said (wait.c: a peer confined to the same CPU is not spun for) */
    uint32_t solo_cpu;
    /* server: its program read or wrote the connection through us (not
     * stdio on stdin): a client that read nothing may take the answer */
    uint32_t used;
};

/* What `loopfast stat` shows; each endpoint writes only its own, on a line
 * of its own, with plain stores: statistics, not synchronisation. */
struct lf_stats {
    _Alignas(64) uint64_t tx_bytes, tx_msgs;   /* written to the ring */
    uint64_t rx_bytes, rx_msgs;                /* read from the ring */
    uint64_t wakeups;                          /* sleeps ended by the peer or TCP */
    uint64_t spin_hits;                        /* waits that ended while spinning */
    int32_t pid;                               /* the last process that took this end */
    /* CLOCK_MONOTONIC ns: when a thread of ours last woke the peer's
     * sleepers on this connection, and when one last got up from a sleep
     * that this connection's news ended; the peer tells our think time from
     * our wake-up latency by them (wait.c).  Here, not on our side's lines:
     * the peer reads those at every message, and a store there at every
     * wake-up cost it a cache miss each (mysqlslap -c 20: 4% slower). */
    uint64_t woke_peer_ns, got_up_ns;
};

struct lf_shared {
    uint32_t magic, version;
    uint64_t ring_size;
    struct lf_side side[2];
    struct ring_ctl ring[2];
    struct lf_stats stats[2];
    struct sockaddr_storage addr[2];           /* the client's and the server's, for stat */
    /* The client's part of the slot's lease: the answer's nonce << 2 and
     * OFFER_*; the client takes it, or the server revokes it (handshake.c) */
    uint64_t offer;
    /* An answer to a request proved by /proc (request.c): the server's
     * descriptor of its TCP socket, which /proc/<server>/fd/<it> must name;
     * -1: its proof is an epoll on the region's channel. */
    int32_t server_fd;
};
/* HELD: offered, but not to be taken yet (a server end on stdin: 4.3) */
enum { OFFER_HELD = 0, OFFER_OFFERED = 1, OFFER_TAKEN = 2, OFFER_REVOKED = 3 };
_Static_assert(sizeof(struct lf_shared) <= LF_HEADER_SIZE, "header fits a page");


struct lf_conn;
/* ---- link.c: one region of shared memory per pair of processes ----
 * Page 0 of a region: this header and one lease word per slot; then the
 * server's verdict pages (verdict.c); slot k at LF_REGION_HEAD + k *
 * slot_size, one connection's header page and rings. */
#define LINK_SLOTS 920u          /* what fits a page with the requests, leases and news bits */
#define LINK_REQUESTS 16u        /* a client's connections asked for at once (request.c) */
#define LINK_WORDS ((LINK_SLOTS + 63) / 64)
#define LEASE_PUNCHING 0x80000000u   /* the last holder is giving the slot's pages back */
struct lf_region {
    uint32_t magic, version;
    uint64_t ring_size;               /* of every slot; written once by the server */
    int32_t client_pid;               /* the client process holding it as a link (0: none) */
    /* server: 1 while it hands out slots of this region, so a client may
     * ask for later connections in it (request.c) */
    uint32_t requests;
    /* client: 1 once it could not read the server's /proc/<pid>/fd (another
     * uid, a process that is not dumpable): the server then proves each
     * requested connection with an epoll on the channel (request.c) */
    uint32_t epoll_proofs;
    uint32_t pad;
    /* A later connection asked for by the client: its TCP socket's inode
     * << 32 | a tag << 16 | the slot + 1 the server answered (0: not yet).
     * Written by the client (asked, withdrawn), answered by the server. */
    uint64_t request[LINK_REQUESTS];
    uint32_t lease[LINK_SLOTS];       /* processes holding the slot, +1 for an answer not taken */
    /* [side]: the slots whose peer rang that side's doorbell since that
     * side's epoll sets last looked (link_note_news, epoll.c) */
    _Alignas(64) uint64_t news[2][LINK_WORDS];
};
_Static_assert(sizeof(struct lf_region) <= LF_HEADER_SIZE, "the region header fits a page");
/* The server's verdicts on its clients' proofs, per slot (verdict.c):
 * keyed hashes the client can read but not forge.  reader: the holder
 * reading the channel now (one at a time, so that a message peeked at is
 * the one then consumed). */
struct link_verdicts {
    int32_t reader;
    uint32_t pad;
    struct {
        uint64_t expect;   /* the tag of the answer's nonce and the client socket's SO_COOKIE */
        uint64_t proved;   /* the tag of the nonce whose proof checked out */
    } slot[LINK_SLOTS];
};
#define LF_VERDICTS_SIZE ((sizeof(struct link_verdicts) + 4095) & ~(size_t)4095)
#define LF_REGION_HEAD (LF_HEADER_SIZE + LF_VERDICTS_SIZE)   /* bytes before slot 0 */
/* The doorbells of a connection are its region's (ours, the peer's). */
#define conn_bell_mine(c) ((c)->link->bell_mine)
#define conn_bell_peer(c) ((c)->link->bell_peer)

struct lf_link {
    int fd;                   /* the region's memfd (high) */
    /* The region's channel (design 4.7): a unix seqpacket pair, the
     * client's proofs come on it.  chan: our end; chan_peer: server, the
     * client's end, until the client holds it (-1 after). */
    int chan, chan_peer;
    int carry_gone;           /* server: chan_peer is closed or being closed (under link.c's lock) */
    /* server: what each slot's proof must be and which were proved, in the
     * region's verdict pages (mapped with page 0), shared by every holder */
    struct link_verdicts *verdicts;
    pthread_mutex_t chan_lock;   /* one reader of the channel in this process */
    uint64_t next_nonce;      /* server, owner: the last answer's nonce */
    unsigned revoked_run;     /* server: answers revoked since the last proof */
    unsigned answers_unread;  /* server: answers since the channel was last read */
    /* The doorbells (eventfds, high) of every connection of the region:
     * ours, which the peer rings, never read (wait.c), and the peer's. */
    int bell_mine, bell_peer;
    uint64_t bell_key;        /* wait.c: names bell_mine in wait epolls (0: not yet) */
    void *ep_news;            /* epoll.c: its idle records by slot, under epoll's lock */
    int role;                 /* LF_SERVER: we hand out its slots (in `owner` only); LF_CLIENT */
    uint64_t id;              /* names it in answers; random, never in shared memory */
    uint64_t ring_size, slot_size;
    struct lf_region *region; /* page 0, mapped */
    void **maps;              /* by slot: mappings kept for the slot's next connection */
    uint32_t sized;           /* slots the file is known to cover */
    uint32_t high;            /* server: slots ever handed out */
    pid_t owner;              /* server: the process that made it */
    pid_t peer;               /* the other process: the client it serves, or the server
                               * that made it (0: none known) */
    int refs;                 /* connections of this process on it (and callers) */
    int listed;
    int asking;               /* server: its `requests` word is 1 (link.c, under its lock) */
    uint64_t asked_at;        /* server: when it last answered or was asked */
    uint64_t idle_since;      /* client: listed with no connection since */
    /* client: the server address whose answers came from this region, so
     * that later connections to it are asked for here (request.c) */
    struct sockaddr_storage dst;
    int dst_alone;               /* client: its listener is its process's alone: ask in l */
    int proc_probed;             /* client: whether the server's /proc/<pid>/fd was looked at (request.c) */
    struct link_proof *proofs;   /* client: the server's proofs read, by slot (request.c) */
    unsigned proofs_unread;      /* client: answers let go since the channel was last read */
    unsigned proofs_wanted;      /* client: slots in `proofs` a socket of ours waits for */
    struct lf_link *next;
};
/* client: a server's proof read from the channel (request.c) */
struct link_proof { uint64_t nonce, ino, dev; int wanted; };
struct lf_link *link_create(uint64_t ring_size);            /* server: a new region, unlisted */
/* client: fds = the region, the server's doorbell, ours, the channel (owned from here on) */
struct lf_link *link_adopt(const int fds[4], uint64_t id, uint64_t ring_size, pid_t server);
/* exec: fds = the region, our doorbell, the peer's, the channel, already
 * high; the last may be -1 */
struct lf_link *link_import(const int fds[4], int role, uint64_t id, uint64_t ring_size, int spawned);
/* ---- verdict.c: the server's verdicts on the client's proofs (design 4.7),
 * in the region under the server's key, shared by every holder ---- */
uint64_t verdict_siphash(const uint64_t k[2], const uint64_t *w, size_t n);
int verdict_key_ready(void);                 /* 0: this process has its key */
int verdict_key_export(char buf[33]);        /* exec: 1 and the key in hex, 0: none */
int verdict_key_import(const char *hex);     /* the new image */
void link_expect(struct lf_link *l, uint32_t slot, uint64_t nonce, uint64_t cookie);
int link_proved(struct lf_link *l, uint32_t slot, uint64_t nonce);
void link_record_proof(struct lf_link *l, uint32_t slot, uint64_t nonce, uint64_t cookie);
int link_lock_channel(struct lf_link *l);    /* 0: we alone read the channel now */
void link_unlock_channel(struct lf_link *l);
void link_note_news(struct lf_link *l, int side, uint32_t slot);   /* before ringing side */
void link_after_fork_parent(void);   /* regions shared with a child take no more slots */
struct lf_link *link_find(uint64_t id, uint64_t ring_size); /* client: one we already have */
/* server: a region made for peer; *carry: the peer does not hold it (yet, or
 * any more), so the answer carries it again */
struct lf_link *link_of_peer(pid_t peer, uint64_t ring_size, int *carry);
int link_carry_begin(struct lf_link *l);   /* server: the client's channel end, for an answer */
void link_carry_end(struct lf_link *l);    /* sent: it may go */
void link_client_holds(struct lf_link *l); /* server: a proof came, its carry copy may go */
void link_list(struct lf_link *l, pid_t peer);             /* server: after a first contact */
void link_used(struct lf_link *l);                         /* server: answered in it again */
void link_forget_peer(struct lf_link *l);                  /* the client no longer has it */
int link_claim(struct lf_link *l, uint32_t *slot);         /* server: a free slot, leased */
void link_get(struct lf_link *l);                          /* one more reference */
void link_put(struct lf_link *l);                          /* drops one */
int link_covers(struct lf_link *l, uint32_t slot);         /* client: the file holds the slot */
uint64_t link_slot_offset(const struct lf_link *l, uint32_t slot);
void *link_take_map(struct lf_link *l, uint32_t slot);      /* a kept mapping, or NULL */
void link_keep_map(struct lf_link *l, uint32_t slot, void *map);   /* for the next one */
void link_hold(struct lf_conn *c, int delta);              /* a forked or spawned holder */
void link_release(struct lf_conn *c);                      /* conn_free: this process lets go */
void link_before_exec(int (*kept)(struct lf_link *, void *), void *arg);   /* others let go */
void link_exec_failed(void);
void link_give_back(struct lf_conn *c);                    /* one part of the slot's lease */
uint64_t link_warm_due(void);    /* when a slot given back warm is to be punched; UINT64_MAX: none */
void link_cool(uint64_t now);    /* punches the warm slots due by now */
void link_cool_all(void);          /* every warm slot punched now (a thread or process exits) */
int link_drop_idle(void);                                  /* out of descriptors: freed */
void link_after_fork_child(void);
/* request.c's part: which region serves a destination, and its requests */
struct lf_link *link_for_dst(const struct sockaddr_storage *dst);   /* client: a ref, or NULL */
/* alone: the answer's listener is its process's alone (ANSWER_ALONE) */
void link_note_dst(struct lf_link *l, const struct sockaddr_storage *dst, int alone);
void link_forget_dst(const struct sockaddr_storage *dst);   /* a request went unanswered */
int link_knows_dst(const struct sockaddr_storage *dst);
/* server: the listed region of ours in which the client socket `ino` was
 * asked for (a ref), the request's index and word; NULL: none */
struct lf_link *link_requested(uint64_t ino, uint32_t *idx, uint64_t *word);

/* ---- trim.c: a ring's pages given back once its connection is idle ---- */
#define TRIM_KEEP (24u << 10)    /* bytes of a ring an idle connection may keep touched */
struct lf_conn;
struct trim_state {
    struct lf_conn *prev, *next;  /* on the list of rings being watched */
    int listed;
    unsigned round;               /* the last round that looked at it */
    uint64_t kept_from;           /* the tail at the last punch: pages before it are gone */
    uint64_t seen_head, seen_tail;   /* at the last look: unchanged means idle */
};
void trim_watch(struct lf_conn *c);     /* its ring holds more than TRIM_KEEP: watch it */
void trim_forget(struct lf_conn *c);    /* before the connection is freed */
void trim_idle(void);                   /* before a thread sleeps: trim what went idle */
int trim_before_sleep(int timeout_ms);  /* the same; the timeout, shortened while watching */

#define SHARED_WAIT_MS 10         /* a wait that reads doorbells looks again this often (wait.c) */

/* Around a system call loopfast makes for itself that libc makes a
 * cancellation point (close, write, sendto): a thread cancelled there
 * (pthread_cancel) would unwind past the locks its caller holds.  Such a
 * cancellation acts at the program's next one, or in loopfast's sleeps,
 * which are cancellation points as the program's read would be.  errno is
 * the call's, through nocancel_end. */
static inline int nocancel_begin(void)
{
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return old;
}

static inline void nocancel_end(int old)
{
    int e = errno;
    pthread_setcancelstate(old, NULL);
    errno = e;
}

/* First thing in a cleanup run for a thread cancelled in a sleep (design
 * 6.2): AddressSanitizer left the unwound frames' redzones poisoned, and its
 * own __asan_handle_no_return, which the compiler calls before the unwinding
 * goes on, trips on them (gcc 12's libasan checks a local of its
 * sigaltstack call there).  The dead stack below is unpoisoned first. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static inline void cancel_unwound(void)
{
    char *here = __builtin_frame_address(0);
    __asan_unpoison_memory_region(here - 65536, 65536);
}
#else
static inline void cancel_unwound(void) {}
#endif

/* A look at one descriptor (poll, no wait), made under loopfast's locks. */
static inline int poll_nocancel(struct pollfd *p)
{
    int old = nocancel_begin(), r = libc.poll(p, 1, 0);
    nocancel_end(old);
    return r;
}

/* What fd reports now of `events` (0: nothing, or no descriptor). */
static inline short poll_now(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    return fd >= 0 && poll_nocancel(&p) > 0 ? p.revents : 0;
}

/* The shorter of two poll() timeouts, -1 being none. */
static inline int timeout_min(int a, int b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* Milliseconds left of poll() timeout `timeout` begun at `start` (ns); a
 * timeout of 0 or -1 as it is. */
static inline int ms_left(int timeout, uint64_t start)
{
    if (timeout <= 0)
        return timeout;
    uint64_t spent = (monotonic_ns() - start) / 1000000;
    return spent >= (uint64_t)timeout ? 0 : timeout - (int)spent;
}

struct lf_conn {
    struct lf_shared *sh;         /* the slot's mapping */
    size_t map_len;
    struct lf_link *link;         /* the region it is a slot of */
    uint32_t slot;
    uint64_t msgs_at_arm;         /* our end's messages when one of its rings was last armed */
    pid_t leased_by;              /* the process whose lease this is (a forked copy's is not) */
    int shared_end;               /* forked, spawned or exec'd since ours: other processes may
                                   * hold this end, so its `busy` words are believed (conn.c) */
    int me;                       /* LF_CLIENT or LF_SERVER */
    struct ring tx, rx;
    pthread_mutex_t rx_lock, tx_lock;
    struct lf_bias bias[2];       /* quick.c: [DIR_TX, DIR_RX] (conn.c) */
    int broken;                   /* shared state was corrupt: ECONNRESET */
    int rcvlowat;                 /* SO_RCVLOWAT as last asked (0: to ask): conn_rcvlowat */
    uint64_t next_tcp_check;      /* when a call next asks TCP if the peer is gone (atomic) */
    uint64_t next_poll_look;      /* when poll() next asks TCP too (poll.c, memory_answers) */
    int peer_gone;                /* its end is gone: it stays so (conn.c, peer_left) */
    int fin_unclear;              /* a FIN that may be a shutdown, not a close */
    int tcp_shut_rd;              /* our own SHUT_RD went to TCP (before the switch): its RDHUP is ours */
    int tcp_ended;                /* TCP showed the peer's FIN or reset: its reads never block */
    int zc_pending;               /* zerocopy.c: notices of ring sends wait in our error queue */
    uint64_t rechecked_at;        /* when an unclear FIN (or a silent peer) was last looked into */
    uint64_t silent_tail;         /* conn.c: the peer's read index at the last such look */
    uint64_t silent_gap;          /* conn.c: the next look's distance for a silent peer (0: the least) */
    pid_t made_by;                /* spare.c: the process that created it */
    struct trim_state trim;       /* trim.c: giving the tx ring's pages back */
    /* The proofs (docs/design.md, 4.7).  peer_line: the peer's header line
     * once this end believes it; NULL for a server whose client has not
     * proved itself yet (conn_peer then reads zeros). */
    struct lf_side *peer_line;
    int proof_ep;                 /* server, until answered: epoll holding our TCP socket */
    int proof_fd;                 /* server, until answered: the unix connection to the offer */
    uint64_t peer_cookie;         /* server: SO_COOKIE of the client's TCP socket */
    uint64_t nonce;               /* server: the answer's (0: none sent), names its proof */
    int refused;                  /* server: the client's proof did not come first: for good */
    int proof_deferred;           /* server: its proof could not be read yet (no descriptor) */
    int held;                     /* server: its offer is held until it is read by us (4.3) */
    unsigned out_nudges;          /* turns refused with room (conn_turn_refuse): EPOLLOUT edges */
    int out_told;                 /* a poll said writable since the last write: it does not pace */
    /* conn.c: the window of a writer that must not wait (design 5, pacing):
     * when it was found closed (ns; 0: no clock), the reader's index then,
     * and its size as the reader's idleness grew it (0: NB_WINDOW); and
     * whether the last writer kept to it (readiness then says by it) */
    uint64_t window_since, window_tail, window_size;
    int window_writer;
    int consented;                /* server: a held offer given by our first read */
    int used_told;                /* server: our side's `used` is set (conn.c, server_uses) */
    pthread_mutex_t proof_lock;
    /* wait.c, [for_write]: the last call blocked on this direction alone
     * outlasted the futex phase, so the next sleeps on its wake socket at once */
    unsigned char waits_long[2];
    int ep_idle;                  /* epoll.c: idle records counting on this connection's doorbells */
    void *ep_idle_regs;           /* epoll.c: those records, under epoll's lock */
};

/* The peer's header line as far as this end may believe it: a server reads
 * its client's as zeros until the client has proved itself (handshake.c). */
struct lf_side *handshake_peer_line(struct lf_conn *c);
void handshake_before_confinement(struct lf_conn *c);   /* sandbox.c */
static inline struct lf_side *conn_peer(struct lf_conn *c)
{
    struct lf_side *p = __atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE);
    return p ? p : handshake_peer_line(c);
}

/* Slot `slot` of l mapped as end `me`.  SLOT_FRESH: the server initialises
 * it; SLOT_HOLDER: one more holder of an end (a spawned child), which
 * leaves the pid the end recorded (its peer asks whether that process lives). */
enum { SLOT_FRESH = 1, SLOT_HOLDER = 2 };
struct lf_conn *shm_slot(struct lf_link *l, uint32_t slot, int me, int flags);
/* a connection end with no slot yet: locks made, descriptors none (spare.c's light spare) */
struct lf_conn *conn_bare(int me);

static inline struct lf_stats *my_stats(struct lf_conn *c)
{
    return &c->sh->stats[c->me];
}

/* A counter bumped where several threads may bump it at once (waits): an
 * update may be lost, as statistics allow, but no access is a data race. */
static inline void stat_bump(uint64_t *counter)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}
void conn_free(struct lf_conn *c);

/* After the writer put bytes on its ring (conn.c): a ring that holds more
 * than TRIM_KEEP since its last punch is watched until it goes idle. */
static inline void trim_note_write(struct lf_conn *c)
{
    if (!__atomic_load_n(&c->trim.listed, __ATOMIC_RELAXED) &&
        __atomic_load_n(&c->tx.ctl->head, __ATOMIC_RELAXED) -
                __atomic_load_n(&c->trim.kept_from, __ATOMIC_RELAXED) > TRIM_KEEP)
        trim_watch(c);
}

/* ---- spare.c: the server's next connection, made while it waits ---- */
void spare_prepare(void);            /* before an opted-in accept() */
struct lf_conn *spare_take(void);    /* the spare, or a new one; NULL on failure */
void spare_return(struct lf_conn *c, int connect_errno);   /* its connect to the offer failed */
int spare_drop(void);                /* out of descriptors: descriptors freed */
void spare_transplant(struct lf_conn *spare, struct lf_conn *c);   /* its descriptors to c */
int spare_take_epoll(int *where);    /* the spare's proof epoll alone (request.c); -1: none */

/* ---- reap.c: closed connections' leftovers, released before a wait ---- */
void reap_conn(struct lf_conn *c);   /* conn_free, later */
void reap_fd(int fd);                /* close, later */
int reap_now(void);                  /* before a thread blocks; descriptors freed */

/* ---- sockdiag.c ---- */
/* state: the socket's TCP state (inode 0: no file holds it), 0 when the
 * kernel said there is no such socket, -1 when it said nothing. */
struct diag_result { uid_t uid; int state; uint64_t inode, cookie; };
/* Looks up the TCP socket whose local address is `src` and remote is `dst`. */
int sockdiag_lookup(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                    struct diag_result *out);

/* ---- ownfd.c: loopfast's own descriptors, at high numbers (design 3.1) ---- */
/* Moves the fresh descriptors in *where[i] high, each int updated and
 * registered; `spent` (or -1): one more fresh one of ours to close with the
 * low originals.  -1: no room, all closed, each *where[i] = -1. */
int ownfd_adopt(int *const where[], int n, const int *spent, int nspent);
int ownfd_adopt1(int *where);
int ownfd_new(int *where, int fd);     /* *where = fd, adopted; returns *where */
int ownfd_own(int *where);             /* registers a number already high (exec) */
int ownfd_copy(int fd);                /* a high copy that survives exec, unregistered */
int ownfd_keep(int *where, int fd);    /* a high copy, registered, closed at exec */
void ownfd_moved(int n, int *to);      /* our number n is now held in *to */
void ownfd_close(int *where);          /* unregisters, closes, *where = -1 */
int ownfd_new_epoll(int *where);       /* an inner epoll; never EMFILE (a reserve) */
int epoll_make_own(void);              /* libc's epoll_create1(EPOLL_CLOEXEC), not the program's */
/* the program's calls */
int ownfd_is_ours(int n);
int ownfd_vacate(int n);               /* before the program's dup2/dup3 onto n */
void ownfd_vacate_failed(int n);       /* that call failed: our old copy goes */
int ownfd_close_range(unsigned first, unsigned last, int flags,
                      int (*real)(unsigned, unsigned, int));
void ownfd_limit_changed(void);
int ownfd_crowded(void);               /* more than half our share in use */
int ownfd_count(void);                 /* the descriptors we hold */

/* ---- fdtable.c ---- */
enum lf_kind { LF_OPTIN = 1, LF_PENDING, LF_FAST, LF_PLAIN };

struct lf_sock {
    int refs;                 /* fd table slots pointing here */
    int users;                /* calls in flight (type-stable memory) */
    int kind;                 /* enum lf_kind; changes under lock */
    pthread_mutex_t lock;
    int offer_fd;             /* PENDING: the client's offer listener */
    int candidates[4];        /* PENDING: accepted offer connections, answer not read yet */
    uint64_t pending_tx;      /* PENDING: bytes written on TCP */
    uint64_t pending_rx;      /* PENDING: bytes read from TCP */
    int pending_shut_wr;      /* PENDING: shutdown(SHUT_WR) done on TCP: c2s never switches */
    int pending_shut_rd;      /* PENDING: shutdown(SHUT_RD) done on TCP: its POLLRDHUP is no FIN */
    int pending_calls;        /* PENDING: data calls made (pending.c: when to switch) */
    int tcp_readers;          /* PENDING: reads in flight on TCP, outside the lock (pending.c) */
    struct lf_conn *conn;     /* FAST */
    struct lf_sock *next_free;
    unsigned fork_gen;        /* marks the sock once per fork walk */
    int spare_inner;          /* epoll.c: an inner epoll kept for the next ADD */
    int spare_inner_fd;       /* the number its TCP entry was added under */
    int ep_regs;              /* epoll.c: epoll records of this socket */
    int pollers;              /* poll.c: threads asleep in poll() on it while pending */
    int nonblock_seen;        /* O_NONBLOCK as last seen, -1 unknown (conn.c: must_not_wait) */
    int stdio;                /* given to fdopen(): stdio may write it past us (conn.c, sock_stdio_may_write) */
    /* Made by this image (socket(), accept()), with O_NONBLOCK known from
     * birth: while no other process can hold its file (sock_alone), our own
     * fcntl/ioctl and setsockopt calls are the only ones that change its
     * O_NONBLOCK and timeouts, so these are answered without asking. */
    int desc_own;
    unsigned born_shares;     /* lf_shares when it was made */
    int timeo_seen[2];        /* SO_RCVTIMEO, SO_SNDTIMEO in ms as last seen; -1 none, -2 unknown */
    int linger_seen;          /* SO_LINGER's time in s as last seen; -1 off, -2 unknown */
    int bound_state;          /* OPTIN listener: is `bound` its address? (interpose.c) */
    int timeo_confined[2];    /* sandbox.c: SO_RCVTIMEO, SO_SNDTIMEO (ms, -1 none) when confined */
    int bufsize_set;          /* bufsize.c: SO_SNDBUF / SO_RCVBUF the program set */
    int later_error;          /* socket.c: an error met after a call's first bytes, told next */
    struct sockaddr_storage bound;
    /* PENDING, asked for in a region (request.c) instead of offered */
    struct lf_link *req_link;
    uint64_t req_word;        /* what we wrote in request[req_idx] */
    uint32_t req_idx;
    int req_slot;             /* the slot the server answered (-1: none seen yet) */
    /* PENDING: an answer whose server holds its offer (handshake.c: a
     * server end on stdin), or whose server's program has not used the
     * connection yet, asked again at later calls */
    struct lf_conn *held;
    uint64_t held_nonce;
    int held_tries;
    uint64_t held_since;      /* the coarse clock at the first ask */
    int settling;             /* PENDING: before a fork or out of descriptors: take or give up */
    struct sockaddr_storage dst;   /* PENDING: where it connected */
    /* zerocopy.c, under `lock`: MSG_ZEROCOPY ids given (the kernel's and
     * ours) and the first of ours not yet read from the error queue */
    uint32_t zc_next, zc_first;
    int dst_alone;            /* PENDING: its answer came from a listener alone (ANSWER_ALONE) */
    unsigned born_forks;      /* lf_forks when it was made: a listener older than a fork is shared */
    int reuseport;            /* OPTIN listener: SO_REUSEPORT, -1 not asked yet (interpose.c) */
    /* FAST: calls blocked in a wait on it, and the TCP socket kept for
     * them when its last number was closed under them (conn.c,
     * conn_close_deferred): the connection ends when the last one returns */
    int waiting;
    int kept_fd;
    struct lf_sock *kept_next;   /* socks with a kept_fd (fdtable.c: a forked child's copies) */
    /* FAST, sendfile.c: a non-blocking sendfile's turn in its thread's
     * event loop (lf_thread_waits when it began, bytes sent in it, whether
     * it ended in EAGAIN) */
    unsigned turn_waits;
    uint32_t turn_sent;
    int turn_refused;
};
extern unsigned lf_forks;     /* fork() calls (interpose.c): the holder walk's generation too */
/* Calls that may have given another process our descriptors (fork, spawns,
 * system/popen, a vfork child's exec): a sock made before the last one may
 * be shared, and its flags are asked of the kernel again (wait.c). */
extern unsigned lf_shares;
static inline void shares_bump(void)
{
    __atomic_add_fetch(&lf_shares, 1, __ATOMIC_RELAXED);
}
enum { BOUND_UNKNOWN, BOUND_SPECIFIC, BOUND_WILDCARD };

static inline int sock_kind(struct lf_sock *s)
{
    int kind = __atomic_load_n(&s->kind, __ATOMIC_ACQUIRE);
    tsan_acquire(&s->kind);   /* see lf_lock: TSan may be ignoring this atomic */
    return kind;
}
void epoll_kind_changed(int kind);
int epoll_kind_sleep_begin(void);   /* poll.c: the eventfd a change writes, or -1 */
void epoll_kind_sleep_end(void);
int wait_hear_kinds(int wake);      /* wait.c: this thread's wait epoll, hearing it; or -1 */
static inline void sock_set_kind(struct lf_sock *s, int kind)
{
    tsan_release(&s->kind);
    __atomic_store_n(&s->kind, kind, __ATOMIC_RELEASE);
    /* against epoll.c's record_new: one of the two sees the other */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->ep_regs, __ATOMIC_RELAXED) ||
        __atomic_load_n(&s->pollers, __ATOMIC_RELAXED))
        epoll_kind_changed(kind);   /* its registrations and pollers must follow */
}

struct lf_sock *fdtable_acquire(int fd);           /* NULL: not ours */
/* 1: fd is a socket of ours, *s, under this thread's hazard (quick.c); 0: none taken */
int fdtable_quick_take(int fd, struct lf_sock **s);                /* for one data call; pair with call_end */
int fdtable_holds(int fd, struct lf_sock *s);         /* fd names s now (no reference) */
int fdtable_number_of(struct lf_sock *s, int other_than);   /* a number naming s, or -1 (a scan) */
void sock_put(struct lf_sock *s);

/* fdtable.c's table: FDTABLE_TOP chunks of FDTABLE_CHUNK slots, a chunk
 * made at its first socket.  Here for the data calls' inline lookup. */
#define FDTABLE_CHUNK_BITS 10
#define FDTABLE_CHUNK (1 << FDTABLE_CHUNK_BITS)
#define FDTABLE_TOP 4096                  /* up to 4 M descriptors */
#define FDTABLE_TOMB ((struct lf_sock *)1)   /* a slot under a threaded close (fdtable.c) */
extern struct lf_sock **fdtable_top[FDTABLE_TOP];
struct lf_sock *call_begin_slow(int fd);

/* One data call's lookup (read, write...): a single-threaded process takes
 * no reference, since nothing can close the descriptor during the call (two
 * locked instructions fewer on every message); with threads, or a slot
 * under a close, call_begin_slow.  Inline: a call and its frame were a
 * tenth of a 64 B read's instructions.  Pair with call_end. */
static inline __attribute__((always_inline)) struct lf_sock *call_begin(int fd)
{
    if (__builtin_expect(!__libc_single_threaded, 0) || fd < 0 ||
        (unsigned)fd >= (unsigned)FDTABLE_TOP * FDTABLE_CHUNK)
        return call_begin_slow(fd);
    struct lf_sock **chunk = __atomic_load_n(&fdtable_top[fd >> FDTABLE_CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!chunk)
        return NULL;
    struct lf_sock *s = __atomic_load_n(&chunk[fd & (FDTABLE_CHUNK - 1)], __ATOMIC_ACQUIRE);
    return __builtin_expect(s == FDTABLE_TOMB, 0) ? call_begin_slow(fd) : s;
}

static inline __attribute__((always_inline)) void call_end(struct lf_sock *s)
{
    if (!__libc_single_threaded)
        sock_put(s);
}
void fdtable_kept(struct lf_sock *s);        /* s->kept_fd was just set */
void fdtable_kept_after_fork_child(void);
struct lf_sock *sock_new(int kind);                /* users = 1: sock_put it */
int fdtable_set(int fd, struct lf_sock *s);        /* takes a ref */
int fdtable_clear(int fd);       /* drops the slot's ref; returns refs left, -1 if none */
/* The same, leaving a tombstone that calls on fd wait behind, until
 * fdtable_unentomb after the kernel's close (interpose.c, close) */
int fdtable_entomb(int fd);
void fdtable_unentomb(int fd);
void fdtable_lock(void);
void fdtable_unlock(void);
void fdtable_for_each(void (*fn)(struct lf_sock *, void *), void *arg);
void fdtable_for_each_fd(unsigned first, unsigned last, void (*fn)(int fd));   /* tracked fds */

/* Options a socket is born with, where known: SO_RCVTIMEO, SO_SNDTIMEO (ms)
 * and SO_LINGER (s); -1 none, -2 unknown (asked at the first need). */
struct sock_options {
    int timeo[2];
    int linger;
};
#define SOCK_OPTIONS_NONE ((struct sock_options){ { -1, -1 }, -1 })
#define SOCK_OPTIONS_UNKNOWN ((struct sock_options){ { -2, -2 }, -2 })
/* ---- bufsize.c: SO_SNDBUF / SO_RCVBUF bound the rings ---- */
void bufsize_set(int fd, int level, int optname);          /* after a successful setsockopt */
void bufsize_apply(struct lf_sock *s, struct lf_conn *c, int fd);   /* c becomes s's */
void bufsize_inherit(struct lf_sock *listener, int fd);    /* an accepted connection */
void bufsize_at_optin(struct lf_sock *s, int fd);          /* sizes set before opting in */
void bufsize_socket_made(int fd, int made);
int bufsize_noted(int fd);   /* socket() made it here (not closed since) */
/* What kernel TCP holds for a writer whose reader reads nothing, when
 * neither set a buffer size: the bytes a ring keeps in flight by default. */
uint64_t bufsize_tcp_hold(void);
/* What the reader's kernel would hold of a direction's unread bytes, had
 * they gone over TCP: its SO_RCVBUF when set, else a new socket's (the
 * autotuning grows it only as the reader reads). */
uint64_t bufsize_reader_holds(const struct ring *r);
int fd_made_here_unshared(int fd);   /* our socket() made it and nothing shared it since */
/* For such a socket, the OPTION_SET_* the program set on it; -1 for any other */
#define OPTION_SET_TIMEOUT 8
#define OPTION_SET_LINGER 16
int fd_made_here_set(int fd);
int option_set_by(int level, int optname);   /* wait.c: 0 or the OPTION_SET_* optname sets */
/* The options of such a socket (wait.c): none, or unknown where the
 * program set one */
struct sock_options fd_made_here_options(int fd);

/* ---- handshake.c ---- */
int is_loopback(const struct sockaddr *sa);
int is_wildcard(const struct sockaddr *sa);
void handshake_offer(struct lf_sock *s, int fd, const struct sockaddr *dst);
/* ends: the connection's local and peer address where known (family 0 where
 * not); the rest is asked of the kernel. */
void handshake_answer(int fd, struct sockaddr_storage ends[2], int alone);
int handshake_take_answer(struct lf_sock *s, int fd);
/* before a server end goes: the client's part of the lease; 1 revoked (the
 * client never switched, nor will: both directions are the kernel's alone) */
int handshake_unanswered(struct lf_conn *c);
void handshake_before_fd_limit(void);   /* no descriptor will be free: clients proved or revoked */
void handshake_hand_off(struct lf_conn *c);   /* sent away (SCM_RIGHTS) before its switch */
int handshake_revoked(struct lf_conn *c);   /* a server end's answer revoked: TCP's for good */
void handshake_hold(struct lf_conn *c);       /* on stdin: not switched until read by us */
void handshake_consent(struct lf_conn *c);    /* read by us: the held offer may be taken */

/* ---- answer.c: the messages and the server's proof, as received ---- */
/* The answer: the region's memfd, the server's doorbell and the client's,
 * the client's end of the region's channel (ANSWER_NEW_LINK: a first
 * contact, or a region the client does not hold yet), none when the client
 * holds it; the server's proof, an epoll holding its TCP socket. */
#define ANSWER_FDS 5
#define ANSWER_NEW_LINK 1u
#define ANSWER_ALONE 2u    /* no other process accepts on the listener: later connections may ask */
struct answer_msg {
    uint32_t magic, version;
    uint64_t ring_size;
    uint64_t link_id;
    uint32_t slot, flags;
    uint64_t nonce;           /* names this answer's proof, and the slot's offer word */
};
int answer_parse(const void *buf, size_t n, int nfds, int msg_flags, struct answer_msg *out);
/* The client's proof, on the region's channel: this header and one
 * descriptor, its TCP socket. */
struct proof_msg {
    uint32_t magic, version;
    uint32_t slot, pad;
    uint64_t nonce;
};
int proof_parse(const void *buf, size_t n, int nfds, int msg_flags, struct proof_msg *out);
/* An epoll's /proc/self/fdinfo text: 0 when it holds exactly one file, whose
 * inode and device (kernel encoding) it returns. */
int fdinfo_only_target(const char *text, uint64_t *ino, uint64_t *dev);
void handshake_give_up(struct lf_sock *s);
/* shared with request.c */
int handshake_send_fds(int u, const void *head, size_t len, const int *fds, int nfds);
int handshake_received_fds(struct msghdr *m, int *fds, int max);
/* the socket at the other end of our connection fd (dst: its address, if
 * known): 1 found, 0 not now, -1 gone for good */
int handshake_server_socket(int fd, const struct sockaddr_storage *dst, struct diag_result *server);
int handshake_proof_room(void);
/* the one file epoll `ep` holds (the server's proof, 4.7): 0 and its inode
 * and device as fdinfo prints them, -1 when it holds none or several */
int handshake_epoll_target(int ep, uint64_t *ino, uint64_t *dev);
/* one message, non-blocking, into buf: recvmsg's count, its descriptors
 * (up to max kept, extras closed) and flags (answers and proofs alike) */
ssize_t handshake_recv_fds(int u, void *buf, size_t len, int flags, int *fds, int max, int *nfds,
                           int *msg_flags);
/* the client's end of an answer it checked (its part of the lease taken,
 * its proof sent, the socket switched): 1, or 0 and c freed */
int handshake_switch(struct lf_sock *s, struct lf_conn *c, uint64_t nonce, int fd, int spent);
uint64_t handshake_sockfs_dev(void);   /* sockfs's device, as fdinfo prints it */
int handshake_server_end(struct lf_conn *c, int fd, const struct diag_result *client,
                         const struct sockaddr_storage ends[2]);
int handshake_commit(int fd, struct lf_conn *c, int (*tell)(struct lf_conn *, void *), void *arg);
void handshake_keep_region(struct lf_sock *s);   /* a pending client closing (4.3) */
void handshake_kept_take(void);   /* at a connect: the regions closes set aside */
int handshake_kept_drop(void);    /* out of descriptors: how many */
void handshake_kept_after_fork_child(void);   /* its copies closed */

/* ---- request.c: later connections asked for in a region both hold ---- */
int request_post(struct lf_sock *s, uint64_t ino);   /* client, in connect(): 0 asked */
int request_answered(struct lf_sock *s);             /* client: 1 the server answered */
int request_take(struct lf_sock *s, int fd);         /* client: 1 switched */
void request_withdraw(struct lf_sock *s);            /* client: the socket gives up */
void request_missed(struct lf_sock *s);              /* client: TCP spoke, no answer came */
/* server, in accept(): 1 the connection was asked for and is answered */
int request_answer(int fd, const struct diag_result *client, struct sockaddr_storage ends[2]);

/* ---- conn.c ---- */
ssize_t conn_recv(struct lf_sock *s, int fd, struct msghdr *msg, int flags);
ssize_t conn_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags);
/* sendfile's copy, read into the ring (CONN_DECLINED: the buffered copy answers) */
ssize_t conn_send_file(struct lf_sock *s, int fd, int in_fd, off_t pos, size_t count);
/* A turn ends in EAGAIN with room left: 1 when the next wait will say
 * writable (also to EPOLLET), 0 when the ring may not (no refusal then). */
int conn_turn_refuse(struct lf_conn *c, int fd);
/* The data calls' short paths, each one frame (ring_inline.h).
 * conn_write_fast: one buffer of a fast socket (write, send) that the ring
 * takes whole now.  conn_read_fast: bytes already on a fast socket's ring
 * read into one buffer (read, recv; MSG_DONTWAIT is the only flag it
 * honours), and for a blocking call without flags that finds none, a spin
 * and the bytes it brings: not under a quick call's hazard or held signals,
 * as a handler may run during the spin.  CONN_DECLINED: nothing was done,
 * conn_send or conn_recv answers (without spinning again).
 * conn_recv_buffer: the copy alone, for a quick call (never a spin). */
#define CONN_DECLINED (-((ssize_t)1 << 40))
ssize_t conn_write_fast(struct lf_sock *s, const void *buf, size_t len, int flags);
ssize_t conn_read_fast(struct lf_sock *s, void *buf, size_t len, int flags);
ssize_t conn_recv_buffer(struct lf_sock *s, void *buf, size_t len);
void conn_recv_spun_end(void);   /* the call is over: what it noted goes */
int conn_shutdown(struct lf_sock *s, int fd, int how);
int conn_shut_rd(struct lf_conn *c);
int sock_stdio_may_write(struct lf_sock *s);   /* stdout, stderr or fdopen'd: writes stay on TCP */
/* Before a switch of our writes: did the kernel get bytes past our count
 * (stdio's)?  Then they stay on TCP for good (the sock marked as stdio's). */
int sock_written_past_us(struct lf_sock *s, int fd, uint64_t counted);
/* stdio may write s from now on (it came onto stdout or stderr, or was
 * given to fdopen() for writing): a direction on the ring goes back to TCP
 * for good, after the bytes on the ring (4.4). */
void sock_tx_back(struct lf_sock *s);
int conn_closed(struct lf_conn *c, int fd);   /* both ends shut down: the kernel's would be closed */
void sock_tx_urgent(struct lf_sock *s);   /* MSG_OOB: our writes go to TCP for good */
/* stdio.c: fdopen() of a switched socket, a stream reading and writing
 * through our read() and write() */
FILE *stdio_stream_open(int fd, const char *mode);
void stdio_stdin_through_us(void);   /* a switched socket on descriptor 0: stdin reads through us */
int stdio_stream_reopen(const char *path, const char *mode, FILE *fp, FILE **out);   /* 0: not ours */
int tcp_bytes_given(int fd, uint64_t *given);   /* tcpcount.c: -1 when unknown */
size_t conn_rcvlowat(struct lf_conn *c, int fd);
void sock_rcvlowat_changed(int fd, int optname);
void conn_close(struct lf_sock *s, int fd);
int conn_close_deferred(struct lf_sock *s, int fd);   /* calls wait on it: ends when they return */
void conn_holder_note(struct lf_conn *c, pid_t pid);   /* pid holds a part of our end now */
void conn_holder_forget(struct lf_conn *c, pid_t pid); /* it let go, or never started */
int conn_is_fast(struct lf_sock *s);
void conn_ring_bell(struct lf_conn *c);
void conn_wake_own(struct lf_conn *c);   /* our own waiters and epoll sets look again */
void bell_ring(struct lf_conn *c);
int conn_tcp_liveness(int fd);
/* Readiness of a connection for `want`, from shared memory and from what its
 * TCP socket reported (`tev`, 0 when it was not asked). */
short conn_poll_state(struct lf_conn *c, int fd, short want, short tev);
/* The longest a poller may sleep before the peer's end is looked into
 * again (an unclear FIN); -1: as long as it likes. */
int conn_recheck_ms(struct lf_conn *c);
short conn_kernel_events(struct lf_conn *c, short want);
int conn_arm(struct lf_conn *c, short want);   /* 1: our side promised (barrier_after_arm) */
int conn_arm_flag(struct lf_conn *c, uint32_t *flag, uint32_t how);   /* one flag; the same answer */
void conn_signature(struct lf_conn *c, uint64_t *in, uint64_t *out);
int conn_wants_kernel(struct lf_conn *c, short want);
/* Both ends open, nothing shut down, refused or owed: TCP can tell
 * nothing of this connection but a death. */
int conn_plain(struct lf_conn *c);
/* The peer switched and all its pre-switch bytes were read: the ring decides
 * (noted in rx_state, as a read notes it); 0 too once it went back to TCP. */
int conn_rx_settled(struct lf_conn *c);
/* TCP_INFO's state as kernel TCP would tell it, given the kernel socket's:
 * a FIN that went on the rings never reached it. */
int conn_tcp_state(struct lf_conn *c, int kernel_state);
/* The kernel socket's error as kernel TCP would give it: a reset after a
 * FIN that went on the ring is EPIPE (conn.c, kernel_send_error). */
int conn_kernel_error(struct lf_conn *c, int err);

/* ---- barrier.c: the sleeper pays for the store-load barrier ---- */
extern int lf_membarrier;            /* this process is registered for GLOBAL_EXPEDITED */
void barrier_register(void);         /* at start and in a forked child */
uint32_t barrier_promise(void);      /* what a side of ours publishes in arms_with_mb */
void barrier_after_arm(int heavy);   /* after arming: heavy when our side promised */
void barrier_withdraw(uint32_t *promise);
void barrier_withdrawn(void);        /* once, after withdrawing, before seccomp */

/* ---- addrspace.c: our mappings under RLIMIT_AS ---- */
void *addrspace_map(size_t len, int fd, off_t offset);   /* shared, read-write; MAP_FAILED */
void addrspace_unmap(void *p, size_t len);
void addrspace_limit_changed(void);

/* ---- memlimit.c: new ring pages under a memory cgroup's limit ---- */
extern int64_t lf_ring_budget;
/* The budget this process's ring writers take new pages from; NULL when
 * its cgroup sets no memory limit (looked for at the first call). */
int64_t *memlimit_budget(void);
/* Takes up to `want` bytes (whole pages) from budget: what it granted, 0
 * when it is spent (read again from the cgroup at most every 10 ms).  dry:
 * only says what it would grant. */
uint64_t memlimit_take(int64_t *budget, uint64_t want, int dry);

/* ---- wait.c ---- */
/* Whether a wait that starts now spins: SPIN_OPEN if so (its end is set by
 * its first spin_over), 0 if not (spinning is off, more tasks are runnable
 * than there are cores, or this thread's waits have not been short enough
 * to pay).  `c`: the connection waited on; NULL for a poll or epoll wait.
 * The wait is then scored: by spin_found when its spin found news, else by
 * spin_waited when news of connection `c` ends it (slept: after a sleep,
 * which the peer is told).  No precise clock is read before the spin's
 * first look: it costs 30 ns on a VM, and a reply that came meanwhile
 * waited for it. */
#define SPIN_OPEN UINT64_MAX
uint64_t spin_deadline(struct lf_conn *c);
/* At a spin's clock reading `now`: is its time up?  The first one sets the
 * end (and the wait's start); a spin that stops before any calls it too. */
int spin_over(uint64_t *end, uint64_t now);
/* Publishes in our side of c the one CPU our process may run on (if so;
 * `look`: asked of the kernel now), and notes a peer confined to the same
 * one: neither spins for the other, which holds the CPU the other needs. */
void conn_note_cpu(struct lf_conn *c, int look);
/* The program changed a thread's affinity (interpose.c): the next set-up
 * looks at it again. */
void affinity_changed(void);
void spin_found(void);
void spin_waited(struct lf_conn *c, int slept);
/* A RING_ARM_NAMED sleeper's wake: a byte to the wake socket whose number
 * is in the name word `name` (0: none, gone); 0 when it could not be sent
 * (ring the doorbell instead).  wake_sender_ready makes the socket that
 * sends it, with the process's first region. */
int wake_named(uint64_t *name);
int wake_sender_ready(void);
/* Spins on shared memory for LOOPFAST_SPIN_US; 1 if news came meanwhile. */
int wait_spin(struct lf_conn *c, int for_write, size_t rx_want);
/* A blocking call's counts of the thread's handlers run, when it began, and
 * a sleep's signal mask (signals.c). */
struct lf_caught { unsigned caught, unrestarted; };
struct lf_sleep {
    const sigset_t *mask;   /* for the sleep's system call; NULL: poll(), epoll_wait() */
    sigset_t old;
    int blocked;
};
/* Sleeps on a futex (at most FUTEX_MS), then on its thread's wake socket
 * (or, where none can be had, the doorbell) and the TCP socket.  Returns 0
 * after any news, -EAGAIN on timeout, -EINTR when a handler ended the call
 * (since `call` began: signals.c).  `tcp_events` gets what the TCP socket
 * reported. */
int wait_for(struct lf_conn *c, int fd, int for_write, size_t rx_want, int timeout_ms,
             struct lf_caught *call, int restartable, short *tcp_events);
/* A call blocked on one connection: a futex sleep, then one on its thread's
 * wake socket and the TCP socket (`fd`); 0 after news, -EAGAIN at the
 * timeout, -ENOSYS when no wake socket could be had (sleep on the doorbell),
 * or -errno. */
int wait_alone(struct lf_conn *c, int fd, int for_write, size_t rx_want, int timeout_ms,
               struct lf_caught *call, int restartable, short *tcp_events);
int poll_for_call(struct pollfd *p, nfds_t n, int timeout_ms, int restartable);
/* What a thread sleeps on for c's doorbell, in poll() beside the TCP socket:
 * its wait epoll holding the doorbell (never read), or where none can be had
 * the doorbell itself; bell_after_wake when it was readable.  While any wait
 * of this process reads doorbells, sleeps last at most bell_wait_cap_ms(). */
int bell_wait_fd(struct lf_conn *c);
void bell_after_wake(struct lf_conn *c, int wait_fd);
int bell_wait_cap_ms(void);          /* SHARED_WAIT_MS, or -1 */
void bell_drain(struct lf_conn *c);  /* reads the doorbell (bell_after_wake's fallback) */
/* poll() (ppoll() with a mask) that never fails because loopfast's entries
 * exceed RLIMIT_NOFILE: then it asks groups that fit, sleeping in short
 * slices on the last group (put the doorbells last), and returns 0 early
 * when news(arg) says the rings changed.  The first must_fit entries are the
 * program's own poll(): if they alone do not fit, EINVAL as the kernel says;
 * 0 when the program did not call poll() (select(), a blocking read), for
 * which not even one entry must fit. */
int poll_fitting(struct pollfd *p, nfds_t n, nfds_t must_fit, int timeout_ms, const sigset_t *mask,
                 int (*news)(void *), void *arg);
int fd_nonblocking(int fd);
/* The same for a sock of ours, without a system call while no other process
 * can hold its file (wait.c) */
int sock_nonblocking(struct lf_sock *s, int fd);
int sock_timeout(struct lf_sock *s, int fd, int optname);
/* SO_LINGER's time in seconds, -1 off (or not known: confined), answered
 * from memory as the timeouts are. */
int sock_linger(struct lf_sock *s, int fd);
void sock_born_here(struct lf_sock *s, int nonblock, struct sock_options o);
/* The options listener's accepted connections are born with (the kernel
 * copies them): known while no other process can hold the listener, asked
 * of it once. */
struct sock_options sock_options_inherited(struct lf_sock *listener, int listen_fd);
/* After a successful setsockopt: a timeout or SO_LINGER set is asked again once. */
void sock_options_changed(int fd, int optname);
int sock_timeout_ms(int fd, int optname);
int sock_timeout_asked_ms(int fd, int optname);   /* the kernel's word, even when confined */

/* ---- pending.c: a client between offer and answer ---- */
ssize_t pending_io(struct lf_sock *s, int fd, struct msghdr *msg, int flags, int is_send);
int pending_shutdown(struct lf_sock *s, int fd, int how);
void pending_settle_all(void);
/* A pending client whose answer its server holds asks again now (poll.c):
 * 1 while it is still held, so the caller asks again soon. */
int pending_ask_held(struct lf_sock *s, int fd);
void pending_hand_off(const struct msghdr *msg);    /* its SCM_RIGHTS stay off the rings */
void pending_hand_off_fds(const int *fds, int n);   /* the same, its descriptors listed */
void pending_stay_plain(int fd);   /* O_ASYNC, stdio reads: off the rings if not switched yet */
void pending_on_stdin(int fd);     /* fd is stdin now: stdio may read it (handshake_hold) */
int pending_before_ulp(int fd);    /* TCP_ULP: off the rings if not switched; 1: switched */

/* ---- socket.c: one call on a descriptor we track, whatever its kind ---- */
ssize_t sock_recv(struct lf_sock *s, int fd, struct msghdr *msg, int flags);
ssize_t sock_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags);
int sock_take_later_error(struct lf_sock *s);
uint64_t sock_call_deadline(const struct lf_sock *s, uint64_t own);   /* own, or a MSG_WAITALL call's if sooner */
int conn_take_reset_error(struct lf_conn *c);
static inline short sock_later_pollerr(struct lf_sock *s)
{
    return __atomic_load_n(&s->later_error, __ATOMIC_RELAXED) ? POLLERR : 0;
}
/* The copy alone (conn_recv_buffer) on a fast socket, or CONN_DECLINED. */
ssize_t sock_recv_copy(struct lf_sock *s, void *buf, size_t len, int flags);
/* read(), write(), recv(), send() that conn_read_fast or conn_write_fast
 * declined: as recvmsg and sendmsg. */
ssize_t sock_send_buffer(struct lf_sock *s, int fd, const void *buf, size_t len, int flags);
ssize_t sock_recv_buffer(struct lf_sock *s, int fd, void *buf, size_t len, int flags);

/* ---- cmsg.c: control messages of reads a ring answered ---- */
void cmsg_option_set(int level, int optname);   /* setsockopt: timestamps, TCP_INQ in use */
/* after a read of `got` bytes into msg, whose buffer had `control` bytes */
void cmsg_after_read(struct lf_sock *s, int fd, struct msghdr *msg, size_t control, ssize_t got);
void cmsg_put_one(struct msghdr *msg, size_t control, int level, int type, const void *data,
                  size_t len);   /* as the kernel's put_cmsg() */

/* ---- zerocopy.c: MSG_ZEROCOPY completions of ring sends ---- */
void zerocopy_sent(struct lf_sock *s, int fd, int on_ring);   /* a MSG_ZEROCOPY send moved bytes */
ssize_t zerocopy_errqueue(struct lf_sock *s, int fd, struct msghdr *msg, int flags);

/* ---- poll.c ---- */
/* fd's number is being closed (still_named: it still names its file, the
 * kernel's close comes after): the sets' records under it go, or, for a
 * socket another number still names, live on as the kernel's do. */
void epoll_forget_fd(int fd, int still_named);
int epoll_knows_fd(int fd);
void epoll_poke(void);      /* a doorbell an idle epoll record counts on was taken */
void epoll_before_fork(void);
void epoll_forget_range(unsigned first, unsigned last);   /* epoll sets of ours in it */

/* ---- sandbox.c: after the program installed a seccomp filter ---- */
extern int lf_confined;   /* only calls such sandboxes allow: see sandbox.c */
int sandbox_nonblocking(int fd);
int sandbox_timeout_ms(int fd, int optname);
int sandbox_tcp_liveness(int fd);
int sandbox_sigpipe_ignored(void);
ssize_t sandbox_recv_nowait(int fd, struct msghdr *m, int flags);
ssize_t sandbox_send(int fd, const struct msghdr *m, int flags);

/* ---- signals.c: handlers caught while a blocking call waits ---- */
void caught_now(struct lf_caught *call);
/* Before a sleep (restartable: a read or write without a socket timeout,
 * whose SA_RESTART handlers do not end it): -EINTR when a handler ended the
 * call already; else 0, signals blocked until sleep_end. */
int sleep_begin(struct lf_sleep *sl, const struct lf_caught *call, int restartable,
                const sigset_t *caller_mask);
void sleep_end(struct lf_sleep *sl);
/* pthread_cleanup_push's routine around a sleep (a struct lf_sleep *): a
 * thread cancelled in it unwinds with the program's signal mask back */
void sleep_cancelled(void *sl);
/* After the sleep's EINTR: 1 when the call ends, 0 when it goes on. */
int call_interrupted(struct lf_caught *call, int restartable);
int call_handler_ran(const struct lf_caught *call, int restartable);   /* one that ends it */

/* ---- exec.c ---- */
void exec_import(void);
int lf_vfork_child(void);
void vfork_note_dup(int oldfd, int newfd);   /* in a vfork child: newfd is now oldfd */
/* posix_spawn with our hooks (shell.c's system() and popen()) */
int exec_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
               const posix_spawnattr_t *attr, char *const argv[], char *const envp[]);
int exec_has_heirs(void);   /* a fast connection survives exec here */
/* Fast ends described for a process a message carries them to (handoff.c):
 * their descriptors named by their place in the message, after `base`. */
struct export;
struct export *exec_handoff_new(int base);
int exec_handoff_add(struct export *x, int place, int fd);
const char *exec_handoff_text(const struct export *x);
int exec_handoff_fds(const struct export *x, const int **fds);
void exec_handoff_end(struct export *x, int sent);
void exec_handoff_import(char *text, const int *fds, int n, int nprog, int given,
                         unsigned char *taken);

/* ---- handoff.c: fast ends sent with SCM_RIGHTS take their rings along ---- */
#define SCM_MAX_FD 253   /* the kernel's limit of descriptors in one message */
int handoff_message_fds(const struct msghdr *msg, int *fds, int max);   /* in its order */
ssize_t handoff_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t handoff_recvmsg(int fd, struct msghdr *msg, int flags);

/* ---- stats ---- */
extern int lf_initialised;
extern pid_t lf_pid;
void lf_init(void);

#endif /* LOOPFAST_INTERNAL_H */
