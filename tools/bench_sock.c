/*
 * bench_sock.c - the socket transports of `loopfast bench`: kernel TCP
 * (explicitly opted out of loopfast), AF_UNIX and loopfast (TCP with both ends
 * opted in), each measured with the same workloads between two processes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench.h"
#include "bench_proc.h"
#include "bench_util.h"
#include "loopfast.h"

enum workload { W_ECHO, W_SINK, W_CONNECT };

static const char *const workload_names[] = { "round trip", "stream", "connection set-up" };

/* What the reading end of a stream saw, sent back to the writer over a pipe:
 * the bytes that arrived after its first read, and the time they took. */
struct sink_report {
    uint64_t bytes, ns;
};

/* Kernel TCP opts out explicitly, so that LOOPFAST_MODE=all cannot move the
 * baseline onto the fast path; loopfast opts in; AF_UNIX has no choice. */
static void choose_path(enum transport t, int fd, const char *role)
{
    int on = t == T_LOOPFAST;
    if (t == T_UNIX)
        return;
    if (loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) < 0)
        die("loopfast_ioctl on the %s benchmark's %s failed: %s", transport_name(t), role,
            strerror(errno));
}

void sock_nodelay(enum transport t, int fd)
{
    int one = 1;
    if (t != T_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int unix_address(struct sockaddr_storage *addr, socklen_t *len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)addr;
    un->sun_family = AF_UNIX;   /* abstract name: nothing to clean up */
    snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "loopfast-bench-%d", (int)getpid());
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(un->sun_path + 1));
    return socket(AF_UNIX, SOCK_STREAM, 0);
}

static int loopback_address(struct sockaddr_storage *addr, socklen_t *len)
{
    struct sockaddr_in *in = (struct sockaddr_in *)addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);   /* port 0: the kernel picks */
    *len = sizeof *in;
    return socket(AF_INET, SOCK_STREAM, 0);
}

int sock_listen(enum transport t, struct sockaddr_storage *addr, socklen_t *len)
{
    memset(addr, 0, sizeof *addr);
    int fd = t == T_UNIX ? unix_address(addr, len) : loopback_address(addr, len);
    if (fd >= 0)
        choose_path(t, fd, "listener");
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, *len) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, len) < 0)
        die("cannot listen for the %s benchmark: %s; check `ulimit -n` and the loopback interface",
            transport_name(t), strerror(errno));
    return fd;
}

int sock_dial(enum transport t, const struct sockaddr_storage *addr, socklen_t len)
{
    int fd = socket(addr->ss_family, SOCK_STREAM, 0);
    if (fd >= 0)
        choose_path(t, fd, "client");
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, len) < 0)
        die("cannot connect for the %s benchmark: %s; check `ulimit -n` and the loopback interface",
            transport_name(t), strerror(errno));
    sock_nodelay(t, fd);
    return fd;
}

/* Echoes `size`-byte messages until the client closes; 0 on a clean end. */
static int serve_echo(int c, size_t size)
{
    static char buf[1 << 20];
    ssize_t n;
    while ((n = read_full(c, buf, size)) == (ssize_t)size)
        if (write_full(c, buf, size) != (ssize_t)size)
            return -1;
    return n == 0 ? 0 : -1;
}

/* Reads until end of stream, then reports what it counted on `report`. */
static int serve_sink(int c, int report)
{
    static char buf[SINK_READ_BYTES];
    struct sink_report r = { 0, 0 };
    uint64_t first = 0;
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0 && !first)
            first = now_ns();
        else if (n > 0)
            r.bytes += (uint64_t)n;
    }
    r.ns = first ? now_ns() - first : 0;
    if (write_full(report, &r, sizeof r) != sizeof r)
        return -1;
    return n == 0 ? 0 : -1;
}

static int serve_connect(int c, size_t exchanges)
{
    char b;
    for (size_t i = 0; i < exchanges; i++)
        if (read_full(c, &b, 1) != 1 || write_full(c, &b, 1) != 1)
            return -1;
    return 0;
}

/* The server process: one connection, or one after another for W_CONNECT
 * until it is killed.  Returns its exit status. */
static int serve(enum transport t, int l, enum workload w, size_t size, int report)
{
    int rc;
    do {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            return 1;
        sock_nodelay(t, c);
        rc = w == W_ECHO ? serve_echo(c, size) : w == W_SINK ? serve_sink(c, report)
                                                               : serve_connect(c, size);
        close(c);
    } while (w == W_CONNECT);
    return rc == 0 ? 0 : 1;
}

/* Forks the server of workload w on a new listener whose address goes into
 * *addr; `report` is the write end of the sink's pipe (or -1). */
static pid_t start_server(enum transport t, enum workload w, size_t size, double seconds,
                          struct sockaddr_storage *addr, socklen_t *len, int report)
{
    char what[64];
    snprintf(what, sizeof what, "%s %s", transport_name(t), workload_names[w]);
    /* The server makes its own listener, as a server does: one made before
     * a fork counts as shared, and loopfast then keeps offering for each
     * connection instead of asking in the pair's region (design 4.8). */
    int tell[2];
    if (pipe(tell) < 0)
        die("cannot make a pipe for the %s benchmark: %s; check `ulimit -n`", what, strerror(errno));
    pid_t pid = child_start(what, seconds);
    if (pid == 0) {
        close(tell[0]);
        int l = sock_listen(t, addr, len);
        if (write_full(tell[1], addr, sizeof *addr) != sizeof *addr ||
            write_full(tell[1], len, sizeof *len) != sizeof *len)
            _exit(1);
        close(tell[1]);
        _exit(serve(t, l, w, size, report));
    }
    close(tell[1]);
    if (read_full(tell[0], addr, sizeof *addr) != sizeof *addr ||
        read_full(tell[0], len, sizeof *len) != sizeof *len)
        die("the server of the %s benchmark did not start", what);
    close(tell[0]);
    return pid;
}

static char *message(size_t size)
{
    char *m = calloc(1, size);
    if (!m)
        die("out of memory for a %zu-byte message", size);
    return m;
}

static int round_trip(int fd, char *msg, size_t size)
{
    return write_full(fd, msg, size) == (ssize_t)size && read_full(fd, msg, size) == (ssize_t)size
               ? 0 : -1;
}

int sock_rtt(enum transport t, const struct bench_opts *o, size_t size, double *median,
             double *p99, int *fast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = start_server(t, W_ECHO, size, o->seconds, &addr, &len, -1);
    int fd = sock_dial(t, &addr, len);
    char *msg = message(size);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)
        rc = round_trip(fd, msg, size);
    if (fast)
        *fast = loopfast_fd_is_fast(fd) == 1;
    struct samples s;
    samples_init(&s, 200000);
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    while (rc == 0 && s.n < s.cap && now_ns() < end) {
        uint64_t t0 = now_ns();
        rc = round_trip(fd, msg, size);
        samples_add(&s, now_ns() - t0);
    }
    close(fd);
    if (child_wait(pid) < 0)
        rc = -1;
    samples_stats(&s, median, p99);
    samples_free(&s);
    free(msg);
    return rc;
}

/* Streams `size`-byte writes for the time budget; bytes per second as
 * counted and timed by the reader. */
int sock_stream(enum transport t, const struct bench_opts *o, size_t size, double *bytes_per_s)
{
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0)
        die("cannot create a pipe: %s; check `ulimit -n`", strerror(errno));
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = start_server(t, W_SINK, size, o->seconds, &addr, &len, report[1]);
    close(report[1]);
    int fd = sock_dial(t, &addr, len), rc = 0;
    char *buf = message(size);
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    /* The clock is read every 16 messages, as the bare ring's loop does: a
     * read per message (28 ns on a kvm clock) was a third of a 64 B write. */
    while (rc == 0 && now_ns() < end)
        for (int i = 0; i < 16 && rc == 0; i++)
            rc = write_full(fd, buf, size) == (ssize_t)size ? 0 : -1;
    shutdown(fd, SHUT_WR);
    struct sink_report r;
    if (read_full(report[0], &r, sizeof r) != sizeof r || r.ns == 0)
        rc = -1;
    *bytes_per_s = rc == 0 ? (double)r.bytes / ((double)r.ns / 1e9) : 0;
    close(fd);
    close(report[0]);
    if (child_wait(pid) < 0)
        rc = -1;
    free(buf);
    return rc;
}

/* User and system CPU time of `who` (RUSAGE_SELF or reaped children), in us. */
static double cpu_us(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The whole life of a short connection: connect, `exchanges` 1-byte echoes,
 * close (loopfast switches at the second).  The
 * time per connection counts what the two processes do in parallel once;
 * the CPU time counts both (the server's is known once it is reaped). */
int sock_connect_cost(enum transport t, const struct bench_opts *o, int exchanges, double *us,
                      double *cpu)
{
    struct sockaddr_storage addr;
    socklen_t len;
    double cpu0 = cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN);
    pid_t pid = start_server(t, W_CONNECT, (size_t)exchanges, o->seconds, &addr, &len, -1);
    uint64_t start = now_ns(), end = start + (uint64_t)(o->seconds * 1e9);
    int n = 0, rc = 0;
    while (rc == 0 && n < 5000 && now_ns() < end) {
        int fd = sock_dial(t, &addr, len);
        char b = 'x';
        for (int k = 0; k < exchanges && rc == 0; k++)
            rc = write_full(fd, &b, 1) == 1 && read_full(fd, &b, 1) == 1 ? 0 : -1;
        close(fd);
        n++;
    }
    *us = (double)(now_ns() - start) / 1e3 / n;
    child_kill(pid);
    *cpu = (cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN) - cpu0) / n;
    return rc;
}
