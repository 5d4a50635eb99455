/*
 * bench_cost.c - what one connection costs beside the kernel's: descriptors
 * and memory of each end, with many connections open at once.
 *
 * A client and a server process (both forked) open N connections, each
 * fully set up by a 1-byte echo, then wait in epoll_wait on them: where
 * loopfast gives an idle ring's pages back (src/trim.c), as a program of
 * event-loop shape would.  Between commands this process samples theirs
 * from outside (/proc/PID/fd, /proc/PID/smaps_rollup, /proc/meminfo), so the
 * sampling costs them nothing.  The growth over the moment before the first
 * connection, divided by N, is the cost of one.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_proc.h"
#include "bench_util.h"
#include "loopfast.h"

#define COST_CONNS 200
#define COST_BUSY_BYTES (64u << 10)
#define COST_IDLE_S 1.5
/* Descriptors a fast connection may take in each process (six today), and
 * what the rest of the process needs. */
#define FDS_PER_CONN 8
#define FDS_SPARE 64

/* Commands to a peer, one byte on its control socket; each is answered with
 * an int (a count, or -1 when it failed). */
enum { CMD_OPEN = 'o', CMD_BUSY = 'b' };

struct peer {
    enum transport t;
    enum cost_end end;
    int n, ctl, listener;
    int other_ctl;                      /* the other peer's, inherited: closed */
    const struct sockaddr_storage *addr;
    socklen_t len;
    int *fds, ep;
};

static char chunk[COST_BUSY_BYTES];

/* Connects (client) or accepts (server) one connection and echoes 1 byte. */
static int open_one(struct peer *p)
{
    char b = 'x';
    int fd;
    if (p->end == END_CLIENT) {
        fd = sock_dial(p->t, p->addr, p->len);
        if (write_full(fd, &b, 1) != 1 || read_full(fd, &b, 1) != 1)
            return -1;
    } else {
        if ((fd = accept(p->listener, NULL, NULL)) < 0)
            return -1;
        sock_nodelay(p->t, fd);
        if (read_full(fd, &b, 1) != 1 || write_full(fd, &b, 1) != 1)
            return -1;
    }
    return fd;
}

/* Opens all N; the client answers how many are fast. */
static int open_all(struct peer *p)
{
    int fast = 0;
    for (int i = 0; i < p->n; i++) {
        if ((p->fds[i] = open_one(p)) < 0)
            return -1;
        struct epoll_event e = { .events = EPOLLIN, .data.fd = p->fds[i] };
        if (epoll_ctl(p->ep, EPOLL_CTL_ADD, p->fds[i], &e) < 0)
            return -1;
        fast += loopfast_fd_is_fast(p->fds[i]) == 1;
    }
    return fast;
}

/* COST_BUSY_BYTES each way on every connection, one after another: the
 * client writes first, the server echoes. */
static int busy_all(struct peer *p)
{
    size_t len = sizeof chunk;
    for (int i = 0; i < p->n; i++) {
        int fd = p->fds[i];
        int ok = p->end == END_CLIENT
                     ? write_full(fd, chunk, len) == (ssize_t)len && read_full(fd, chunk, len) == (ssize_t)len
                     : read_full(fd, chunk, len) == (ssize_t)len && write_full(fd, chunk, len) == (ssize_t)len;
        if (!ok)
            return -1;
    }
    return 0;
}

/* Waits in epoll_wait, the connections' set included, for the next command;
 * 0 when this process's parent closed the control socket. */
static int next_command(struct peer *p)
{
    struct epoll_event ev[16];
    for (;;) {
        int n = epoll_wait(p->ep, ev, 16, -1);
        for (int i = 0; i < n; i++) {
            char cmd;
            if (ev[i].data.fd != p->ctl)
                continue;
            ssize_t r = read(p->ctl, &cmd, 1);
            return r == 1 ? cmd : 0;
        }
        if (n < 0 && errno != EINTR)
            return 0;
    }
}

static int answer(struct peer *p, int v)
{
    return write_full(p->ctl, &v, sizeof v) == sizeof v ? 0 : -1;
}

/* The peer process.  What it will touch later is touched before the
 * baseline, so that only the connections' growth is counted. */
static int peer_main(struct peer *p)
{
    memset(chunk, 1, sizeof chunk);
    p->fds = calloc((size_t)p->n, sizeof *p->fds);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = { .events = EPOLLIN, .data.fd = p->ctl };
    if (!p->fds || p->ep < 0 || epoll_ctl(p->ep, EPOLL_CTL_ADD, p->ctl, &e) < 0)
        return 1;
    memset(p->fds, 0xff, (size_t)p->n * sizeof *p->fds);
    if (answer(p, 0) < 0)
        return 1;
    for (int cmd; (cmd = next_command(p));) {
        int v = cmd == CMD_OPEN ? open_all(p) : cmd == CMD_BUSY ? busy_all(p) : -1;
        if (answer(p, v) < 0 || v < 0)
            return 1;
    }
    return 0;
}

/* ---- this process: commands and samples ---- */

struct sample {
    long fds[END_COUNT], rss[END_COUNT], pss[END_COUNT];   /* KiB */
    long shmem, slab;
};

static long field_kib(const char *path, const char *name)
{
    FILE *f = fopen(path, "r");
    char line[256];
    long v = -1;
    size_t k = strlen(name);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, name, k) && sscanf(line + k, " %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static long count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    long n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static struct sample take_sample(const pid_t pid[END_COUNT])
{
    struct sample s;
    for (int e = 0; e < END_COUNT; e++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid[e]);
        s.fds[e] = count_fds(pid[e]);
        s.rss[e] = field_kib(path, "Rss:");
        s.pss[e] = field_kib(path, "Pss:");
    }
    s.shmem = field_kib("/proc/meminfo", "Shmem:");
    s.slab = field_kib("/proc/meminfo", "Slab:");
    return s;
}

static double per_conn(long now, long base, int n)
{
    return now < 0 || base < 0 ? NAN : (double)(now - base) / n;
}

static void record(struct conn_cost *c, enum cost_phase ph, struct sample s, struct sample base)
{
    for (int e = 0; e < END_COUNT; e++) {
        if (ph == PH_SETUP)
            c->fds[e] = per_conn(s.fds[e], base.fds[e], c->n);
        c->rss_kib[ph][e] = per_conn(s.rss[e], base.rss[e], c->n);
        c->pss_kib[ph][e] = per_conn(s.pss[e], base.pss[e], c->n);
    }
    c->shmem_kib[ph] = per_conn(s.shmem, base.shmem, c->n);
    c->slab_kib[ph] = per_conn(s.slab, base.slab, c->n);
}

/* Sends `cmd` to both peers, the server first (the client's connections
 * need it); returns the client's answer, or -1 when either failed. */
static int command(const int ctl[END_COUNT], char cmd)
{
    int v[END_COUNT] = { -1, -1 };
    for (int e = END_COUNT - 1; e >= 0; e--)
        if (write_full(ctl[e], &cmd, 1) != 1)
            return -1;
    for (int e = 0; e < END_COUNT; e++)
        if (read_full(ctl[e], &v[e], sizeof v[e]) != sizeof v[e] || v[e] < 0)
            return -1;
    return v[END_CLIENT];
}

/* As many connections as loopfast's share of the descriptor table allows
 * for fast ones (LOOPFAST_MAX_FDS, by default a quarter of the limit), at
 * most COST_CONNS; the soft limit is raised to the hard one first. */
static int connections(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0)
        return 0;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    const char *cap = getenv("LOOPFAST_MAX_FDS");
    rlim_t share = cap && *cap ? (rlim_t)strtoul(cap, NULL, 10) : r.rlim_cur / 4;
    if (!cap && r.rlim_cur == RLIM_INFINITY)
        share = (rlim_t)1 << 16;
    if (share > r.rlim_cur)
        share = r.rlim_cur;
    if (share >= FDS_SPARE + FDS_PER_CONN * COST_CONNS)
        return COST_CONNS;
    return share > FDS_SPARE ? (int)((share - FDS_SPARE) / FDS_PER_CONN) : 0;
}

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
        ;
}

/* Forks the peer of one end; its control socket's other end goes into *ctl. */
static pid_t start_peer(struct peer *p, int *ctl)
{
    int sv[2];
    char what[64];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("cannot create a socket pair: %s; check `ulimit -n`", strerror(errno));
    snprintf(what, sizeof what, "%s per-connection cost (%s)", transport_name(p->t),
             p->end == END_CLIENT ? "client" : "server");
    pid_t pid = child_start(what, 4 * COST_IDLE_S);
    if (pid == 0) {
        close(sv[0]);
        if (p->other_ctl >= 0)
            close(p->other_ctl);
        p->ctl = sv[1];
        _exit(peer_main(p));
    }
    close(sv[1]);
    *ctl = sv[0];
    return pid;
}

static void not_measured(struct conn_cost *c)
{
    for (int ph = 0; ph < PH_COUNT; ph++) {
        for (int e = 0; e < END_COUNT; e++) {
            c->fds[e] = NAN;
            c->rss_kib[ph][e] = c->pss_kib[ph][e] = NAN;
        }
        c->shmem_kib[ph] = c->slab_kib[ph] = NAN;
    }
}

/* Runs the commands and samples; the idle sample for kernel TCP and
 * loopfast only (AF_UNIX is the reference for set-up; it keeps the run
 * short). */
static int drive(struct conn_cost *c, enum transport t, int memory, const pid_t pid[END_COUNT],
                 const int ctl[END_COUNT])
{
    int ready;
    for (int e = 0; e < END_COUNT; e++)
        if (read_full(ctl[e], &ready, sizeof ready) != sizeof ready || ready != 0)
            return -1;
    struct sample base = take_sample(pid);
    if ((c->fast = command(ctl, CMD_OPEN)) < 0)
        return -1;
    record(c, PH_SETUP, take_sample(pid), base);
    if (!memory)
        return 0;
    if (command(ctl, CMD_BUSY) < 0)
        return -1;
    record(c, PH_BUSY, take_sample(pid), base);
    if (t == T_UNIX)
        return 0;
    sleep_s(COST_IDLE_S);
    record(c, PH_IDLE, take_sample(pid), base);
    return 0;
}

int sock_conn_cost(enum transport t, int memory, struct conn_cost *c)
{
    not_measured(c);
    c->fast = 0;
    if ((c->n = connections()) < 8) {
        c->n = 0;   /* a descriptor limit this low measures nothing but noise */
        return 0;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    int ctl[END_COUNT], listener = sock_listen(t, &addr, &len);
    struct peer p = { .t = t, .end = END_SERVER, .n = c->n, .listener = listener,
                      .other_ctl = -1, .addr = &addr, .len = len };
    pid_t pid[END_COUNT];
    pid[END_SERVER] = start_peer(&p, &ctl[END_SERVER]);
    close(listener);
    p.end = END_CLIENT;
    p.listener = -1;
    p.other_ctl = ctl[END_SERVER];
    pid[END_CLIENT] = start_peer(&p, &ctl[END_CLIENT]);
    int rc = drive(c, t, memory, pid, ctl);
    for (int e = 0; e < END_COUNT; e++)
        close(ctl[e]);
    for (int e = 0; e < END_COUNT; e++)
        if (child_wait(pid[e]) < 0)
            rc = -1;
    return rc;
}
