/* A kernel descriptor in an epoll set with a fast connection that is always
 * readable still gets reported, also when the program asks for one event
 * at a time: the kernel's epoll would report it at the latest on the second
 * call (a level-triggered entry reported goes to the end of its ready list).
 * loopfast asks the kernel for its events every 64 us of calls rather than
 * on every call (a system call would cost more than the fast event), so the
 * check allows a second; the bug it guards against is a pipe never reported
 * (asking only when the fast events left room in the array starved it at
 * max = 1).
 *
 * An event loop that works long on each event (nginx sending big files to
 * many fast clients, ~50 ms between its calls) must not wait for the kernel
 * any longer than one call: counted in calls alone, the look came every 8th
 * call, and nginx's listening socket was seen 2-3 times a second (a small
 * request waited 3.6 s in the accept queue).  Run over kernel TCP and over
 * loopfast. */
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Calls epoll_wait until the pipe shows; the number of calls it took. */
static long calls_until_pipe(int ep, int pipe_rd, int max)
{
    struct epoll_event out[8];
    double end = now_s() + 2;
    for (long calls = 1; now_s() < end; calls++) {
        int n = epoll_wait(ep, out, max, -1);
        CHECK(n >= 1 && n <= max, "epoll_wait: %d (%s)", n, strerror(errno));
        for (int i = 0; i < n; i++)
            if (out[i].data.fd == pipe_rd) {
                CHECK(out[i].events == EPOLLIN, "pipe events %#x", out[i].events);
                return calls;
            }
    }
    return -1;
}

static void run(int optin)
{
    int c, s, p[2];
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(write_full(s, "always readable", 15) == 15, "write");
    CHECK(pipe(p) == 0, "pipe");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = c };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "add socket");
    ev.data.fd = p[0];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "add pipe");
    for (int max = 1; max <= 8; max += 7) {
        struct epoll_event out[8];
        for (int i = 0; i < 1000; i++)   /* the fast socket alone, many times */
            CHECK(epoll_wait(ep, out, max, 0) == 1 && out[0].data.fd == c, "socket not ready");
        CHECK(write(p[1], "p", 1) == 1, "pipe write");
        long calls = calls_until_pipe(ep, p[0], max);
        CHECK(calls > 0, "%s, max %d: the pipe was never reported in 2 s",
              optin ? "loopfast" : "kernel", max);
        char b;
        CHECK(read(p[0], &b, 1) == 1, "pipe read");
        printf("%s, max %d: pipe reported at call %ld\n", optin ? "loopfast" : "kernel", max, calls);
    }
    CHECK(loopfast_fd_is_fast(c) == optin, "fast %d", loopfast_fd_is_fast(c));
    close(ep), close(p[0]), close(p[1]), close(c), close(s);
}

/* Works, as a busy event loop does, for `us` microseconds. */
static void work_for(double us)
{
    double end = now_s() + us * 1e-6;
    while (now_s() < end)
        ;
}

/* Many fast connections always readable, 300 us of work after each call:
 * the pipe written between two calls is reported by the next one, as the
 * kernel's epoll would. */
static void run_slow_loop(int optin)
{
    enum { CONNS = 16 };
    int c[CONNS], s[CONNS], p[2];
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    for (int i = 0; i < CONNS; i++) {
        fast_pair(AF_INET, optin, &c[i], &s[i]);
        CHECK(write_full(s[i], "x", 1) == 1, "write");
        ev.data.fd = c[i];
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c[i], &ev) == 0, "add socket");
    }
    CHECK(pipe(p) == 0, "pipe");
    ev.data.fd = p[0];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "add pipe");
    struct epoll_event out[CONNS + 1];
    long worst = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 5; i++) {
            CHECK(epoll_wait(ep, out, CONNS + 1, -1) == CONNS, "not all sockets ready");
            work_for(300);
        }
        CHECK(write(p[1], "p", 1) == 1, "pipe write");
        long calls = 0;
        for (int pipe_seen = 0; !pipe_seen && calls < 1000; calls++) {
            int n = epoll_wait(ep, out, CONNS + 1, -1);
            CHECK(n >= CONNS, "epoll_wait: %d (%s)", n, strerror(errno));
            for (int i = 0; i < n; i++)
                pipe_seen |= out[i].data.fd == p[0];
            work_for(300);
        }
        char b;
        CHECK(read(p[0], &b, 1) == 1, "pipe read");
        worst = calls > worst ? calls : worst;
    }
    printf("%s, busy loop: pipe reported at call %ld at worst\n", optin ? "loopfast" : "kernel",
           worst);
    CHECK(worst <= 2, "%s, busy loop: the pipe waited %ld calls of 300 us",
          optin ? "loopfast" : "kernel", worst);
    for (int i = 0; i < CONNS; i++)
        close(c[i]), close(s[i]);
    close(ep), close(p[0]), close(p[1]);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    run_slow_loop(0);
    run_slow_loop(1);
    return 0;
}
