/*
 * conns_bulk.c - many new connections at once, each moving a few
 * megabytes: a client process opens CONNS connections to an echo server
 * process and, from one epoll loop, sends BYTES on each and reads them
 * back (the shape of a Java NIO client against a selector server, where
 * a helper measured loopfast at 1.6-2.7x the kernel's time: every new
 * connection's rings take fresh pages).  Kernel TCP and loopfast (both
 * ends opted in) alternate in the same run; prints each run's time and
 * the ratio of the medians.
 * Run: build/bench_conns_bulk [CONNS [BYTES [RUNS]]]   (default 50, 2 MB, 3)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "bench_common.h"
#include "loopfast.h"

#define MAX_CONNS 1024
#define PIECE (64 << 10)

static int conns = 50, optin;
static long bytes = 2 << 20;

static void opt_in(int fd)
{
    int on = 1;
    if (optin && loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) < 0)
        perror("loopfast_ioctl"), _exit(1);
}

static void nonblocking(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* The echo server: one epoll loop; a connection's unsent echo waits in
 * its buffer for EPOLLOUT. */
struct echo { char buf[PIECE]; size_t off, len; };

static void serve(int l)
{
    static struct echo e[MAX_CONNS];
    int fds[MAX_CONNS];
    for (int i = 0; i < conns; i++) {
        if ((fds[i] = accept(l, NULL, NULL)) < 0)
            _exit(1);
        nonblocking(fds[i]);
    }
    int ep = epoll_create1(0), open_conns = conns;
    for (int i = 0; i < conns; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct epoll_event out[64];
    while (open_conns > 0) {
        int n = epoll_wait(ep, out, 64, -1);
        for (int k = 0; k < n; k++) {
            int i = (int)out[k].data.u32, fd = fds[i];
            struct echo *x = &e[i];
            if (x->len == 0) {
                ssize_t r = read(fd, x->buf, sizeof x->buf);
                if (r == 0) {
                    close(fd);
                    open_conns--;
                    continue;
                }
                if (r < 0)
                    continue;
                x->off = 0;
                x->len = (size_t)r;
            }
            ssize_t w = write(fd, x->buf + x->off, x->len);
            if (w > 0) {
                x->off += (size_t)w;
                x->len -= (size_t)w;
            }
            struct epoll_event ev = { .events = x->len ? EPOLLOUT : EPOLLIN, .data.u32 = (uint32_t)i };
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        }
    }
    _exit(0);
}

/* One run: seconds from the first connect to the last echo back. */
static double run(int fast)
{
    optin = fast;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    opt_in(l);
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, MAX_CONNS) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0)
        perror("listen"), exit(1);
    pid_t pid = fork();
    if (pid == 0)
        serve(l);
    close(l);
    static char data[PIECE], sink[PIECE];
    memset(data, 'b', sizeof data);
    long to_send[MAX_CONNS], to_recv[MAX_CONNS];
    int fds[MAX_CONNS], ep = epoll_create1(0), done = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < conns; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        opt_in(fds[i]);
        if (connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0)
            perror("connect"), exit(1);
        nonblocking(fds[i]);
        to_send[i] = to_recv[i] = bytes;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct epoll_event out[64];
    while (done < conns) {
        int n = epoll_wait(ep, out, 64, 10000);
        if (n <= 0)
            fprintf(stderr, "stalled\n"), exit(1);
        for (int k = 0; k < n; k++) {
            int i = (int)out[k].data.u32;
            if ((out[k].events & EPOLLOUT) && to_send[i] > 0) {
                ssize_t w = write(fds[i], data, to_send[i] < PIECE ? (size_t)to_send[i] : PIECE);
                if (w > 0 && (to_send[i] -= w) == 0) {
                    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
                    epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
                }
            }
            if (out[k].events & (EPOLLIN | EPOLLHUP)) {
                ssize_t r = read(fds[i], sink, sizeof sink);
                if (r == 0 || (r < 0 && errno != EAGAIN))
                    fprintf(stderr, "connection %d ended early\n", i), exit(1);
                if (r > 0 && (to_recv[i] -= r) == 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                    close(fds[i]);
                    done++;
                }
            }
        }
    }
    double s = (double)(now_ns() - t0) / 1e9;
    close(ep);
    int st;
    waitpid(pid, &st, 0);
    return s;
}

static int by_value(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    lift_fd_cap(argv);
    int runs = 3;
    if (argc > 1)
        conns = atoi(argv[1]);
    if (argc > 2)
        bytes = atol(argv[2]);
    if (argc > 3)
        runs = atoi(argv[3]);
    if (conns < 1 || conns > MAX_CONNS || bytes < 1 || runs < 1 || runs > 32) {
        fprintf(stderr, "usage: %s [CONNS (1-%d) [BYTES [RUNS (1-32)]]]\n", argv[0], MAX_CONNS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    double k[32], f[32];
    for (int r = 0; r < runs; r++) {
        k[r] = run(0);
        f[r] = run(1);
        printf("run %d: kernel %.3f s, loopfast %.3f s\n", r + 1, k[r], f[r]);
    }
    qsort(k, (size_t)runs, sizeof k[0], by_value);
    qsort(f, (size_t)runs, sizeof f[0], by_value);
    printf("%d connections x %ld bytes echoed: kernel %.3f s, loopfast %.3f s (median): %.2fx the kernel's time\n",
           conns, bytes, k[runs / 2], f[runs / 2], f[runs / 2] / k[runs / 2]);
    return 0;
}
