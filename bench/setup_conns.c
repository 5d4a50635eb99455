/*
 * setup_conns.c - the short connection of `loopfast bench`'s set-up row
 * (connect, 1-byte echo, close), N times between two processes, with a
 * marker system call before each one so that bench/setup_syscalls.sh can
 * cut an strace of it into connections.
 *
 *   build/bench_setup_conns kernel|loopfast N [client-first] [ask-fast] [two-echoes]
 *
 * By default the server closes first, right after its echo, as in `loopfast
 * bench`; with client-first it reads the client's end of stream first.
 * The client (the parent) calls getppid() before each socket(); the server
 * (a forked child) calls getppid() before each accept(), so its calls from
 * the marker to the real accept are the ones made before it waits (the
 * spare, leftovers) and the rest are on the connection's path.  Prints the
 * time per connection and the CPU time of both processes per connection;
 * with ask-fast, also how many connections were fast when the client had
 * read its echo (asked between two getuid() markers, left out of the
 * count).  Not asked by default: asking takes the answer of a client that
 * leaves its first exchange on TCP (docs/design.md, 4.3), so the time
 * would include a switch the connection never makes.
 *
 *   build/bench_setup_conns kernel|loopfast N first
 *
 * compares a first contact with later ones: N client processes started one
 * after another (this program again, by posix_spawn, so that each loads and
 * starts loopfast as a new program would) each open one connection (for
 * loopfast the server makes a region for each, and each takes it), then one
 * process opens N; each times socket() to the echo's arrival.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <loopfast.h>

extern char **environ;

static void opt(int fd, int on)
{
    if (loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) != 0) {
        perror("loopfast_ioctl");
        exit(1);
    }
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int serve(int l, int client_first, int echoes)
{
    for (;;) {
        getppid();   /* marker */
        int c = accept(l, NULL, NULL);
        if (c < 0)
            return 1;
        nodelay(c);
        char b;
        for (int k = 0; k < echoes; k++)
            if (read(c, &b, 1) != 1 || write(c, &b, 1) != 1)
                return 1;
        if (client_first && read(c, &b, 1) != 0)
            return 1;
        close(c);
    }
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double cpu_us(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* One connection, socket() to the echo: its time; *fast set after it. */
static double time_to_reply(const struct sockaddr_in *a, socklen_t len, int on, int *fast)
{
    double t0 = now_us();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (on)
        opt(fd, on);
    char b = 'x';
    if (connect(fd, (const struct sockaddr *)a, len) < 0 || (nodelay(fd), write(fd, &b, 1)) != 1 ||
        read(fd, &b, 1) != 1) {
        perror("first contact");
        exit(1);
    }
    double t = now_us() - t0;
    *fast = loopfast_fd_is_fast(fd) == 1;
    close(fd);
    return t;
}

struct reply_time { double t; int fast; };

/* A started client (argv: once PORT ON FD): one connection, reported on FD. */
static int client_once(char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)atoi(argv[2])) };
    struct reply_time r;
    r.t = time_to_reply(&a, sizeof a, atoi(argv[3]), &r.fast);
    return write(atoi(argv[4]), &r, sizeof r) == sizeof r ? 0 : 1;
}

/* N fresh client processes, one connection each, then one process with N. */
static void first_contacts(const struct sockaddr_in *a, socklen_t len, int on, int n)
{
    double first = 0, later = 0;
    int fast_first = 0, fast_later = 0;
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) < 0)
            exit(1);
        char port[16], onarg[4], fdarg[16];
        snprintf(port, sizeof port, "%d", ntohs(a->sin_port));
        snprintf(onarg, sizeof onarg, "%d", on);
        snprintf(fdarg, sizeof fdarg, "%d", p[1]);
        char *args[] = { "bench_setup_conns", "once", port, onarg, fdarg, NULL };
        pid_t c;
        struct reply_time r = { 0, 0 };
        if (posix_spawn(&c, "/proc/self/exe", NULL, NULL, args, environ) != 0 ||
            read(p[0], &r, sizeof r) != sizeof r)
            exit(1);
        waitpid(c, NULL, 0);
        close(p[0]);
        close(p[1]);
        first += r.t;
        fast_first += r.fast;
    }
    for (int i = 0; i < n; i++) {
        int f;
        later += time_to_reply(a, len, on, &f);
        fast_later += f;
    }
    printf("socket() to echo: first contact %.1f us (%d of %d fast), later %.1f us (%d of %d fast)\n",
           first / n, fast_first, n, later / n, fast_later, n);
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "once"))
        return client_once(argv);
    int client_first = 0, ask = 0, first = 0, two = 0;
    for (int i = 3; i < argc; i++) {
        client_first |= !strcmp(argv[i], "client-first");
        ask |= !strcmp(argv[i], "ask-fast");
        two |= !strcmp(argv[i], "two-echoes");
        first |= !strcmp(argv[i], "first");
    }
    if (argc < 3 || argc > 5 || (strcmp(argv[1], "kernel") && strcmp(argv[1], "loopfast")) ||
        3 + client_first + ask + first + two != argc || (first && argc != 4)) {
        fprintf(stderr, "usage: %s kernel|loopfast N [client-first] [ask-fast] [two-echoes] | first\n",
                argv[0]);
        return 2;
    }
    int on = !strcmp(argv[1], "loopfast"), n = atoi(argv[2]), fast = 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    /* The server makes its own listener, as a server does (one made before
     * a fork counts as shared: loopfast then offers for each connection). */
    int tell[2];
    if (pipe(tell) < 0) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int l = socket(AF_INET, SOCK_STREAM, 0);
        if (on)
            opt(l, on);
        if (bind(l, (struct sockaddr *)&a, len) < 0 || listen(l, 128) < 0 ||
            getsockname(l, (struct sockaddr *)&a, &len) < 0 ||
            write(tell[1], &a, sizeof a) != sizeof a) {
            perror("listen");
            _exit(1);
        }
        _exit(serve(l, client_first || first || two, two ? 2 : 1));   /* the client closes first */
    }
    close(tell[1]);
    if (read(tell[0], &a, sizeof a) != sizeof a) {
        fprintf(stderr, "the server did not start\n");
        return 1;
    }
    close(tell[0]);
    if (first) {
        first_contacts(&a, len, on, n);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 0;
    }
    double t0 = now_us(), cpu0 = cpu_us(RUSAGE_SELF);
    for (int i = 0; i < n; i++) {
        getppid();   /* marker */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (on)
            opt(fd, on);
        if (connect(fd, (struct sockaddr *)&a, len) < 0) {
            perror("connect");
            return 1;
        }
        nodelay(fd);
        char b = 'x';
        for (int k = 0; k < (two ? 2 : 1); k++)
            if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) {
                perror("echo");
                return 1;
            }
        getuid();   /* marker: not the connection's own calls */
        fast += ask && loopfast_fd_is_fast(fd) == 1;
        getuid();
        close(fd);
    }
    getppid();   /* marker: the end of the last connection */
    double t = now_us() - t0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    double cpu = cpu_us(RUSAGE_SELF) - cpu0 + cpu_us(RUSAGE_CHILDREN);
    if (ask)
        printf("%d of %d connections fast, ", fast, n);
    else
        printf("%d connections (fast: not asked), ", n);
    printf("%.1f us, CPU %.1f us per connection\n", t / n, cpu / n);
    return 0;
}
