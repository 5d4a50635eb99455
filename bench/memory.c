/*
 * memory.c - what N connections cost in memory, busy and idle, over kernel
 * TCP and over loopfast: a server and a client process; each connection
 * moves 2 MiB each way (the client writes, the server reads; then back),
 * then both processes wait in epoll_wait.  Printed for each transport: the
 * client's Rss and Pss (/proc/PID/smaps_rollup), the machine's Shmem and the
 * kernel's TCP buffer memory (/proc/net/sockstat, "mem" pages), as growth
 * over the moment before the connections, right after the last transfer
 * and after 2 s idle.  Then each connection trades a 1 KiB request for a
 * 1 KiB reply every 10 ms for 3 s (about 100 KB/s each way, a busy but
 * not a bulk connection), sampled at its end, still busy.
 * Run: build/bench_memory [N] (default 200).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loopfast.h"
#include "bench_common.h"

#define BULK (2u << 20)

static char buf[1 << 16];

static int move(int fd, int out)
{
    for (size_t done = 0; done < BULK;) {
        size_t n = BULK - done < sizeof buf ? BULK - done : sizeof buf;
        ssize_t r = out ? write(fd, buf, n) : read(fd, buf, n);
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

#define TRADE 1024
#define TRADE_GAP_US 10000
#define TRADE_SECONDS 3

/* The server's part after the bulk: each request read whole is answered
 * with as many bytes. */
static void echo_in_epoll(const int *fds, int n)
{
    int ep = epoll_of(fds, n);
    struct epoll_event out[16];
    for (;;) {
        int k = epoll_wait(ep, out, 16, -1);
        for (int i = 0; i < k; i++) {
            ssize_t r = read(out[i].data.fd, buf, TRADE);
            if (r <= 0 || write(out[i].data.fd, buf, (size_t)r) != r)
                _exit(1);
        }
    }
}

/* The client's wait for the trades: in epoll_wait, as idle_in_epoll's, so
 * that its rings are trimmed as an idle program's are. */
static void idle_until(const int *fds, int n, int go)
{
    int ep = epoll_of(fds, n);
    struct epoll_event e = { .events = EPOLLIN, .data.fd = go };
    epoll_ctl(ep, EPOLL_CTL_ADD, go, &e);
    for (struct epoll_event out[16];;) {
        int k = epoll_wait(ep, out, 16, -1);
        for (int i = 0; i < k; i++)
            if (out[i].data.fd == go) {
                close(ep);
                return;
            }
    }
}

/* The client's: a request and its reply on every connection in turn, a
 * round every TRADE_GAP_US; 0 when every reply came whole. */
static int trade(const int *fds, int n)
{
    for (int round = 0; round < TRADE_SECONDS * 1000000 / TRADE_GAP_US; round++) {
        for (int i = 0; i < n; i++) {
            if (write(fds[i], buf, TRADE) != TRADE)
                return -1;
            for (ssize_t got = 0, r; got < TRADE; got += r)
                if ((r = read(fds[i], buf, TRADE - (size_t)got)) <= 0)
                    return -1;
        }
        usleep(TRADE_GAP_US);
    }
    return 0;
}

static long field_kb(const char *path, const char *name)
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

static long tcp_mem_kb(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    char line[256];
    long pages = -1;
    while (f && fgets(line, sizeof line, f)) {
        char *m = strncmp(line, "TCP:", 4) ? NULL : strstr(line, " mem ");
        if (m)
            pages = atol(m + 5);
    }
    if (f)
        fclose(f);
    return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

struct sample { long rss, pss, shmem, tcp; };

static struct sample sample(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    return (struct sample){ field_kb(path, "Rss:"), field_kb(path, "Pss:"),
                            field_kb("/proc/meminfo", "Shmem:"), tcp_mem_kb() };
}

static void report(const char *what, int n, struct sample s, struct sample base)
{
    printf("  %-22s client Rss %+8ld KiB  Pss %+8ld KiB   machine Shmem %+8ld KiB  TCP buffers %+7ld KiB"
           "   per connection: Rss %.1f KiB, Shmem %.1f KiB, TCP %.1f KiB\n",
           what, s.rss - base.rss, s.pss - base.pss, s.shmem - base.shmem, s.tcp - base.tcp,
           (double)(s.rss - base.rss) / n, (double)(s.shmem - base.shmem) / n,
           (double)(s.tcp - base.tcp) / n);
}

static void run(int n, int optin)
{
    int on = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    if (optin)
        loopfast_ioctl(l, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, len) || listen(l, 128) || getsockname(l, (struct sockaddr *)&a, &len))
        exit((perror("listen"), 1));
    int *fds = calloc((size_t)n, sizeof *fds), ready[2], start[2];
    if (!fds || pipe(ready) || pipe(start))
        exit(1);
    pid_t server = fork();
    if (server == 0) {
        for (int i = 0; i < n; i++)
            if ((fds[i] = accept(l, NULL, NULL)) < 0 || move(fds[i], 0) || move(fds[i], 1))
                _exit(1);
        echo_in_epoll(fds, n);
    }
    close(l);
    pid_t client = fork();
    if (client == 0) {
        int fast = 0;
        for (int i = 0; i < n; i++) {
            fds[i] = socket(AF_INET, SOCK_STREAM, 0);
            if (optin)
                loopfast_ioctl(fds[i], LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL);
            if (connect(fds[i], (struct sockaddr *)&a, len) || move(fds[i], 1) || move(fds[i], 0))
                _exit(1);
            fast += loopfast_fd_is_fast(fds[i]) == 1;
        }
        if (write(ready[1], &fast, sizeof fast) != sizeof fast)
            _exit(1);
        char go;
        idle_until(fds, n, start[0]);
        if (read(start[0], &go, 1) != 1 || trade(fds, n))
            _exit(1);
        if (write(ready[1], &fast, sizeof fast) != sizeof fast)
            _exit(1);
        idle_in_epoll(fds, n);
    }
    struct sample base = sample(getpid());   /* the client, a copy of us, before it connects */
    int fast = -1;
    if (read(ready[0], &fast, sizeof fast) != sizeof fast)
        exit((fprintf(stderr, "client failed\n"), 1));
    printf("%s, %d connections (%d fast), 2 MiB each way:\n", optin ? "loopfast" : "kernel TCP", n, fast);
    report("after the last transfer", n, sample(client), base);
    sleep(2);
    report("idle 2 s", n, sample(client), base);
    if (write(start[1], "g", 1) != 1 || read(ready[0], &fast, sizeof fast) != sizeof fast)
        exit((fprintf(stderr, "client failed trading\n"), 1));
    report("after 3 s of 1 KiB trades", n, sample(client), base);
    kill(client, SIGKILL);
    kill(server, SIGKILL);
    waitpid(client, NULL, 0);
    waitpid(server, NULL, 0);
    free(fds);
}

int main(int argc, char **argv)
{
    lift_fd_cap(argv);
    int n = argc > 1 ? atoi(argv[1]) : 200;
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;   /* six descriptors per fast connection and side */
        setrlimit(RLIMIT_NOFILE, &r);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    run(n, 0);
    sleep(1);
    run(n, 1);
    return 0;
}
