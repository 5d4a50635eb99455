/*
 * bufsize.c - SO_SNDBUF and SO_RCVBUF bound a fast connection's bytes in
 * flight as they bound kernel TCP's buffers.
 *
 * Over kernel TCP a writer that nobody reads from stops after about its
 * SO_SNDBUF plus the reader's SO_RCVBUF (measured on loopback: 13 KB with
 * both set to 4096, 270 KB with both at 65536; getsockopt reports twice the
 * value set, and the sum of the reported values is within 1.3x of what the
 * kernel holds).  A size the program did not set is autotuned by the kernel
 * (megabytes): then the bound is what the kernel holds for a writer whose
 * reader reads nothing, its largest SO_SNDBUF (tcp_wmem's third value) plus
 * the reader's initial SO_RCVBUF (tcp_rmem's second): 4.29 MB here, where
 * a 1 MiB ring made a program that writes 4 MB before it reads its echo
 * wait for ever (bufsize_tcp_hold; config.c sizes the ring to hold it).
 * The ring itself keeps its size; the writer respects a smaller capacity
 * (ring.c, ring_capacity): its own reported SO_SNDBUF, kept in the process,
 * plus the reader's reported SO_RCVBUF, which the reader publishes in its
 * ring's control block.  getsockopt is left to the kernel and answers as
 * it always does.
 *
 * Which sizes the program set: setsockopt is seen on sockets loopfast
 * tracks (all TCP sockets in LOOPFAST_MODE=all), and noted by descriptor
 * number on the sockets this process made with socket() before it opted
 * them in, so that opting in asks the kernel nothing; on a socket made
 * elsewhere (inherited, received), a size set before loopfast_ioctl is
 * recognised at opt-in because it differs from the kernel's initial one
 * (tcp_wmem[1], tcp_rmem[1]); an accepted connection inherits its
 * listener's, as the kernel copies them.
 */
#include <stdio.h>

#include "internal.h"

enum { SET_SND = 1, SET_RCV = 2, MADE_HERE = 4 };   /* and OPTION_SET_* (internal.h) */

/* By descriptor number: MADE_HERE for a socket our socket() returned,
 * with the sizes (and the timeouts and SO_LINGER: OPTION_SET_*) set on it
 * since (cleared when the number is closed), and above SHARES_SHIFT the
 * count of calls that may share a file (lf_shares) when it was made, which
 * wait.c's answers from memory need at opt-in. */
#define NOTED_FDS 65536
#define SHARES_SHIFT 5
static uint32_t noted[NOTED_FDS];

void bufsize_socket_made(int fd, int made)
{
    uint32_t shares = __atomic_load_n(&lf_shares, __ATOMIC_RELAXED);
    if (fd >= 0 && fd < NOTED_FDS)
        __atomic_store_n(&noted[fd], made ? MADE_HERE | shares << SHARES_SHIFT : 0,
                         __ATOMIC_RELAXED);
}

int bufsize_noted(int fd)
{
    return fd >= 0 && fd < NOTED_FDS && __atomic_load_n(&noted[fd], __ATOMIC_RELAXED) != 0;
}

int fd_made_here_set(int fd)
{
    uint32_t seen = fd >= 0 && fd < NOTED_FDS ? __atomic_load_n(&noted[fd], __ATOMIC_RELAXED) : 0;
    uint32_t shares = __atomic_load_n(&lf_shares, __ATOMIC_RELAXED);
    if (!(seen & MADE_HERE) || seen >> SHARES_SHIFT != (shares << SHARES_SHIFT) >> SHARES_SHIFT)
        return -1;
    return (int)(seen & (OPTION_SET_TIMEOUT | OPTION_SET_LINGER));
}

int fd_made_here_unshared(int fd)
{
    return fd_made_here_set(fd) >= 0;
}

static uint32_t reported(int fd, int optname)
{
    int v = 0;
    socklen_t len = sizeof v;
    return getsockopt(fd, SOL_SOCKET, optname, &v, &len) == 0 && v > 0 ? (uint32_t)v : 0;
}

static void apply(struct lf_conn *c, int set, int fd)
{
    if (set & SET_SND)
        __atomic_store_n(&c->tx.own_bound, reported(fd, SO_SNDBUF), __ATOMIC_RELAXED);
    if (set & SET_RCV) {
        __atomic_store_n(&c->rx.ctl->reader_bound, reported(fd, SO_RCVBUF), __ATOMIC_RELAXED);
        conn_ring_bell(c);   /* a writer waiting for room may have more now */
    }
}

static int which(int level, int optname)
{
    if (level != SOL_SOCKET)
        return 0;
    if (optname == SO_SNDBUF || optname == SO_SNDBUFFORCE)
        return SET_SND;
    return optname == SO_RCVBUF || optname == SO_RCVBUFFORCE ? SET_RCV : 0;
}

/* bits noted on a socket our socket() made, for opting it in later */
static void note_made_here(int fd, uint32_t bits)
{
    if (bits && fd >= 0 && fd < NOTED_FDS &&
        (__atomic_load_n(&noted[fd], __ATOMIC_RELAXED) & MADE_HERE))
        __atomic_fetch_or(&noted[fd], bits, __ATOMIC_RELAXED);
}

void bufsize_set(int fd, int level, int optname)
{
    int set = which(level, optname);
    note_made_here(fd, (uint32_t)option_set_by(level, optname));
    struct lf_sock *s = set ? fdtable_acquire(fd) : NULL;
    if (!s) {
        note_made_here(fd, (uint32_t)set);
        return;
    }
    lf_lock(&s->lock);
    __atomic_fetch_or(&s->bufsize_set, set, __ATOMIC_RELAXED);
    if (sock_kind(s) == LF_FAST)
        apply(s->conn, set, fd);
    lf_unlock(&s->lock);
    sock_put(s);
}

void bufsize_apply(struct lf_sock *s, struct lf_conn *c, int fd)
{
    int set = __atomic_load_n(&s->bufsize_set, __ATOMIC_RELAXED);
    if (set)
        apply(c, set, fd);
}

void bufsize_inherit(struct lf_sock *listener, int fd)
{
    int set = __atomic_load_n(&listener->bufsize_set, __ATOMIC_RELAXED);
    struct lf_sock *s = set ? fdtable_acquire(fd) : NULL;
    if (!s)
        return;
    __atomic_fetch_or(&s->bufsize_set, set, __ATOMIC_RELAXED);
    if (sock_kind(s) == LF_FAST)
        apply(s->conn, set, fd);
    sock_put(s);
}

/* One of the three values of tcp_wmem or tcp_rmem (0: the least, 1: the
 * initial size of a new socket's buffer, 2: the most autotuning gives it);
 * 0 when it cannot be read. */
static uint32_t tcp_mem_value(const char *path, int which)
{
    char buf[96];
    unsigned v[3];
    return read_small_file(path, buf, sizeof buf) > 0 &&
                   sscanf(buf, "%u %u %u", &v[0], &v[1], &v[2]) == 3
               ? v[which] : 0;
}

static uint32_t initial(const char *path)
{
    return tcp_mem_value(path, 1);
}

/* Linux's own defaults, where /proc cannot be read: 4 MiB and 128 KiB. */
#define WMEM_MAX_DEFAULT (4u << 20)
#define RMEM_INITIAL_DEFAULT (128u << 10)

/* A new socket's receive buffer (tcp_rmem's second), read once; 0 while
 * it cannot be read. */
static uint32_t rmem_initial(void)
{
    static uint32_t v;   /* threads may race to fill it in: they agree */
    uint32_t got = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (!got) {
        got = initial("/proc/sys/net/ipv4/tcp_rmem");
        __atomic_store_n(&v, got, __ATOMIC_RELAXED);
    }
    return got;
}

uint64_t bufsize_tcp_hold(void)
{
    static uint64_t hold;   /* threads may race to fill it in: they agree */
    uint64_t v = __atomic_load_n(&hold, __ATOMIC_RELAXED);
    if (v)
        return v;
    uint32_t snd = tcp_mem_value("/proc/sys/net/ipv4/tcp_wmem", 2);
    uint32_t rcv = rmem_initial();
    v = (uint64_t)(snd ? snd : WMEM_MAX_DEFAULT) + (rcv ? rcv : RMEM_INITIAL_DEFAULT);
    __atomic_store_n(&hold, v, __ATOMIC_RELAXED);
    return v;
}

uint64_t bufsize_reader_holds(const struct ring *r)
{
    uint32_t set = __atomic_load_n(&r->ctl->reader_bound, __ATOMIC_RELAXED);
    if (set)
        return set;
    uint32_t rcv = rmem_initial();
    return rcv ? rcv : RMEM_INITIAL_DEFAULT;
}

void bufsize_at_optin(struct lf_sock *s, int fd)
{
    uint32_t seen = fd >= 0 && fd < NOTED_FDS ? __atomic_load_n(&noted[fd], __ATOMIC_RELAXED) : 0;
    if (seen & MADE_HERE) {
        __atomic_fetch_or(&s->bufsize_set, seen & (SET_SND | SET_RCV), __ATOMIC_RELAXED);
        return;
    }
    static uint32_t snd0;   /* threads may race to fill it in: they agree */
    if (!snd0)
        snd0 = initial("/proc/sys/net/ipv4/tcp_wmem");
    uint32_t rcv0 = rmem_initial();
    int set = (snd0 && reported(fd, SO_SNDBUF) != snd0 ? SET_SND : 0) |
              (rcv0 && reported(fd, SO_RCVBUF) != rcv0 ? SET_RCV : 0);
    __atomic_fetch_or(&s->bufsize_set, set, __ATOMIC_RELAXED);
}
