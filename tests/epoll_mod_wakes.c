/* epoll_ctl from one thread wakes another asleep in epoll_wait on the same
 * set when the change makes the descriptor ready, as the kernel's does:
 *  - MOD from EPOLLIN (nothing to read) to EPOLLOUT;
 *  - DEL, then ADD with EPOLLOUT (loopfast keeps a deleted fast record as a
 *    ghost and revives it without a system call);
 *  - MOD re-arming an EPOLLONESHOT record that fired, with data unread.
 * The sleeper waits with no timeout; a wake-up that never comes is a hang
 * (found by a helper: loopfast's MOD changed only its record, and the
 * sleeper slept to its timeout).  Run both ways. */
#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

static int ep, client, server;
static struct epoll_event got;
static int got_n;

static void *sleeper(void *arg)
{
    (void)arg;
    got_n = epoll_wait(ep, &got, 1, -1);
    return NULL;
}

/* Starts a sleeper, lets it sleep, makes the change, and checks that the
 * sleeper reports `want` within 5 s. */
static void case_run(const char *name, int optin, void (*change)(void), uint32_t want)
{
    pthread_t t;
    got_n = 0;
    CHECK(pthread_create(&t, NULL, sleeper, NULL) == 0, "pthread_create");
    usleep(50000);   /* asleep by now (if not, the change is seen by its first look) */
    change();
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 5;
    int r = pthread_timedjoin_np(t, NULL, &end);
    CHECK(r == 0, "%s, %s: epoll_wait still asleep 5 s after the change", optin ? "loopfast" : "kernel",
          name);
    CHECK(got_n == 1 && (got.events & want) && got.data.u64 == 7, "%s, %s: %d events, %#x",
          optin ? "loopfast" : "kernel", name, got_n, got.events);
    printf("ok   %-8s %s\n", optin ? "loopfast" : "kernel", name);
}

static void add(uint32_t events)
{
    struct epoll_event e = { .events = events, .data.u64 = 7 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, server, &e) == 0, "ADD: %s", strerror(errno));
}

static void mod(uint32_t events)
{
    struct epoll_event e = { .events = events, .data.u64 = 7 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, server, &e) == 0, "MOD: %s", strerror(errno));
}

static void to_out(void) { mod(EPOLLOUT); }

static void readd_out(void)
{
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, server, NULL) == 0, "DEL: %s", strerror(errno));
    add(EPOLLOUT);
}

static void rearm_in(void) { mod(EPOLLIN | EPOLLONESHOT); }

static void run(int optin)
{
    fast_pair(AF_INET, optin, &client, &server);
    CHECK(loopfast_fd_is_fast(server) == optin, "fast: %d", loopfast_fd_is_fast(server));
    ep = epoll_create1(EPOLL_CLOEXEC);
    add(EPOLLIN);
    struct epoll_event e;
    CHECK(epoll_wait(ep, &e, 1, 0) == 0, "readable before any write");
    case_run("MOD EPOLLIN to EPOLLOUT", optin, to_out, EPOLLOUT);
    mod(EPOLLIN);
    CHECK(epoll_wait(ep, &e, 1, 0) == 0, "readable before any write");
    case_run("DEL, then ADD with EPOLLOUT", optin, readd_out, EPOLLOUT);

    /* a one-shot record that fired: the data stays unread, and only the
     * MOD that re-arms it may report it again */
    mod(EPOLLIN | EPOLLONESHOT);
    CHECK(write_full(client, "x", 1) == 1, "write");
    CHECK(epoll_wait(ep, &e, 1, 2000) == 1 && (e.events & EPOLLIN), "the byte not reported");
    CHECK(epoll_wait(ep, &e, 1, 0) == 0, "EPOLLONESHOT reported twice");
    case_run("MOD re-arming EPOLLONESHOT, data unread", optin, rearm_in, EPOLLIN);
    close(ep);
    close(client);
    close(server);
}

int main(void)
{
    alarm(30);
    run(0);
    run(1);
    return 0;
}
