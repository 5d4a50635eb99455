/*
 * idle.c - what 100 idle fast-path connections cost: both ends wait in
 * epoll_wait; after the spin budget has passed, the CPU time both processes
 * use over 2 seconds is printed (from /proc/PID/stat).  Run: build/bench_idle
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loopfast.h"
#include "bench_common.h"

#define CONNS 100

static void opt_in(int fd)
{
    int on = 1;
    loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL);
}

static double cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long ut = 0, st = 0;
    if (f && fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        ut = st = 0;
    if (f)
        fclose(f);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    opt_in(l);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, len) || listen(l, CONNS) || getsockname(l, (struct sockaddr *)&a, &len))
        return perror("listen"), 1;
    int fds[CONNS], fast = 0;
    pid_t server = fork();
    if (server == 0) {
        for (int i = 0; i < CONNS; i++) {
            fds[i] = accept(l, NULL, NULL);
            char b;
            if (read(fds[i], &b, 1) != 1 || write(fds[i], &b, 1) != 1)
                _exit(1);
        }
        idle_in_epoll(fds, CONNS);
    }
    for (int i = 0; i < CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        opt_in(fds[i]);
        char b = 'x';
        if (connect(fds[i], (struct sockaddr *)&a, len) || write(fds[i], &b, 1) != 1 || read(fds[i], &b, 1) != 1)
            return perror("connect"), 1;
        fast += loopfast_fd_is_fast(fds[i]) == 1;
    }
    pid_t client = fork();
    if (client == 0)
        idle_in_epoll(fds, CONNS);
    sleep(1);   /* let the spin budget pass */
    double s0 = cpu_seconds(server), c0 = cpu_seconds(client);
    sleep(2);
    double s1 = cpu_seconds(server), c1 = cpu_seconds(client);
    kill(server, SIGKILL);
    kill(client, SIGKILL);
    waitpid(server, NULL, 0);
    waitpid(client, NULL, 0);
    printf("%d idle connections (%d on the fast path): CPU over 2 s: server %.2f s, client %.2f s (%.1f%% of one core)\n",
           CONNS, fast, s1 - s0, c1 - c0, 100 * ((s1 - s0) + (c1 - c0)) / 2);
    return 0;
}
