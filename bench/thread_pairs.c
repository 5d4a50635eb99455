/*
 * thread_pairs.c - many threads each blocked on its own connection: a
 * client process runs PAIRS threads, each a 64 B blocking ping-pong of
 * ROUNDS round trips on its own connection to a server process that runs a
 * thread per connection (the shape of mysqlslap against MariaDB, or of any
 * thread-per-connection server).  Measured over kernel TCP and over
 * loopfast (both ends opted in) in the same run, kernel first; prints round
 * trips per second of all pairs and the ratio.  With more threads than
 * cores every message finds its reader asleep, so this measures waking,
 * not the ring (docs/performance.md, "Many connections at once").
 * Run: build/bench_thread_pairs [PAIRS [ROUNDS]]   (default 20 pairs, 4000)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "loopfast.h"

#define MAX_PAIRS 256
#define MSG 64

static int pairs = 20, rounds = 4000, optin;
static struct sockaddr_in server_addr;

static int opt_in(int fd)
{
    int on = 1;
    return optin ? loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL)
                 : 0;
}

static void *echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[MSG];
    while (read_full(fd, b, MSG) == 0 && write(fd, b, MSG) == MSG)
        ;
    close(fd);
    return NULL;
}

static void serve(int l)
{
    for (;;) {
        int fd = accept(l, NULL, NULL);
        pthread_t t;
        if (fd < 0 || pthread_create(&t, NULL, echo, (void *)(intptr_t)fd) != 0)
            _exit(1);
        pthread_detach(t);
    }
}

static void *ping(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || opt_in(fd) < 0 ||
        connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0) {
        perror("bench_thread_pairs: connect");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b[MSG] = { 0 };
    for (int i = 0; i < rounds; i++)
        if (write(fd, b, MSG) != MSG || read_full(fd, b, MSG) < 0) {
            perror("bench_thread_pairs: round trip");
            exit(1);
        }
    close(fd);
    return NULL;
}

/* Round trips per second of all pairs together. */
static double run(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t len = sizeof server_addr;
    server_addr = (struct sockaddr_in){ .sin_family = AF_INET,
                                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (l < 0 || opt_in(l) < 0 || bind(l, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 ||
        listen(l, MAX_PAIRS) < 0 || getsockname(l, (struct sockaddr *)&server_addr, &len) < 0) {
        perror("bench_thread_pairs: listen");
        exit(1);
    }
    pid_t srv = fork();
    if (srv == 0)
        serve(l);
    close(l);
    struct timespec t0, t1;
    pthread_t t[MAX_PAIRS];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < pairs; i++)
        pthread_create(&t[i], NULL, ping, NULL);
    for (int i = 0; i < pairs; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return (double)pairs * rounds / s;
}

int main(int argc, char **argv)
{
    pairs = argc > 1 ? atoi(argv[1]) : pairs;
    rounds = argc > 2 ? atoi(argv[2]) : rounds;
    if (pairs < 1 || pairs > MAX_PAIRS || rounds < 1 || rounds > 10000000) {
        fprintf(stderr, "usage: bench_thread_pairs [PAIRS [ROUNDS]] (1-%d pairs)\n", MAX_PAIRS);
        return 2;
    }
    optin = 0;
    double kernel = run();
    optin = 1;
    double fast = run();
    printf("%d thread pairs x %d round trips of %d B: kernel %.0f k/s, loopfast %.0f k/s = "
           "%.2fx the kernel's\n", pairs, rounds, MSG, kernel / 1e3, fast / 1e3, fast / kernel);
    return 0;
}
