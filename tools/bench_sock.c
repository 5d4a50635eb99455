/*
 * bench_sock.c - the socket transports of `loopfast bench`: kernel TCP,
 * AF_UNIX and loopfast (TCP with both ends opted in), each measured with the
 * same workloads between two processes.
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

enum workload { W_ECHO, W_SINK, W_CONNECT };

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
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, *len) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, len) < 0)
        die("cannot listen for the %s benchmark: %s", transport_name(t), strerror(errno));
    return fd;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int dial(enum transport t, const struct sockaddr_storage *addr, socklen_t len)
{
    int fd = socket(addr->ss_family, SOCK_STREAM, 0);
    if (fd >= 0 && t == T_LOOPFAST)
        opt_in(fd);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, len) < 0)
        die("cannot connect for the %s benchmark: %s", transport_name(t), strerror(errno));
    if (t != T_UNIX)
        nodelay(fd);
    return fd;
}

static void serve_one(enum transport t, int c, enum workload w, size_t size)
{
    static char buf[1 << 20];
    uint64_t total = 0;
    ssize_t n;
    if (t != T_UNIX)
        nodelay(c);
    if (w == W_ECHO) {
        while (read_full(c, buf, size) == (ssize_t)size)
            if (write_full(c, buf, size) != (ssize_t)size)
                break;
    } else if (w == W_SINK) {
        while ((n = read(c, buf, sizeof buf)) > 0)
            total += (uint64_t)n;
        write_full(c, &total, sizeof total);
    } else {
        if (read_full(c, buf, 1) == 1)
            write_full(c, buf, 1);
    }
    close(c);
}

/* Forks a server that accepts connections (one, or many for W_CONNECT) and
 * runs w on each; returns the listener's address. */
static pid_t start_server(enum transport t, enum workload w, size_t size,
                          struct sockaddr_storage *addr, socklen_t *len)
{
    int l = make_listener(t, addr, len);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(120);
        int c;
        while ((c = accept(l, NULL, NULL)) >= 0) {
            serve_one(t, c, w, size);
            if (w != W_CONNECT)
                break;
        }
        _exit(0);
    }
    close(l);
    return pid;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

int sock_rtt(enum transport t, const struct bench_opts *o, size_t size, double *median,
             double *p99, int *fast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = start_server(t, W_ECHO, size, &addr, &len);
    int fd = dial(t, &addr, len);
    char *msg = calloc(1, size);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)
        if (write_full(fd, msg, size) != (ssize_t)size || read_full(fd, msg, size) != (ssize_t)size)
            rc = -1;
    if (fast)
        *fast = loopfast_fd_is_fast(fd) == 1;
    struct samples s;
    samples_init(&s, 200000);
    uint64_t end = now_ns() + (uint64_t)(o->seconds * 1e9);
    while (rc == 0 && s.n < s.cap && now_ns() < end) {
        uint64_t t0 = now_ns();
        if (write_full(fd, msg, size) != (ssize_t)size || read_full(fd, msg, size) != (ssize_t)size)
            rc = -1;
        samples_add(&s, now_ns() - t0);
    }
    close(fd);
    stop_server(pid);
    samples_stats(&s, median, p99);
    samples_free(&s);
    free(msg);
    return rc;
}

/* Streams `size`-byte writes for the time budget; bytes per second as
 * counted by the reader. */
int sock_stream(enum transport t, const struct bench_opts *o, size_t size, double *bytes_per_s)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = start_server(t, W_SINK, size, &addr, &len);
    int fd = dial(t, &addr, len);
    char *buf = calloc(1, size);
    uint64_t start = now_ns(), end = start + (uint64_t)(o->seconds * 1e9), total = 0;
    while (now_ns() < end)
        if (write_full(fd, buf, size) != (ssize_t)size)
            break;
    shutdown(fd, SHUT_WR);
    int rc = read_full(fd, &total, sizeof total) == sizeof total ? 0 : -1;
    *bytes_per_s = (double)total / ((double)(now_ns() - start) / 1e9);
    free(buf);
    close(fd);
    stop_server(pid);
    return rc;
}

/* The whole life of a short connection: connect, 1-byte echo, close. */
int sock_connect_cost(enum transport t, const struct bench_opts *o, double *us)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = start_server(t, W_CONNECT, 1, &addr, &len);
    uint64_t start = now_ns(), end = start + (uint64_t)(o->seconds * 1e9);
    int n = 0, rc = 0;
    while (rc == 0 && n < 5000 && now_ns() < end) {
        int fd = dial(t, &addr, len);
        char b = 'x';
        if (write_full(fd, &b, 1) != 1 || read_full(fd, &b, 1) != 1)
            rc = -1;
        close(fd);
        n++;
    }
    *us = (double)(now_ns() - start) / 1e3 / n;
    stop_server(pid);
    return rc;
}
