/*
 * memory.c - what N connections cost in memory, busy and idle, over kernel
 * TCP and over loopfast: a server and a client process; each connection
 * moves 2 MiB each way (the client writes, the server reads; then back),
 * then both processes wait in epoll_wait.  Printed for each transport: the
 * client's Rss and Pss (/proc/PID/smaps_rollup), the machine's Shmem and the
 * kernel's TCP buffer memory (/proc/net/sockstat, "mem" pages), as growth
 * over the moment before the connections, right after the last transfer
 * and after 2 s idle.  Run: build/bench_memory [N] (default 200).
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
    int *fds = calloc((size_t)n, sizeof *fds), ready[2];
    if (!fds || pipe(ready))
        exit(1);
    pid_t server = fork();
    if (server == 0) {
        for (int i = 0; i < n; i++)
            if ((fds[i] = accept(l, NULL, NULL)) < 0 || move(fds[i], 0) || move(fds[i], 1))
                _exit(1);
        idle_in_epoll(fds, n);
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
