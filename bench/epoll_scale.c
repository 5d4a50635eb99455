/*
 * epoll_scale.c - what epoll costs a server holding many connections in one
 * set, kernel TCP against loopfast in the same run: epoll_ctl(MOD) on one
 * of N registrations, epoll_wait(0) when none is ready, and one message
 * found among N (a byte written, epoll_wait, read).  Each ratio is
 * loopfast's time over the kernel's.  Run: build/bench_epoll_scale [N...]
 * (default 100 1000 4000); both ends live in this process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopfast.h"
#include "bench_common.h"

struct result {
    double mod_ns, idle_wait_ns, round_trip_ns;
};

static void die(const char *what)
{
    fprintf(stderr, "bench_epoll_scale: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void opt_in(int fd, int fast)
{
    int on = fast;
    if (fast && loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) != 0)
        die("loopfast_ioctl");
}

/* The client: n connections, two exchanges on each (so that loopfast's
 * are on its rings both ways: a connection's first use after its set-up is
 * `loopfast bench`'s "connection that switches"), then `rounds` round trips, one
 * connection after another in a scattered order; it exits at EOF. */
static void client(const struct sockaddr_in *a, int n, int fast, int rounds, int go)
{
    int *c = malloc(sizeof *c * (size_t)n);
    if (!c)
        die("malloc");
    char b = 'x';
    for (int i = 0; i < n; i++) {
        int one = 1;
        c[i] = socket(AF_INET, SOCK_STREAM, 0);
        opt_in(c[i], fast);
        if (c[i] < 0 || connect(c[i], (const struct sockaddr *)a, sizeof *a) < 0)
            die("connect");
        setsockopt(c[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (int k = 0; k < 2; k++)   /* the second one on loopfast's rings */
            if (write(c[i], &b, 1) != 1 || read(c[i], &b, 1) != 1)
                die("first exchanges");
    }
    if (read(go, &b, 1) != 1)
        die("waiting for the server");
    for (int k = 0; k < rounds; k++) {
        int i = (int)(((unsigned)k * 104729u) % (unsigned)n);
        if (write(c[i], &b, 1) != 1 || read(c[i], &b, 1) != 1)
            die("round trip");
    }
    exit(read(c[0], &b, 1) == 0 ? 0 : 1);
}

/* The server's ends of n connections from a forked client, in s[]. */
static pid_t accept_client(int n, int fast, int rounds, int *s, int *go)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    opt_in(l, fast);
    if (l < 0 || bind(l, (struct sockaddr *)&a, len) < 0 || listen(l, 128) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0)
        die("listener");
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    fflush(stdout);   /* else the child prints the parent's buffered lines again */
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(l);
        close(p[1]);
        client(&a, n, fast, rounds, p[0]);
    }
    for (int i = 0; i < n; i++) {
        int one = 1;
        char b;
        if ((s[i] = accept(l, NULL, NULL)) < 0)
            die("accept");
        setsockopt(s[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (int k = 0; k < 2; k++)
            if (read(s[i], &b, 1) != 1 || write(s[i], &b, 1) != 1)
                die("first exchanges");
    }
    close(l);
    close(p[0]);
    *go = p[1];
    return pid;
}

static struct result measure(int n, int fast)
{
    int mods = 20000, waits = 5000, rounds = 4000;
    int *s = malloc(sizeof *s * (size_t)n);
    if (!s)
        die("malloc");
    int go;
    pid_t pid = accept_client(n, fast, rounds, s, &go);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s[i], &e) < 0)
            die("epoll_ctl ADD");
    }
    struct epoll_event out[64];
    struct result r;

    double t = (double)now_ns();
    for (int k = 0; k < mods; k++) {
        int i = (int)(((unsigned)k * 7919u) % (unsigned)n);
        struct epoll_event e = { .events = (k & 1) ? EPOLLIN | EPOLLRDHUP : EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_MOD, s[i], &e);
    }
    r.mod_ns = (now_ns() - t) / mods;

    for (int k = 0; k < waits; k++)   /* after the MODs, loopfast's records go idle (armed) */
        epoll_wait(ep, out, 64, 0);
    t = now_ns();
    for (int k = 0; k < waits; k++)
        epoll_wait(ep, out, 64, 0);
    r.idle_wait_ns = (now_ns() - t) / waits;

    t = now_ns();
    if (write(go, "g", 1) != 1)
        die("starting the client");
    close(go);
    for (int done = 0; done < rounds;) {
        int m = epoll_wait(ep, out, 64, 1000);
        if (m < 0 && errno != EINTR)
            die("epoll_wait");
        for (int j = 0; j < m; j++) {
            char b;
            int fd = s[out[j].data.u32];
            if (read(fd, &b, 1) == 1 && write(fd, &b, 1) == 1)
                done++;
        }
    }
    r.round_trip_ns = (now_ns() - t) / rounds;

    for (int i = 0; i < n; i++)
        close(s[i]);
    close(ep);
    free(s);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("client");
    return r;
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);   /* before the re-exec: the library reads it at start */
    }
    lift_fd_cap(argv);
    static const int defaults[] = { 100, 1000, 4000 };
    int count = argc > 1 ? argc - 1 : 3;
    printf("one set, N registrations; ns per call (loopfast / kernel)\n");
    printf("%6s  %22s  %24s  %24s\n", "N", "epoll_ctl MOD", "epoll_wait(0), none ready",
           "round trip, 1 of N");
    for (int k = 0; k < count; k++) {
        int n = argc > 1 ? atoi(argv[k + 1]) : defaults[k];
        if (n <= 0 || (rlim_t)n * 2 + 64 > rl.rlim_cur) {
            fprintf(stderr, "bench_epoll_scale: N=%s: want 1..%llu (RLIMIT_NOFILE)\n",
                    argc > 1 ? argv[k + 1] : "?", (unsigned long long)(rl.rlim_cur - 64) / 2);
            return 1;
        }
        struct result kern = measure(n, 0), fast = measure(n, 1);
        printf("%6d  %7.0f / %-7.0f %5.2fx  %8.0f / %-7.0f %5.2fx  %8.0f / %-7.0f %5.2fx\n", n,
               fast.mod_ns, kern.mod_ns, fast.mod_ns / kern.mod_ns, fast.idle_wait_ns, kern.idle_wait_ns,
               fast.idle_wait_ns / kern.idle_wait_ns, fast.round_trip_ns, kern.round_trip_ns,
               fast.round_trip_ns / kern.round_trip_ns);
    }
    return 0;
}
