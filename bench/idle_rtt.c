/*
 * idle_rtt.c - whether idle connections slow a busy one down (issue 10):
 * the 64 B round trip on one busy connection while N idle connections sit
 * beside it in the same epoll sets, over kernel TCP and over loopfast.
 * A server and a client process each put all N + 1 connections in one epoll
 * set (EPOLLIN, level-triggered, the busy one registered last); the client
 * writes 64 B, waits in epoll_wait and reads; the server waits, reads and
 * writes back.  The target: epoll_wait costs the same with 0 or 10 000 idle
 * fast connections, so the round trip at N = 10 000 stays within 1.5x of
 * N = 0.  Printed per case: the mean over about 2 s and the best of its ten
 * windows (less disturbed by neighbours on a shared machine), descriptors,
 * and how many connections each side sees on the fast path.  Both
 * transports run in this program, linked with libloopfast: "kernel" sockets
 * are simply not opted in.
 * Run: build/bench_idle_rtt [--json] [N ...]   (default N: 0 1000 10000)
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopfast.h"
#include "bench_common.h"

#define MSG 64
#define BATCH 256               /* connections made before their echoes are read */
#define SECONDS 2.0             /* timed ping-pong per case ... */
#define MAX_ROUNDS 1000000L     /* ... or this many round trips, whichever is shorter */
#define WINDOWS 10              /* the timed part is cut into windows: see best_us */
#define WARMUP_SECONDS 0.2
#define CASE_ALARM 40           /* a client stuck this long (lost wake-up) fails its case */
#define FDS_PER_FAST 1          /* the TCP socket (regions and their doorbells: per process pair) */
#define CONNS_PER_REGION 920    /* LINK_SLOTS in src/internal.h */
#define MAX_N 16

/* What one side reports to the parent, through a pipe. */
struct side {
    int ok, fast, fds;
    long rounds, stray;
    double setup_s, rtt_us;
    double best_us;   /* the best window's mean: neighbours on a shared VM stop the
                         spinning of both ends for a while, and the mean with it */
};

struct result {
    int n, optin;
    char skipped[192];
    struct side client, server;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_idle_rtt: %s: %s\n", what, strerror(errno));
    _exit(1);
}

static void opt_in(int fd)
{
    int on = 1;
    if (loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL))
        die("loopfast_ioctl");
}

/* Six descriptors or so per fast connection and side: take all we may. */
static rlim_t raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r))
        return 0;
    struct rlimit big = { 1u << 20, 1u << 20 };
    if (r.rlim_max < big.rlim_max && setrlimit(RLIMIT_NOFILE, &big) == 0)
        return big.rlim_cur;
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
    return r.rlim_cur;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n - 3;   /* ".", ".." and the directory's own descriptor */
}

static int count_fast(const int *fds, int n)
{
    int fast = 0;
    for (int i = 0; i < n; i++)
        fast += loopfast_fd_is_fast(fds[i]) == 1;
    return fast;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* One byte each way on every connection, so that both directions of a fast
 * connection are on the rings before timing starts (the client takes the
 * server's answer at its read). */
static void send_byte(int fd)
{
    write_all(fd, "x", 1);
}

static void recv_byte(int fd)
{
    char b;
    if (read(fd, &b, 1) != 1)
        die("read of the set-up byte");
}

/* Connects in batches: the server accepts while the next batch is made, and
 * every step is O(1) per connection. */
static void client_connect(int *fds, int total, const struct sockaddr_in *a, int optin)
{
    for (int i = 0; i < total; i += BATCH) {
        int m = total - i < BATCH ? total - i : BATCH;
        for (int j = i; j < i + m; j++) {
            if ((fds[j] = socket(AF_INET, SOCK_STREAM, 0)) < 0)
                die("socket");
            if (optin)
                opt_in(fds[j]);
            if (connect(fds[j], (const struct sockaddr *)a, sizeof *a))
                die("connect");
            send_byte(fds[j]);
        }
        for (int j = i; j < i + m; j++)
            recv_byte(fds[j]);
    }
}

static void server_accept(int l, int *fds, int total)
{
    for (int i = 0; i < total; i++) {
        if ((fds[i] = accept(l, NULL, NULL)) < 0)
            die("accept");
        recv_byte(fds[i]);
        send_byte(fds[i]);
    }
}

/* Waits in epoll_wait until `want` bytes of the busy connection are read.
 * An idle connection reported ready is counted and removed (else a
 * level-triggered set would report it forever).  -1 at EOF or error. */
static int await_busy(int ep, int busy, char *buf, int want, long *stray)
{
    struct epoll_event ev[64];
    for (int got = 0; got < want;) {
        int k = epoll_wait(ep, ev, 64, -1);
        if (k < 0 && errno != EINTR)
            return -1;
        for (int i = 0; i < k; i++) {
            if (ev[i].data.fd != busy) {
                ++*stray;
                epoll_ctl(ep, EPOLL_CTL_DEL, ev[i].data.fd, NULL);
                continue;
            }
            ssize_t r = read(busy, buf + got, (size_t)(want - got));
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
            got += r > 0 ? (int)r : 0;
        }
    }
    return 0;
}

/* Round trips until `rounds` are done or `seconds` have passed; the clock is
 * read less often as round trips get short, so that it costs little. */
static long ping_pong(int ep, int busy, long rounds, double seconds, double *elapsed, long *stray)
{
    char buf[MSG];
    memset(buf, 'p', sizeof buf);
    double t0 = now(), last = t0;
    long r = 0, next = 1, stride = 1;
    for (; r < rounds; r++) {
        if (r == next) {
            double t = now();
            if (t - t0 >= seconds)
                break;
            if (t - last < 1e-3 && stride < 1024)
                stride *= 2;
            last = t;
            next = r + stride;
        }
        write_all(busy, buf, MSG);
        if (await_busy(ep, busy, buf, MSG, stray))
            die("busy connection closed");
    }
    *elapsed = now() - t0;
    return r;
}

static void time_windows(int ep, int busy, struct side *s)
{
    double total = 0, elapsed;
    for (int w = 0; w < WINDOWS; w++) {
        long r = ping_pong(ep, busy, MAX_ROUNDS / WINDOWS, SECONDS / WINDOWS, &elapsed, &s->stray);
        double mean = elapsed * 1e6 / (double)r;
        if (w == 0 || mean < s->best_us)
            s->best_us = mean;
        s->rounds += r;
        total += elapsed;
    }
    s->rtt_us = total * 1e6 / (double)s->rounds;
}

static void run_client(int n, int optin, const struct sockaddr_in *a, int out)
{
    struct side s = { 0 };
    int total = n + 1, *fds = calloc((size_t)total, sizeof *fds);
    if (!fds)
        die("calloc");
    alarm(CASE_ALARM);
    double t0 = now(), elapsed;
    client_connect(fds, total, a, optin);
    int ep = epoll_of(fds, total);   /* the busy one, fds[n], last */
    s.setup_s = now() - t0;
    s.fast = count_fast(fds, total);
    s.fds = count_fds();
    ping_pong(ep, fds[n], 1, 1e9, &elapsed, &s.stray);   /* the server is ready */
    ping_pong(ep, fds[n], MAX_ROUNDS, WARMUP_SECONDS, &elapsed, &s.stray);
    time_windows(ep, fds[n], &s);
    s.ok = 1;
    if (write(out, &s, sizeof s) != sizeof s)
        die("write result");
    _exit(0);
}

static void report_server(struct side *s, const int *fds, int total, int out)
{
    s->fast = count_fast(fds, total);
    s->fds = count_fds();
    s->ok = 1;
    if (write(out, s, sizeof *s) != sizeof *s)
        die("write result");
}

/* Echoes the busy connection's bytes until it ends. */
static void run_server(int l, int n, int out)
{
    struct side s = { 0 };
    int total = n + 1, *fds = calloc((size_t)total, sizeof *fds);
    char buf[MSG];
    if (!fds)
        die("calloc");
    server_accept(l, fds, total);
    close(l);
    int ep = epoll_of(fds, total);
    /* Counted once the first message is in: each client's proof (sent at
     * its read of the set-up byte) has arrived by then. */
    for (int first = 1; await_busy(ep, fds[n], buf, MSG, &s.stray) == 0; first = 0) {
        if (first)
            report_server(&s, fds, total, out);
        write_all(fds[n], buf, MSG);
    }
    _exit(0);
}

static int make_listener(int optin, struct sockaddr_in *a)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        die("socket");
    if (optin)
        opt_in(l);
    *a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof *a;
    if (bind(l, (struct sockaddr *)a, len) || listen(l, 4096) || getsockname(l, (struct sockaddr *)a, &len))
        die("listen");
    return l;
}

static pid_t spawn_side(int is_server, int l, int n, int optin, const struct sockaddr_in *a, int pipefd[2])
{
    if (pipe(pipefd))
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(pipefd[0]);
        if (is_server)
            run_server(l, n, pipefd[1]);
        close(l);
        run_client(n, optin, a, pipefd[1]);
    }
    close(pipefd[1]);
    return pid;
}

static void read_side(int fd, struct side *s)
{
    if (read(fd, s, sizeof *s) != sizeof *s)
        memset(s, 0, sizeof *s);
    close(fd);
}

static void run_case(struct result *res, rlim_t nofile)
{
    /* Plus, while a batch is set up, each pending client's offer socket. */
    /* with loopfast: 3 a region, and the offers of a batch not yet
     * answered (2 each) */
    rlim_t need = (rlim_t)(res->n + 1) * (res->optin ? FDS_PER_FAST : 1) +
                  (res->optin ? 3 * (rlim_t)(res->n / CONNS_PER_REGION + 2) + 2 * BATCH : 0) + 64;
    if (nofile < need) {
        snprintf(res->skipped, sizeof res->skipped,
                 "RLIMIT_NOFILE is %llu, about %llu descriptors per process needed "
                 "(raising the hard limit needs CAP_SYS_RESOURCE)",
                 (unsigned long long)nofile, (unsigned long long)need);
        return;
    }
    struct sockaddr_in a;
    int l = make_listener(res->optin, &a), sp[2], cp[2];
    pid_t server = spawn_side(1, l, res->n, res->optin, &a, sp);
    pid_t client = spawn_side(0, l, res->n, res->optin, &a, cp);
    close(l);
    read_side(cp[0], &res->client);   /* first: the server waits while a dead client never connects */
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    waitpid(client, NULL, 0);
    read_side(sp[0], &res->server);
    if (!res->client.ok || !res->server.ok)
        snprintf(res->skipped, sizeof res->skipped, "failed (client %s, server %s)",
                 res->client.ok ? "ok" : "failed", res->server.ok ? "ok" : "failed");
}

static const char *transport(int optin)
{
    return optin ? "loopfast" : "kernel";
}

static void print_header(void)
{
    struct utsname u;
    uname(&u);
    printf("bench_idle_rtt: 64 B round trip (client write + epoll_wait + read, server epoll_wait + read + write) "
           "on 1 busy connection with N idle ones in the same level-triggered EPOLLIN sets; "
           "host %s %s, %ld CPUs\n", u.sysname, u.release, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-9s %6s %8s %15s %13s %8s %9s %9s\n", "transport", "N", "setup_s", "fds cli/srv", "fast cli/srv",
           "rounds", "rtt_us", "best_us");
}

static void print_row(const struct result *r)
{
    if (r->skipped[0]) {
        printf("%-9s %6d skipped: %s\n", transport(r->optin), r->n, r->skipped);
        return;
    }
    printf("%-9s %6d %8.2f %7d/%-7d %6d/%-6d %8ld %9.2f %9.2f\n", transport(r->optin), r->n,
           r->client.setup_s, r->client.fds, r->server.fds, r->client.fast, r->server.fast,
           r->client.rounds, r->client.rtt_us, r->client.best_us);
}

static int not_fast(const struct result *r)
{
    return r->optin && !r->skipped[0] && (r->client.fast < r->n + 1 || r->server.fast < r->n + 1);
}

static int stray(const struct result *r)
{
    return !r->skipped[0] && r->client.stray > 0;
}

static void warn(const struct result *r, FILE *f)
{
    if (not_fast(r))
        fprintf(f, "WARNING: %s N=%d: only %d (client) / %d (server) of %d connections are on the fast path\n",
                transport(r->optin), r->n, r->client.fast, r->server.fast, r->n + 1);
    if (stray(r))
        fprintf(f, "WARNING: %s N=%d: epoll_wait reported %ld idle connections ready\n",
                transport(r->optin), r->n, r->client.stray);
}

/* res[i][0] kernel, res[i][1] loopfast; fn prints one ratio of round trips. */
typedef void ratio_fn(const char *what, const struct side *num, const struct side *den, int first);

static void each_ratio(struct result (*res)[2], int count, ratio_fn *fn)
{
    int first = 1;
    char what[64];
    for (int t = 1; t >= 0; t--)
        for (int i = 1; i < count; i++)
            if (!res[i][t].skipped[0] && !res[0][t].skipped[0]) {
                snprintf(what, sizeof what, "%s N=%d / N=%d", transport(t), res[i][t].n, res[0][t].n);
                fn(what, &res[i][t].client, &res[0][t].client, first);
                first = 0;
            }
    for (int i = 0; i < count; i++)
        if (!res[i][0].skipped[0] && !res[i][1].skipped[0]) {
            snprintf(what, sizeof what, "loopfast / kernel at N=%d", res[i][0].n);
            fn(what, &res[i][1].client, &res[i][0].client, first);
            first = 0;
        }
}

static void text_ratio(const char *what, const struct side *num, const struct side *den, int first)
{
    if (first)
        printf("round-trip ratios (means; in brackets: best windows):\n");
    printf("  %-32s %8.2fx  (%.2fx)\n", what, num->rtt_us / den->rtt_us, num->best_us / den->best_us);
}

static void json_ratio(const char *what, const struct side *num, const struct side *den, int first)
{
    printf("%s{\"what\":\"%s\",\"ratio\":%.4f,\"best_ratio\":%.4f}", first ? "" : ",", what,
           num->rtt_us / den->rtt_us, num->best_us / den->best_us);
}

static void print_json(struct result (*res)[2], int count)
{
    struct utsname u;
    uname(&u);
    printf("{\"bench\":\"idle_rtt\",\"msg_bytes\":%d,\"host\":{\"kernel\":\"%s\",\"nproc\":%ld},\"results\":[",
           MSG, u.release, sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0, first = 1; i < count; i++)
        for (int t = 0; t < 2; t++, first = 0) {
            const struct result *r = &res[i][t];
            printf("%s{\"transport\":\"%s\",\"n\":%d", first ? "" : ",", transport(t), r->n);
            if (r->skipped[0])
                printf(",\"skipped\":\"%s\"}", r->skipped);
            else
                printf(",\"setup_s\":%.3f,\"fds_client\":%d,\"fds_server\":%d,\"fast_client\":%d,"
                       "\"fast_server\":%d,\"stray_events\":%ld,\"rounds\":%ld,\"rtt_us\":%.3f,\"best_us\":%.3f}",
                       r->client.setup_s, r->client.fds, r->server.fds, r->client.fast, r->server.fast,
                       r->client.stray, r->client.rounds, r->client.rtt_us, r->client.best_us);
        }
    printf("],\"ratios\":[");
    each_ratio(res, count, json_ratio);
    printf("]}\n");
}

static int parse_args(int argc, char **argv, int *ns, int *json)
{
    int count = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (!strcmp(argv[i], "--json"))
            *json = 1;
        else if (*end || end == argv[i] || v < 0 || v > 1000000 || count == MAX_N)
            return fprintf(stderr, "usage: %s [--json] [N ...]   (at most %d values of N)\n", argv[0], MAX_N), -1;
        else
            ns[count++] = (int)v;
    }
    if (count == 0) {
        ns[0] = 0, ns[1] = 1000, ns[2] = 10000;
        count = 3;
    }
    return count;
}

int main(int argc, char **argv)
{
    lift_fd_cap(argv);
    static struct result res[MAX_N][2];
    int ns[MAX_N], json = 0, count = parse_args(argc, argv, ns, &json);
    if (count < 0)
        return 2;
    rlim_t nofile = raise_nofile();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!json)
        print_header();
    for (int i = 0; i < count; i++)
        for (int t = 0; t < 2; t++) {
            res[i][t] = (struct result){ .n = ns[i], .optin = t };
            run_case(&res[i][t], nofile);
            if (!json)
                print_row(&res[i][t]);
            warn(&res[i][t], json ? stderr : stdout);
        }
    if (json)
        print_json(res, count);
    else
        each_ratio(res, count, text_ratio);
    return 0;
}
