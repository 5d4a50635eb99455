/* diff_random.c - a differential fuzzer of loopfast's socket semantics.
 *
 * From a seed it draws a script of socket operations on one TCP connection
 * over 127.0.0.1 whose two ends live in one process and one thread, runs
 * it, and prints a transcript of everything a program could observe: return
 * values, errno names, byte counts and checksums of what was read, poll,
 * select and epoll (level- and edge-triggered) events, FIONREAD/SIOCOUTQ,
 * SO_ERROR, TCP_INFO's state, SIGPIPE.  Operations: write/send/sendto/
 * sendmsg/writev (0..16 KiB, MSG_DONTWAIT/MSG_NOSIGNAL/MSG_MORE), read/recv/
 * recvfrom/recvmsg/readv (MSG_PEEK/DONTWAIT/WAITALL/TRUNC), shutdown, close
 * (with SO_LINGER {1,0} or not), poll/select/epoll_wait, ioctls, get/
 * setsockopt, O_NONBLOCK, dup/dup2/F_DUPFD_CLOEXEC (and close of the
 * original), a forked child doing one operation, sendfile, splice both
 * ways, and one-way exchanges (which make the connection switch).  The
 * same scripts run twice, with libloopfast.so preloaded in
 * LOOPFAST_MODE=off (the kernel's reference) and LOOPFAST_MODE=all; the
 * transcripts must be equal.
 *
 * In `make check` (no arguments) it runs the regression set, every
 * transcript equal: seeds 1-100 and later ones whose differences were
 * fixed, each set with the mask its seeds were found under (a seed's
 * script depends on the mask): -a 15, then -a 11 (zero-length calls too,
 * equal since the twenty-third session), then seeds 1-60 with -a 8 (an
 * epoll registration outliving its number, and both ends in one set, too,
 * equal since the twenty-fourth).  The fuzzer, written by a helper
 * in the twenty-second session, found 15 kinds of difference there; those
 * still left out by -a 11 are open: docs/design.md, 10.  It builds as a test
 * (linked with libloopfast, no preload needed) or alone:
 *   cc -std=c11 -O2 -Wall -Wextra -Werror -o diff_random diff_random.c -ldl
 *
 * Usage:
 *   diff_random [-n COUNT] [-s FIRST] [-a MASK] [-e] [-v] [-x] [-k OPS] [SEED...]
 *     runs seeds FIRST..FIRST+COUNT-1 (default 1, 100) or the SEEDs given,
 *     each in both modes, and exits 0 when every transcript matched, 1 if
 *     not (about 0.1 s a seed a mode: -n 30 takes 5-8 s).  -v prints every
 *     transcript; -x shrinks each failing seed to the fewest operations
 *     that still give the same first differing line (printed as a -k
 *     command); -k 3,7,9 runs only those operations of the script; -a MASK
 *     leaves out shapes whose difference is already known, to look past
 *     them: 1 both ends in one epoll set (-e is -a 1), 2 an epoll registration
 *     outliving the number it was made with (both equal now: the
 *     regression set's third mask), 4 zero-length reads and writes (equal
 *     now: its second), 8 EPOLLET waits.  The library: $LOOPFAST_LIB, else
 *     ../libloopfast.so, repo/build/libloopfast.so or build/libloopfast.so
 *     next to the program.
 *   DIFF_RANDOM_AGAINST=off diff_random ... compares the kernel with itself:
 *     a check of the harness's determinism (it must always exit 0).
 *   DIFF_RANDOM_MODE=off|all diff_random [-a MASK] [-k OPS] SEED... (with
 *     LD_PRELOAD and LOOPFAST_MODE set by the caller) is the worker: it
 *     prints the transcripts of one mode only, each seed run in a child of
 *     its own (3 s alarm: a hang shows as "status e").
 * Lines of a transcript that begin with '#' (where the connection switched,
 * SIOCOUTQ's value) are shown but not compared.
 *
 * Determinism: one thread owns both ends, so nothing moves while a call
 * runs; after each operation settle() waits until the kernel has every
 * segment acknowledged (tcpi_unacked 0: loopback TCP delays the ACK of a
 * FIN, and Nagle then holds small writes, by up to 40-200 ms; TCP_QUICKACK
 * hurries it) and the state of both ends (readiness, queues, TCP state)
 * stops changing; no more than 32 KiB is ever unread in one direction, well
 * below both the kernel's and a ring's room; a blocking call is made only
 * when poll says it will not block (otherwise with MSG_DONTWAIT, noted
 * "nb", or a 10 ms SO_RCVTIMEO for splice, noted "timed").  FIN_WAIT1/2
 * and CLOSING/TIME_WAIT are printed as one state each, and SIOCOUTQ is not
 * compared: both follow the peer's delayed ACKs, i.e. timing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPS 64
#define MAX_UNREAD (32 * 1024)
#define MAX_IO (16 * 1024)

/* ---------- transcript ---------- */

static int out_fd = 1;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    for (ssize_t off = 0; off < n;) {
        ssize_t k = write(out_fd, line + off, (size_t)(n - off));
        if (k <= 0)
            return;
        off += k;
    }
}

static const char *errname(int e)
{
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ENOTCONN: return "ENOTCONN";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EINTR: return "EINTR";
    case EFAULT: return "EFAULT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTSOCK: return "ENOTSOCK";
    case ESPIPE: return "ESPIPE";
    case EISCONN: return "EISCONN";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EMSGSIZE: return "EMSGSIZE";
    case ESHUTDOWN: return "ESHUTDOWN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNABORTED: return "ECONNABORTED";
    case ENOMEM: return "ENOMEM";
    default: {
        static char b[32];
        snprintf(b, sizeof b, "E%d", e);
        return b;
    }
    }
}

/* "=N" or "=ENAME" */
static const char *res(ssize_t n)
{
    static char b[4][48];
    static int k;
    k = (k + 1) & 3;
    if (n < 0)
        snprintf(b[k], sizeof b[k], "=%s", errname(errno));
    else
        snprintf(b[k], sizeof b[k], "=%zd", n);
    return b[k];
}

static const char *pev(unsigned ev)
{
    static char b[4][16];
    static int k;
    k = (k + 1) & 3;
    snprintf(b[k], sizeof b[k], "%s%s%s%s%s%s", ev & POLLIN ? "I" : "", ev & POLLPRI ? "P" : "",
             ev & POLLOUT ? "O" : "", ev & POLLERR ? "E" : "", ev & POLLHUP ? "H" : "",
             ev & POLLRDHUP ? "R" : "");
    if (!b[k][0])
        strcpy(b[k], "-");
    return b[k];
}

/* Kernel TCP acknowledges a FIN late (delayed ACK, up to 200 ms, once the
 * connection is interactive), so FIN_WAIT1 and FIN_WAIT2 (and CLOSING and
 * TIME_WAIT) follow one another by timing alone: they are printed as one. */
static const char *tcp_state_name(int s)
{
    if (s == 4 || s == 5)
        return "FIN_WAIT";
    if (s == 11 || s == 6)
        return "CLOSING|TIME_WAIT";

    static const char *names[] = { "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1",
                                   "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK",
                                   "LISTEN", "CLOSING" };
    return s >= 0 && s < (int)(sizeof names / sizeof *names) ? names[s] : "??";
}

static uint32_t fnv32(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* ---------- the random script ---------- */

static int avoid;   /* -a, below */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

enum kind {
    K_SEND, K_SENDMORE, K_RECV, K_EXCHANGE, K_SHUTDOWN, K_CLOSE, K_POLL, K_SELECT, K_EPOLL_LT,
    K_EPOLL_ET, K_IOCTL, K_GETOPT, K_SETOPT, K_NONBLOCK, K_DUP, K_CLOSE_DUP, K_FORK, K_SENDFILE,
    K_SPLICE_IN, K_SPLICE_OUT, K_COUNT
};
static const char *kind_name[K_COUNT] = {
    "send", "sendmore", "recv", "exchange", "shutdown", "close", "poll", "select", "epoll-lt",
    "epoll-et", "ioctl", "getsockopt", "setsockopt", "nonblock", "dup", "close-dup", "fork",
    "sendfile", "splice-in", "splice-out"
};
static const int weight[K_COUNT] = { 14, 2, 14, 4, 2, 1, 4, 2, 3, 3, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2 };

struct op { int kind, end, fdi; uint32_t size, a, b; };

static struct op script[MAX_OPS];
static int nops;
static int auto_observe;

static uint32_t draw_size(void)
{
    switch (rnd() % 4) {
    case 0: return (uint32_t)(rnd() % 8) + ((avoid & 4) != 0);
    case 1: return (uint32_t)(rnd() % 300);
    case 2: return (uint32_t)(rnd() % 4096);
    default: return (uint32_t)(rnd() % (MAX_IO + 1));
    }
}

static void make_script(unsigned long seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    for (int i = 0; i < 4; i++)
        rnd();
    int total = 0;
    for (int k = 0; k < K_COUNT; k++)
        total += weight[k];
    nops = 10 + (int)(rnd() % (MAX_OPS - 10));
    auto_observe = (int)(rnd() % 2);
    for (int i = 0; i < nops; i++) {
        int w = (int)(rnd() % (uint64_t)total), k = 0;
        while (w >= weight[k])
            w -= weight[k++];
        if (k == K_EPOLL_ET && (avoid & 8))
            k = K_EPOLL_LT;
        script[i] = (struct op){ k, (int)(rnd() % 2), (int)(rnd() % 8), draw_size(),
                                 (uint32_t)rnd(), (uint32_t)rnd() };
    }
}

/* ---------- the connection ---------- */

enum { C, S };
static const char end_name[2] = { 'C', 'S' };
struct end { int fd[4]; int n; };
static struct end ends[2];
static uint64_t sent[2], taken[2];   /* bytes end e sent / took off its queue */
static int ep_lt[2] = { -1, -1 }, ep_et[2] = { -1, -1 };

/* -a MASK: shapes left out, to look past differences already known:
 * 1 both ends in one epoll set (each end gets sets of its own; -e too),
 * 2 an epoll registration outliving the number it was made with (a
 *   registered number is taken out of the sets before its close and a
 *   surviving duplicate put in), 4 zero-length reads and writes, 8 no
 *   edge-triggered epoll (its waits are level-triggered ones). */
#define split_epoll (avoid & 1)
static int reg_fd[2] = { -1, -1 };

static void reregister(int e, int fd);

/* Before fd of end e is closed. */
static void closing(int e, int fd)
{
    if (!(avoid & 2) || fd != reg_fd[e])
        return;
    epoll_ctl(ep_lt[e], EPOLL_CTL_DEL, fd, NULL);
    epoll_ctl(ep_et[e], EPOLL_CTL_DEL, fd, NULL);
    reg_fd[e] = -1;
}
static volatile sig_atomic_t sigpipes;
static int file_fd = -1;
static int (*is_fast)(int);

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static int has(int e) { return ends[e].n > 0; }
static int pick(int e, int fdi) { return ends[e].fd[fdi % ends[e].n]; }

/* the bytes end e sends next */
static void pattern(int e, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t p = sent[e] + i;
        buf[i] = (unsigned char)(p * 131 + (unsigned)e * 7 + (p >> 9));
    }
}

static uint32_t room_to(int e, uint32_t want)
{
    uint64_t unread = sent[1 - e] - taken[e];
    uint64_t room = unread >= MAX_UNREAD ? 0 : MAX_UNREAD - unread;
    return want < room ? want : (uint32_t)room;
}

static int readable_now(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLERR | POLLHUP));
}

static int nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

static int inq(int fd)
{
    int n = -1;
    if (ioctl(fd, FIONREAD, &n) < 0)
        return -1;
    return n;
}

/* Segments the peer has not acknowledged yet (kernel TCP delays the ACK of
 * a FIN, and of data once a connection looks interactive, by up to 200 ms:
 * its arrival is an epoll edge, so settle() waits for it). */
static int tcp_unacked(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return (int)ti.tcpi_unacked;
}

static int tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    return ti.tcpi_state;
}

/* What both ends look like, for settling (read-only calls). */
static void snapshot(char *buf, size_t size)
{
    buf[0] = 0;
    for (int e = 0; e < 2; e++) {
        if (!has(e))
            continue;
        int fd = ends[e].fd[0], outq = -1;
        struct pollfd p = { fd, POLLIN | POLLOUT | POLLRDHUP | POLLPRI, 0 };
        poll(&p, 1, 0);
        ioctl(fd, SIOCOUTQ, &outq);
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%c:%x,%d,%d,%d ", end_name[e], (unsigned)p.revents, inq(fd),
                 outq, tcp_state(fd));
    }
}

/* Waits until the connection stops changing (loopback is almost always
 * synchronous; this covers the exceptions). */
static void settle(void)
{
    char a[256], b[256];
    for (int i = 0; i < 400; i++) {
        int unacked = 0;
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < ends[e].n; k++)
                unacked += tcp_unacked(ends[e].fd[k]);
        if (!unacked)
            break;
        /* ask for the ACK now (it comes at once when the queue is empty) */
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < ends[e].n; k++)
                setsockopt(ends[e].fd[k], IPPROTO_TCP, TCP_QUICKACK, &(int){ 1 }, sizeof(int));
        if (i > 2)
            usleep(1000);
    }
    snapshot(a, sizeof a);
    for (int i = 0, stable = 0; i < 200 && stable < 3; i++) {
        if (i < 4)
            sched_yield();
        else
            usleep(i < 20 ? 100 : 1000);
        snapshot(b, sizeof b);
        if (strcmp(a, b)) {
            stable = 0;
            memcpy(a, b, sizeof a);
        } else {
            stable++;
        }
    }
}

static void observe(void)
{
    for (int e = 0; e < 2; e++) {
        if (!has(e))
            continue;
        int fd = ends[e].fd[0];
        struct pollfd p = { fd, POLLIN | POLLOUT | POLLRDHUP | POLLPRI, 0 };
        poll(&p, 1, 0);
        say("  .%c poll:%s inq:%d st:%s\n", end_name[e], pev((unsigned)p.revents), inq(fd),
            tcp_state_name(tcp_state(fd)));
    }
}

static void drop_fd(int e, int i)
{
    ends[e].fd[i] = ends[e].fd[--ends[e].n];
    if ((avoid & 2) && reg_fd[e] < 0 && ends[e].n > 0)
        reregister(e, ends[e].fd[0]);
}

static void reregister(int e, int fd)
{
    struct epoll_event ev = { EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI, { .u64 = (uint64_t)e } };
    epoll_ctl(ep_lt[e], EPOLL_CTL_ADD, fd, &ev);
    ev.events |= EPOLLET;
    epoll_ctl(ep_et[e], EPOLL_CTL_ADD, fd, &ev);
    reg_fd[e] = fd;
}

/* ---------- operations ---------- */

static const char *flags_text(int fl)
{
    static char b[96];
    snprintf(b, sizeof b, "%s%s%s%s%s%s", fl & MSG_DONTWAIT ? "|DW" : "", fl & MSG_NOSIGNAL ? "|NS" : "",
             fl & MSG_MORE ? "|MORE" : "", fl & MSG_PEEK ? "|PEEK" : "", fl & MSG_WAITALL ? "|WA" : "",
             fl & MSG_TRUNC ? "|TRUNC" : "");
    return b;
}

/* One send of `size` bytes from end e by call form `form`: its result. */
static ssize_t do_send(int e, int fd, uint32_t size, int form, int fl, char *what, size_t wsize)
{
    static unsigned char buf[MAX_IO];
    pattern(e, buf, size);
    ssize_t n;
    struct iovec iov[3];
    size_t cut1 = size / 3, cut2 = size - size / 4;
    iov[0] = (struct iovec){ buf, cut1 };
    iov[1] = (struct iovec){ buf + cut1, cut2 - cut1 };
    iov[2] = (struct iovec){ buf + cut2, size - cut2 };
    switch (form % 5) {
    case 0:
        snprintf(what, wsize, "write(%u)", size);
        n = write(fd, buf, size);
        break;
    case 1:
        snprintf(what, wsize, "send(%u%s)", size, flags_text(fl));
        n = send(fd, buf, size, fl);
        break;
    case 2:
        snprintf(what, wsize, "sendto(%u%s)", size, flags_text(fl));
        n = sendto(fd, buf, size, fl, NULL, 0);
        break;
    case 3: {
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
        snprintf(what, wsize, "sendmsg(%u%s)", size, flags_text(fl));
        n = sendmsg(fd, &m, fl);
        break;
    }
    default:
        snprintf(what, wsize, "writev(%u)", size);
        n = writev(fd, iov, 3);
        break;
    }
    int saved = errno;
    if (n > 0)
        sent[e] += (uint64_t)n;
    errno = saved;
    return n;
}

static void op_send(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), fl = 0;
    if (o->a & 1)
        fl |= MSG_DONTWAIT;
    if (o->a & 2)
        fl |= MSG_NOSIGNAL;
    uint32_t size = room_to(1 - e, o->size);
    char what[96];
    int before = sigpipes;
    if ((avoid & 4) && size < 2)
        size = 2;
    if (o->kind == K_SENDMORE) {
        uint32_t first = size / 2;
        ssize_t n = do_send(e, fd, first, 1, fl | MSG_MORE, what, sizeof what);
        say("%d %c%d %s%s", i, end_name[e], fd, what, res(n));
        n = do_send(e, fd, size - first, (int)(o->a >> 8), fl, what, sizeof what);
        say(" then %s%s", what, res(n));
    } else {
        ssize_t n = do_send(e, fd, size, (int)(o->a >> 8), fl, what, sizeof what);
        say("%d %c%d %s%s", i, end_name[e], fd, what, res(n));
    }
    say("%s\n", sigpipes != before ? " SIGPIPE" : "");
}

/* One receive of up to `size` bytes at end e: its result, noted. */
static void do_recv(int i, int e, int fd, uint32_t size, uint32_t a, const char *prefix)
{
    static unsigned char buf[MAX_IO + 16];
    int fl = 0;
    if (a & 1)
        fl |= MSG_DONTWAIT;
    if (a & 2)
        fl |= MSG_PEEK;
    if ((a & 12) == 4)
        fl |= MSG_WAITALL;
    if ((a & 0x30) == 0x10)
        fl |= MSG_TRUNC;
    int form = (int)((a >> 8) % 5);
    if (form == 0 || form == 4)
        fl = 0;   /* read, readv */
    const char *nb = "";
    int blocking = !(fl & MSG_DONTWAIT) && !nonblocking(fd);
    if (blocking) {
        if (!readable_now(fd)) {
            fl |= MSG_DONTWAIT;
            nb = "(nb)";
        } else if (fl & MSG_WAITALL) {
            struct pollfd p = { fd, POLLRDHUP, 0 };
            int q = inq(fd);
            poll(&p, 1, 0);
            if (!p.revents && q >= 0 && (uint32_t)q < size)
                size = (uint32_t)q, nb = "(cut)";
        }
    }
    struct iovec iov[3];
    size_t cut1 = size / 2, cut2 = size - size / 3;
    iov[0] = (struct iovec){ buf, cut1 };
    iov[1] = (struct iovec){ buf + cut1, cut2 - cut1 };
    iov[2] = (struct iovec){ buf + cut2, size - cut2 };
    ssize_t n;
    char what[96];
    int mflags = -1;
    switch (form) {
    case 0:
        if (fl & MSG_DONTWAIT) {   /* read cannot take a flag: recv then */
            snprintf(what, sizeof what, "recv(%u%s)", size, flags_text(fl));
            n = recv(fd, buf, size, fl);
        } else {
            snprintf(what, sizeof what, "read(%u)", size);
            n = read(fd, buf, size);
        }
        break;
    case 1:
        snprintf(what, sizeof what, "recv(%u%s)", size, flags_text(fl));
        n = recv(fd, buf, size, fl);
        break;
    case 2: {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        memset(&from, 0, sizeof from);
        snprintf(what, sizeof what, "recvfrom(%u%s)", size, flags_text(fl));
        n = recvfrom(fd, buf, size, fl, (struct sockaddr *)&from, &flen);
        int saved = errno;
        if (n >= 0)
            snprintf(what + strlen(what), sizeof what - strlen(what), " alen=%u", (unsigned)flen);
        errno = saved;
        break;
    }
    case 3: {
        struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
        snprintf(what, sizeof what, "recvmsg(%u%s)", size, flags_text(fl));
        n = recvmsg(fd, &m, fl);
        mflags = m.msg_flags;
        break;
    }
    default:
        if (fl & MSG_DONTWAIT) {
            struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
            snprintf(what, sizeof what, "recvmsg(%u%s)", size, flags_text(fl));
            n = recvmsg(fd, &m, fl);
            mflags = m.msg_flags;
        } else {
            snprintf(what, sizeof what, "readv(%u)", size);
            n = readv(fd, iov, 3);
        }
        break;
    }
    int saved = errno;
    say("%d %s%c%d %s%s%s", i, prefix, end_name[e], fd, what, nb, res(n));
    if (n > 0 && !(fl & MSG_TRUNC))
        say(" ck=%08x", fnv32(buf, (size_t)n));
    if (n >= 0 && mflags >= 0)
        say(" mflags=%x", (unsigned)mflags);
    if (n > 0 && !(fl & MSG_PEEK))
        taken[e] += (uint64_t)n;
    say("\n");
    errno = saved;
}

static void op_recv(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    do_recv(i, e, pick(e, o->fdi), o->size, o->a, "");
}

/* A short message one way, then read on the other end: what makes the
 * connection switch. */
static void op_exchange(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e) || !has(1 - e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    char what[96];
    int before = sigpipes;
    uint32_t size = room_to(1 - e, 1 + o->size % 100);
    ssize_t n = do_send(e, pick(e, o->fdi), size, 0, MSG_NOSIGNAL, what, sizeof what);
    say("%d %c%d %s%s%s\n", i, end_name[e], pick(e, o->fdi), what, res(n),
        sigpipes != before ? " SIGPIPE" : "");
    settle();
    do_recv(i, 1 - e, pick(1 - e, o->fdi), 4096, 1u << 8, "  ");
}

static void op_shutdown(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    static const char *hows[] = { "RD", "WR", "RDWR" };
    int how = (int)(o->a % 3), fd = pick(e, o->fdi);
    say("%d %c%d shutdown(%s)%s\n", i, end_name[e], fd, hows[how], res(shutdown(fd, how)));
}

static void op_close(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int k = o->fdi % ends[e].n, fd = ends[e].fd[k];
    const char *how = "";
    if (o->a % 3 == 0) {
        struct linger l = { 1, 0 };
        how = " linger{1,0}";
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0)
            how = " linger-failed";
    }
    closing(e, fd);
    say("%d %c%d close%s%s\n", i, end_name[e], fd, how, res(close(fd)));
    drop_fd(e, k);
}

static void op_poll(int i)
{
    struct pollfd p[8];
    int n = 0, tag[8];
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < ends[e].n; k++) {
            p[n] = (struct pollfd){ ends[e].fd[k], POLLIN | POLLOUT | POLLRDHUP | POLLPRI, 0 };
            tag[n++] = e;
        }
    int r = poll(p, (nfds_t)n, 0);
    say("%d poll%s", i, res(r));
    for (int k = 0; k < n; k++)
        say(" %c%d:%s", end_name[tag[k]], p[k].fd, pev((unsigned)p[k].revents));
    say("\n");
}

static void op_select(int i)
{
    fd_set r, w, x;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_ZERO(&x);
    int max = -1;
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < ends[e].n; k++) {
            int fd = ends[e].fd[k];
            FD_SET(fd, &r);
            FD_SET(fd, &w);
            FD_SET(fd, &x);
            if (fd > max)
                max = fd;
        }
    struct timeval zero = { 0, 0 };
    int n = select(max + 1, &r, &w, &x, &zero);
    say("%d select%s", i, res(n));
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < ends[e].n; k++) {
            int fd = ends[e].fd[k];
            say(" %c%d:%s%s%s", end_name[e], fd, FD_ISSET(fd, &r) ? "r" : "", FD_ISSET(fd, &w) ? "w" : "",
                FD_ISSET(fd, &x) ? "x" : "");
        }
    say("\n");
}

static void op_epoll(int i, int *ep, const char *name)
{
    struct epoll_event ev[8];
    int n = epoll_wait(ep[0], ev, 8, 0);
    if (n >= 0 && ep[1] != ep[0]) {
        int m = epoll_wait(ep[1], ev + n, 4, 0);
        n = m < 0 ? m : n + m;
    }
    say("%d %s%s", i, name, res(n));
    /* in tag order */
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < n; k++)
            if (ev[k].data.u64 == (uint64_t)t)
                say(" %c:%s", end_name[t], pev(ev[k].events));
    say("\n");
}

static void op_ioctl(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), v = -7;
    static const unsigned long codes[] = { FIONREAD, SIOCINQ, SIOCOUTQ, SIOCOUTQNSD };
    static const char *names[] = { "FIONREAD", "SIOCINQ", "SIOCOUTQ", "SIOCOUTQNSD" };
    int c = (int)(o->a % 4);
    int r = ioctl(fd, codes[c], &v);
    /* SIOCOUTQ counts what the peer has not acknowledged: its delayed ACKs
     * make it timing (the value goes to a '#' line, not compared) */
    if (codes[c] == SIOCOUTQ)
        say("%d %c%d ioctl(%s)%s\n# v=%d\n", i, end_name[e], fd, names[c], res(r), r == 0 ? v : -7);
    else
        say("%d %c%d ioctl(%s)%s v=%d\n", i, end_name[e], fd, names[c], res(r), r == 0 ? v : -7);
}

static void op_getopt(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), v = -7;
    socklen_t len = sizeof v;
    int r;
    switch (o->a % 6) {
    case 0:
        r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len);
        say("%d %c%d SO_ERROR%s v=%s\n", i, end_name[e], fd, res(r), v ? errname(v) : "0");
        break;
    case 1:
        r = getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len);
        say("%d %c%d SO_TYPE%s v=%d\n", i, end_name[e], fd, res(r), v);
        break;
    case 2: {
        struct tcp_info ti;
        memset(&ti, 0, sizeof ti);
        len = sizeof ti;
        r = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
        say("%d %c%d TCP_INFO%s state=%s\n", i, end_name[e], fd, res(r),
            r == 0 ? tcp_state_name(ti.tcpi_state) : "-");
        break;
    }
    case 3:
        r = getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
        say("%d %c%d SO_RCVBUF%s v=%d\n", i, end_name[e], fd, res(r), v);
        break;
    case 4:
        r = getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len);
        say("%d %c%d SO_RCVLOWAT%s v=%d\n", i, end_name[e], fd, res(r), v);
        break;
    default: {
        struct sockaddr_storage a;
        socklen_t alen = sizeof a;
        r = getpeername(fd, (struct sockaddr *)&a, &alen);
        say("%d %c%d getpeername%s len=%u\n", i, end_name[e], fd, res(r), r == 0 ? (unsigned)alen : 0);
        break;
    }
    }
}

static void op_setopt(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), r;
    switch (o->a % 3) {
    case 0: {
        int v = (o->b % 3 == 0) ? 1 : (int)(1 + o->size % 2000);
        r = setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v);
        say("%d %c%d SO_RCVLOWAT=%d%s\n", i, end_name[e], fd, v, res(r));
        break;
    }
    case 1: {
        struct timeval tv = { 0, (o->b % 2) ? 0 : 20000 };
        r = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        say("%d %c%d SO_SNDTIMEO=%ld%s\n", i, end_name[e], fd, (long)tv.tv_usec, res(r));
        break;
    }
    default: {
        struct timeval tv = { 0, (o->b % 2) ? 0 : 20000 };
        r = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        say("%d %c%d SO_RCVTIMEO=%ld%s\n", i, end_name[e], fd, (long)tv.tv_usec, res(r));
        break;
    }
    }
}

static void op_nonblock(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), fl = fcntl(fd, F_GETFL);
    int on = (int)(o->a % 2);
    int r = fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
    say("%d %c%d O_NONBLOCK=%d%s was=%d\n", i, end_name[e], fd, on, res(r), (fl & O_NONBLOCK) != 0);
}

static void op_dup(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e) || ends[e].n >= 4)
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), nfd;
    const char *how;
    switch (o->a % 3) {
    case 0:
        how = "dup";
        nfd = dup(fd);
        break;
    case 1: {
        int target = 40 + (int)(o->b % 8);
        for (int f = 0; f < 2; f++)   /* not onto one of ours */
            for (int k = 0; k < ends[f].n; k++)
                if (ends[f].fd[k] == target)
                    target += 8;
        how = "dup2";
        nfd = dup2(fd, target);
        break;
    }
    default:
        how = "F_DUPFD_CLOEXEC";
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, 20);
        break;
    }
    say("%d %c%d %s%s\n", i, end_name[e], fd, how, res(nfd));
    if (nfd >= 0)
        ends[e].fd[ends[e].n++] = nfd;
    /* then, sometimes, the original goes */
    if (nfd >= 0 && o->b % 2) {
        int k = o->fdi % (ends[e].n - 1);
        closing(e, ends[e].fd[k]);
        say("%d %c%d close-original%s\n", i, end_name[e], ends[e].fd[k], res(close(ends[e].fd[k])));
        drop_fd(e, k);
    }
}

static void op_close_dup(int i, const struct op *o)
{
    int e = o->end;
    if (ends[e].n < 2)
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int k = o->fdi % ends[e].n, fd = ends[e].fd[k];
    closing(e, fd);
    say("%d %c%d close-dup%s\n", i, end_name[e], fd, res(close(fd)));
    drop_fd(e, k);
}

/* A child does one thing with an end and exits. */
static void op_fork(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), p[2];
    if (pipe(p) < 0)
        return (void)say("%d fork: pipe failed\n", i);
    int what = (int)(o->a % 5);
    uint32_t size = room_to(1 - e, o->size % 2000);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        out_fd = p[1];
        alarm(5);
        switch (what) {
        case 0: {
            char w[96];
            ssize_t n = do_send(e, fd, size, (int)(o->b % 5), MSG_NOSIGNAL | MSG_DONTWAIT, w, sizeof w);
            say("%d child %c%d %s%s\n", i, end_name[e], fd, w, res(n));
            break;
        }
        case 1:
            do_recv(i, e, fd, o->size, (o->b & ~1u) | 1u, "child ");
            break;
        case 2:
            say("%d child %c%d shutdown(WR)%s\n", i, end_name[e], fd, res(shutdown(fd, SHUT_WR)));
            break;
        case 3:
            say("%d child %c%d close%s\n", i, end_name[e], fd, res(close(fd)));
            break;
        default: {
            struct pollfd q = { fd, POLLIN | POLLOUT | POLLRDHUP, 0 };
            int r = poll(&q, 1, 0);
            say("%d child %c%d poll%s %s\n", i, end_name[e], fd, res(r), pev((unsigned)q.revents));
            break;
        }
        }
        _exit(0);
    }
    close(p[1]);
    char buf[1024];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf - 1)) > 0) {
        /* the child's counters are its own: redo what it sent or took */
        buf[n] = 0;
        say("%.*s", (int)n, buf);
        char *eq = strstr(buf, ")=");
        long v = eq ? strtol(eq + 2, NULL, 10) : 0;
        if (v > 0 && what == 0)
            sent[e] += (uint64_t)v;
        if (v > 0 && what == 1 && !(o->b & 2))
            taken[e] += (uint64_t)v;
    }
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        say("%d child status %x\n", i, (unsigned)st);
}

static void op_sendfile(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), before = sigpipes;
    off_t off = (off_t)(o->a % 4096);
    uint32_t size = room_to(1 - e, o->size);
    ssize_t n = sendfile(fd, file_fd, &off, size);
    int saved = errno;
    if (n > 0)
        sent[e] += (uint64_t)n;
    errno = saved;
    say("%d %c%d sendfile(%u)%s off=%ld%s\n", i, end_name[e], fd, size, res(n), (long)off,
        sigpipes != before ? " SIGPIPE" : "");
}

static void op_splice_in(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), p[2];
    if (pipe2(p, O_NONBLOCK) < 0)
        return (void)say("%d splice: pipe failed\n", i);
    unsigned fl = (o->a & 1) ? SPLICE_F_NONBLOCK : 0;
    const char *nb = "";
    /* SPLICE_F_NONBLOCK is the pipe's: a blocking socket still blocks,
     * so one with nothing to read gets a short SO_RCVTIMEO for the call */
    struct timeval tv0, tv = { 0, 10000 };
    socklen_t tl = sizeof tv0;
    int timed = !nonblocking(fd) && !readable_now(fd) &&
                getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv0, &tl) == 0 &&
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0;
    if (timed)
        nb = "(timed)";
    ssize_t n = splice(fd, NULL, p[1], NULL, o->size, fl);
    if (timed) {
        int saved = errno;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv0, sizeof tv0);
        errno = saved;
    }
    say("%d %c%d splice-in(%u%s)%s%s", i, end_name[e], fd, o->size, fl ? "|NB" : "", nb, res(n));
    if (n > 0) {
        static unsigned char buf[MAX_IO + 1];
        ssize_t k = read(p[0], buf, sizeof buf);
        say(" piped=%zd ck=%08x", k, k > 0 ? fnv32(buf, (size_t)k) : 0);
        taken[e] += (uint64_t)n;
    }
    say("\n");
    close(p[0]);
    close(p[1]);
}

static void op_splice_out(int i, const struct op *o)
{
    int e = o->end;
    if (!has(e))
        return (void)say("%d %s %c: none\n", i, kind_name[o->kind], end_name[e]);
    int fd = pick(e, o->fdi), p[2], before = sigpipes;
    if (pipe2(p, O_NONBLOCK) < 0)
        return (void)say("%d splice: pipe failed\n", i);
    static unsigned char buf[MAX_IO];
    uint32_t size = room_to(1 - e, o->size);
    pattern(e, buf, size);
    ssize_t w = size ? write(p[1], buf, size) : 0;
    unsigned fl = (o->a & 1) ? SPLICE_F_NONBLOCK : 0;
    ssize_t n = splice(p[0], NULL, fd, NULL, size, fl);
    int saved = errno;
    if (n > 0)
        sent[e] += (uint64_t)n;
    errno = saved;
    say("%d %c%d splice-out(%u%s)%s%s\n", i, end_name[e], fd, size, fl ? "|NB" : "", res(n),
        sigpipes != before ? " SIGPIPE" : "");
    (void)w;
    close(p[0]);
    close(p[1]);
}

static void run_op(int i, const struct op *o)
{
    switch (o->kind) {
    case K_SEND:
    case K_SENDMORE: op_send(i, o); break;
    case K_RECV: op_recv(i, o); break;
    case K_EXCHANGE: op_exchange(i, o); break;
    case K_SHUTDOWN: op_shutdown(i, o); break;
    case K_CLOSE: op_close(i, o); break;
    case K_POLL: op_poll(i); break;
    case K_SELECT: op_select(i); break;
    case K_EPOLL_LT: op_epoll(i, ep_lt, "epoll-lt"); break;
    case K_EPOLL_ET: op_epoll(i, ep_et, "epoll-et"); break;
    case K_IOCTL: op_ioctl(i, o); break;
    case K_GETOPT: op_getopt(i, o); break;
    case K_SETOPT: op_setopt(i, o); break;
    case K_NONBLOCK: op_nonblock(i, o); break;
    case K_DUP: op_dup(i, o); break;
    case K_CLOSE_DUP: op_close_dup(i, o); break;
    case K_FORK: op_fork(i, o); break;
    case K_SENDFILE: op_sendfile(i, o); break;
    case K_SPLICE_IN: op_splice_in(i, o); break;
    default: op_splice_out(i, o); break;
    }
}

/* ---------- one seed, in a process of its own ---------- */

static int keep_op(const char *keep, int i)
{
    if (!keep)
        return 1;
    for (const char *p = keep; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (v == i)
            return 1;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static void run_seed(unsigned long seed, const char *keep)
{
    make_script(seed);
    signal(SIGPIPE, on_sigpipe);
    *(void **)&is_fast = dlsym(RTLD_DEFAULT, "loopfast_fd_is_fast");

    char path[] = "/tmp/diff_random-XXXXXX";
    file_fd = mkstemp(path);
    if (file_fd >= 0) {
        unlink(path);
        static unsigned char fbuf[32768];
        for (size_t k = 0; k < sizeof fbuf; k++)
            fbuf[k] = (unsigned char)(k * 7 + (k >> 8));
        if (write(file_fd, fbuf, sizeof fbuf) != (ssize_t)sizeof fbuf)
            say("file write failed\n");
    }

    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
        say("setup failed: %s\n", errname(errno));
        return;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) {
        say("connect failed: %s\n", errname(errno));
        return;
    }
    int s = accept(l, NULL, NULL);
    if (s < 0) {
        say("accept failed: %s\n", errname(errno));
        return;
    }
    close(l);
    ends[C] = (struct end){ { c }, 1 };
    ends[S] = (struct end){ { s }, 1 };
    ep_lt[0] = epoll_create1(0);
    ep_et[0] = epoll_create1(0);
    ep_lt[1] = split_epoll ? epoll_create1(0) : ep_lt[0];
    ep_et[1] = split_epoll ? epoll_create1(0) : ep_et[0];
    for (int e = 0; e < 2; e++)
        reregister(e, ends[e].fd[0]);
    say("seed %lu ops %d observe %d C%d S%d\n", seed, nops, auto_observe, c, s);
    int was_fast[2] = { 0, 0 };
    for (int i = 0; i < nops; i++) {
        if (!keep_op(keep, i))
            continue;
        run_op(i, &script[i]);
        settle();
        if (auto_observe)
            observe();
        for (int e = 0; e < 2; e++) {
            int f = has(e) && is_fast ? is_fast(ends[e].fd[0]) : 0;
            if (f > 0 && !was_fast[e])
                say("# %c fast after op %d\n", end_name[e], i);
            if (f > 0)
                was_fast[e] = 1;
        }
        if (!has(C) && !has(S))
            break;
    }
    /* the end: what each end says now */
    for (int e = 0; e < 2; e++) {
        if (!has(e))
            continue;
        int fd = ends[e].fd[0], err = 0;
        socklen_t len = sizeof err;
        struct pollfd p = { fd, POLLIN | POLLOUT | POLLRDHUP | POLLPRI, 0 };
        poll(&p, 1, 0);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        say("end %c poll:%s inq:%d st:%s err:%s\n", end_name[e], pev((unsigned)p.revents), inq(fd),
            tcp_state_name(tcp_state(fd)), err ? errname(err) : "0");
        unsigned char buf[MAX_IO];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        say("end %c drain%s", end_name[e], res(n));
        if (n > 0)
            say(" ck=%08x", fnv32(buf, (size_t)n));
        say("\n");
    }
    for (int e = 0; e < 2; e++)
        say("# %c fast=%d\n", end_name[e], was_fast[e]);
}

/* The worker: each seed in a child of its own, its lines then "done". */
static int worker(int argc, char **argv, const char *keep)
{
    for (int k = 0; k < argc; k++) {
        unsigned long seed = strtoul(argv[k], NULL, 10);
        int p[2];
        if (pipe(p) < 0)
            return 2;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            out_fd = p[1];
            alarm(3);
            run_seed(seed, keep);
            _exit(0);
        }
        close(p[1]);
        char buf[4096];
        ssize_t n;
        while ((n = read(p[0], buf, sizeof buf)) > 0)
            fwrite(buf, 1, (size_t)n, stdout);
        close(p[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        printf("done %lu status %x\n", seed, (unsigned)st);
    }
    fflush(stdout);
    return 0;
}

/* ---------- the driver ---------- */

static char lib[4096];

static void find_lib(void)
{
    const char *env = getenv("LOOPFAST_LIB");
    if (env) {
        snprintf(lib, sizeof lib, "%s", env);
        return;
    }
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        n = 0;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    const char *tries[] = { "%s/../libloopfast.so", "%s/repo/build/libloopfast.so", "%s/build/libloopfast.so" };
    for (int i = 0; i < 3; i++) {
        snprintf(lib, sizeof lib, tries[i], exe);
        if (access(lib, R_OK) == 0)
            return;
    }
    fprintf(stderr, "diff_random: no libloopfast.so found (set LOOPFAST_LIB)\n");
    exit(2);
}

/* The mode compared with the kernel's: all (DIFF_RANDOM_AGAINST=off checks
 * the harness itself: off against off must always match). */
static const char *against(void)
{
    const char *m = getenv("DIFF_RANDOM_AGAINST");
    return m ? m : "all";
}

/* Runs the worker in `mode` over seeds: its whole output (malloc'd). */
static char *run_worker(const char *mode, int nseeds, char **seeds, const char *keep)
{
    int p[2];
    if (pipe(p) < 0)
        exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        setenv("DIFF_RANDOM_MODE", mode, 1);
        setenv("LOOPFAST_MODE", mode, 1);
        if (!dlsym(RTLD_DEFAULT, "loopfast_fd_is_fast"))   /* linked in: no preload */
            setenv("LD_PRELOAD", lib, 1);
        char **args = calloc((size_t)nseeds + 6, sizeof *args);
        int k = 0;
        args[k++] = "diff_random";
        char amask[16];
        snprintf(amask, sizeof amask, "%d", avoid);
        args[k++] = "-a";
        args[k++] = amask;
        if (keep) {
            args[k++] = "-k";
            args[k++] = (char *)keep;
        }
        for (int i = 0; i < nseeds; i++)
            args[k++] = seeds[i];
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t n;
    while ((n = read(p[0], out + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 4096)
            out = realloc(out, cap *= 2);
    }
    out[len] = 0;
    close(p[0]);
    waitpid(pid, NULL, 0);
    return out;
}

/* The transcript of `seed` in out (from its "seed" line to its "done"
 * line), copied; with_meta: '#' lines too. */
static char *transcript_of(const char *out, unsigned long seed, int with_meta)
{
    char head[64];
    snprintf(head, sizeof head, "seed %lu ", seed);
    const char *p = out;
    while (p && strncmp(p, head, strlen(head))) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    char *t = malloc(strlen(out) + 1), *q = t;
    *q = 0;
    if (!p)
        return t;
    snprintf(head, sizeof head, "done %lu ", seed);
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
        if (with_meta || p[0] != '#') {
            memcpy(q, p, n);
            q += n;
            *q = 0;
        }
        if (!strncmp(p, head, strlen(head)) || !nl)
            break;
        p = nl + 1;
    }
    return t;
}

/* The first line where a and b differ, and its operation's index (-1 if
 * the line has none; -2 if they do not differ). */
static int first_difference(const char *a, const char *b, const char **la, const char **lb)
{
    while (*a && *b) {
        const char *na = strchr(a, '\n'), *nb = strchr(b, '\n');
        if (!na || !nb || na - a != nb - b || memcmp(a, b, (size_t)(na - a)))
            break;
        a = na + 1, b = nb + 1;
    }
    *la = a, *lb = b;
    if (!*a && !*b)
        return -2;
    const char *p = a;
    while (*p == ' ')
        p++;
    return *p >= '0' && *p <= '9' ? atoi(p) : -1;
}

/* The op index where the transcripts of seed (ops `keep`) first differ:
 * -2 if they do not. */
static char first_kernel[2048], first_fast[2048];

static int differs_at(unsigned long seed, const char *keep)
{
    char s[32];
    snprintf(s, sizeof s, "%lu", seed);
    char *argv1[] = { s };
    char *k = run_worker("off", 1, argv1, keep), *f = run_worker(against(), 1, argv1, keep);
    char *tk = transcript_of(k, seed, 0), *tf = transcript_of(f, seed, 0);
    const char *la, *lb;
    int at = first_difference(tk, tf, &la, &lb);
    /* the same difference: the same two lines, not only the same op */
    char lk[2048], lf[2048];
    snprintf(lk, sizeof lk, "%.*s", (int)strcspn(la, "\n"), la);
    snprintf(lf, sizeof lf, "%.*s", (int)strcspn(lb, "\n"), lb);
    if (!keep) {
        memcpy(first_kernel, lk, sizeof lk);
        memcpy(first_fast, lf, sizeof lf);
    } else if (at >= 0 && (strcmp(lk, first_kernel) || strcmp(lf, first_fast))) {
        at = -3;
    }
    free(k), free(f), free(tk), free(tf);
    return at;
}

/* ddmin-like: drops operations while the transcripts still differ. */
static void shrink(unsigned long seed)
{
    make_script(seed);
    int n = nops, kept[MAX_OPS];
    for (int i = 0; i < n; i++)
        kept[i] = i;
    char keep[MAX_OPS * 4];
    int target = differs_at(seed, NULL);
    for (int chunk = n / 2; chunk >= 1; chunk = chunk / 2) {
        for (int start = 0; start < n;) {
            keep[0] = 0;
            int m = 0;
            for (int i = 0; i < n; i++)
                if (i < start || i >= start + chunk)
                    m += snprintf(keep + strlen(keep), sizeof keep - strlen(keep), "%s%d",
                                  m ? "," : "", kept[i]) > 0;
            /* differs twice (not noise) without this chunk: drop it */
            if (m > 0 && differs_at(seed, keep) == target && differs_at(seed, keep) == target) {
                int w = 0;
                for (int i = 0; i < n; i++)
                    if (i < start || i >= start + chunk)
                        kept[w++] = kept[i];
                n = w;
            } else {
                start += chunk;
            }
        }
    }
    keep[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(keep + strlen(keep), sizeof keep - strlen(keep), "%s%d", i ? "," : "", kept[i]);
    printf("shrunk: diff_random -a %d -v -k %s %lu\n", avoid, keep, seed);
    char s[32];
    snprintf(s, sizeof s, "%lu", seed);
    char *argv1[] = { s };
    char *k = run_worker("off", 1, argv1, keep), *f = run_worker(against(), 1, argv1, keep);
    char *tk = transcript_of(k, seed, 1), *tf = transcript_of(f, seed, 1);
    printf("--- kernel (LOOPFAST_MODE=off)\n%s--- loopfast (LOOPFAST_MODE=all)\n%s", tk, tf);
    free(k), free(f), free(tk), free(tf);
}

/* Seeds first..first+count-1 and then the `nmore` of `more`, as strings. */
static char **seed_range(unsigned long first, int count, const unsigned long *more, int nmore)
{
    char **seeds = calloc((size_t)(count + nmore), sizeof *seeds);
    for (int i = 0; seeds && i < count + nmore; i++) {
        seeds[i] = malloc(24);
        snprintf(seeds[i], 24, "%lu", i < count ? first + (unsigned long)i : more[i - count]);
    }
    return seeds;
}

/* Runs seeds in both modes with the mask in `avoid`, prints what differs;
 * returns how many did. */
static int compare_seeds(int nseeds, char **seeds, const char *keep, int verbose, int do_shrink)
{
    char *k = run_worker("off", nseeds, seeds, keep), *f = run_worker(against(), nseeds, seeds, keep);
    int bad = 0, fast = 0;
    for (int i = 0; i < nseeds; i++) {
        unsigned long seed = strtoul(seeds[i], NULL, 10);
        char *tk = transcript_of(k, seed, 0), *tf = transcript_of(f, seed, 0);
        char *mf = transcript_of(f, seed, 1);
        fast += strstr(mf, "fast after") != NULL;
        int same = tk[0] && !strcmp(tk, tf);
        if (!same) {
            bad++;
            /* the first line that differs */
            const char *a, *b;
            first_difference(tk, tf, &a, &b);
            printf("DIFFERENT seed %lu\n  kernel  : %.*s\n  loopfast: %.*s\n", seed,
                   (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
        }
        if (verbose)
            printf("--- seed %lu kernel\n%s--- seed %lu loopfast\n%s", seed,
                       transcript_of(k, seed, 1), seed, mf);
        if (!same && do_shrink)
            shrink(seed);
        free(tk), free(tf), free(mf);
    }
    printf("%d seeds (-a %d), %d switched to the rings, %d differ\n", nseeds, avoid, fast, bad);
    return bad;
}

int main(int argc, char **argv)
{
    const char *keep = NULL;
    int verbose = 0, do_shrink = 0, count = 100;
    unsigned long first = 1;
    int opt;
    while ((opt = getopt(argc, argv, "n:s:vxk:ea:")) != -1) {
        switch (opt) {
        case 'n': count = atoi(optarg); break;
        case 's': first = strtoul(optarg, NULL, 10); break;
        case 'v': verbose = 1; break;
        case 'x': do_shrink = 1; break;
        case 'k': keep = optarg; break;
        case 'e': avoid |= 1; break;
        case 'a': avoid |= atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-n COUNT] [-s FIRST] [-v] [-x] [-k OPS] [SEED...]\n", argv[0]);
            return 2;
        }
    }
    if (getenv("DIFF_RANDOM_MODE"))
        return worker(argc - optind, argv + optind, keep);

    if (!dlsym(RTLD_DEFAULT, "loopfast_fd_is_fast"))
        find_lib();
    if (argc > optind)
        return compare_seeds(argc - optind, argv + optind, keep, verbose, do_shrink) ? 1 : 0;
    if (argc > 1) {
        char **range = seed_range(first, count, NULL, 0);
        return compare_seeds(count, range, keep, verbose, do_shrink) ? 1 : 0;
    }
    /* The regression set: seeds 1-100 and those past 100 whose differences
     * were fixed, each with the mask it was found under (a seed's script
     * depends on it): -a 15, then -a 11 (zero-length calls too), then 1-60
     * with -a 8 (registrations outliving their numbers, and both ends in one
     * set, too). */
    static const unsigned long fixed15[] = {
        132, 138, 165, 200, 224, 230, 266, 271, 273, 287, 325, 361, 364, 371, 387, 388, 421,
        429, 436, 649, 696, 706, 714, 759, 762, 981, 1003, 1201, 1206, 1225, 1576, 2053, 2162,
        2261, 2394, 2693, 2802 };
    static const unsigned long fixed11[] = {
        133, 138, 149, 327, 346, 442, 632, 670, 671, 779, 858, 866, 893, 986, 1082, 1328,
        1431, 1796, 2143, 2245 };
    int n15 = 100 + (int)(sizeof fixed15 / sizeof fixed15[0]);
    int n11 = 100 + (int)(sizeof fixed11 / sizeof fixed11[0]);
    avoid = 15;
    int bad = compare_seeds(n15, seed_range(1, 100, fixed15, n15 - 100), keep, verbose, do_shrink);
    avoid = 11;
    bad += compare_seeds(n11, seed_range(1, 100, fixed11, n11 - 100), keep, verbose, do_shrink);
    avoid = 8;   /* registrations outliving their numbers, both ends in one set: equal since the 24th session */
    bad += compare_seeds(60, seed_range(1, 60, NULL, 0), keep, verbose, do_shrink);
    return bad ? 1 : 0;
}
