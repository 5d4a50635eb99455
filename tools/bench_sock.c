/*
 * bench_sock.c - the socket transports of `loopfast bench`: kernel TCP,
 * AF_UNIX and loopfast (TCP with both ends opted in), each measured with the
 * same three workloads between two processes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_util.h"
#include "loopfast.h"

enum workload { W_ECHO, W_SINK };

static int opt_in(int fd)
{
    int on = 1;
    return loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL);
}

/* A listener for transport t; its address goes into *addr. */
static int make_listener(enum transport t, struct sockaddr_storage *addr, socklen_t *len)
{
    memset(addr, 0, sizeof *addr);
    int fd;
    if (t == T_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)addr;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "loopfast-bench-%d", (int)getpid());
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(un->sun_path + 1));
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *in;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && t == T_LOOPFAST && opt_in(fd) < 0)
            die("loopfast_ioctl on the listener failed: %s", strerror(errno));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, *len) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, len) < 0)
        die("cannot listen for the %s benchmark: %s", transport_name(t), strerror(errno));
    return fd;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void serve(int fd, enum workload w)
{
    static char buf[1 << 16];
    uint64_t total = 0;
    if (w == W_ECHO) {
        while (read_full(fd, buf, 64) == 64)
            if (write_full(fd, buf, 64) != 64)
                break;
        return;
    }
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += (uint64_t)n;
    write_full(fd, &total, sizeof total);
}

/* Forks a server that accepts one connection and runs w on it; returns the
 * client's connected socket. */
static int start_pair(enum transport t, enum workload w, pid_t *child)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = make_listener(t, &addr, &len);
    *child = fork();
    if (*child < 0)
        die("fork: %s", strerror(errno));
    if (*child == 0) {
        alarm(60);
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(1);
        if (t != T_UNIX)
            nodelay(c);
        serve(c, w);
        _exit(0);
    }
    close(l);
    int fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (fd >= 0 && t == T_LOOPFAST)
        opt_in(fd);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, len) < 0)
        die("cannot connect for the %s benchmark: %s", transport_name(t), strerror(errno));
    if (t != T_UNIX)
        nodelay(fd);
    return fd;
}

static void finish(int fd, pid_t child)
{
    close(fd);
    int st;
    waitpid(child, &st, 0);
}

static int measure_rtt(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    pid_t child;
    int fd = start_pair(t, W_ECHO, &child);
    char msg[64] = { 1 };
    for (int i = 0; i < 2000; i++)
        if (write_full(fd, msg, 64) != 64 || read_full(fd, msg, 64) != 64)
            return finish(fd, child), -1;
    r->fast = loopfast_fd_is_fast(fd) == 1;
    struct samples s;
    samples_init(&s, 200000);
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    while (s.n < s.cap && now_ns() < end) {
        uint64_t t0 = now_ns();
        if (write_full(fd, msg, 64) != 64 || read_full(fd, msg, 64) != 64)
            break;
        samples_add(&s, now_ns() - t0);
    }
    finish(fd, child);
    samples_stats(&s, &r->rtt_median_us, &r->rtt_p99_us);
    samples_free(&s);
    return 0;
}

/* Streams `size`-byte writes for the time budget; returns bytes per second
 * as counted by the reader. */
static double measure_stream(enum transport t, const struct bench_opts *o, size_t size)
{
    pid_t child;
    int fd = start_pair(t, W_SINK, &child);
    char *buf = calloc(1, size);
    uint64_t start = now_ns(), end = start + (uint64_t)(o->seconds * 1e9), total = 0;
    while (now_ns() < end)
        if (write_full(fd, buf, size) != (ssize_t)size)
            break;
    shutdown(fd, SHUT_WR);
    if (read_full(fd, &total, sizeof total) != sizeof total)
        total = 0;
    double secs = (double)(now_ns() - start) / 1e9;
    free(buf);
    finish(fd, child);
    return (double)total / secs;
}

int bench_socket(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    if (measure_rtt(t, o, r) < 0)
        return -1;
    r->msgs_per_s = measure_stream(t, o, 64) / 64;
    r->stream_gbps = measure_stream(t, o, 65536) / 1e9;
    r->ok = 1;
    return 0;
}
