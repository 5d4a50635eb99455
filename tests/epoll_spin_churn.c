/* Another thread changes the set while epoll_wait spins on it.  A waiter
 * thread sits in epoll_wait on four fast connections, nothing ready; some
 * 0-80 us later (mostly inside the spin) the main thread writes to one,
 * MODs one and writes to another, DELs one and writes to it, or closes one
 * (and writes to another), and a wait elsewhere right after the close
 * releases what it left (reap.c): the waiter must report exactly what the
 * kernel would, nothing of a deleted or closed descriptor.  Over kernel TCP
 * and with loopfast.  The spin is made long (2 ms) so that most closes land
 * in it: a spin that watched the rings without the epoll lock and without
 * holding references to the sockets (tried for issue 11) crashed here in
 * every run (SEGV in its ring reads under ASan).  Left out: a MOD to
 * EPOLLOUT while the waiter sleeps in the kernel, which loopfast does not
 * report yet (the waiter hangs past its timeout). */
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

#define CONNS 4
#define ROUNDS 250
#define QUIET_MS 30       /* a wait that must report nothing */

static int ep, ep_other, cl[CONNS], sv[CONNS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go, done, stop, wait_ms;
static int got_n;
static struct epoll_event got[8];

static void *waiter(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!go && !stop)
            pthread_cond_wait(&cv, &mu);
        int ms = wait_ms;
        go = 0;
        pthread_mutex_unlock(&mu);
        if (stop)
            return NULL;
        struct epoll_event ev[8];
        int n;
        do
            n = epoll_wait(ep, ev, 8, ms);
        while (n < 0 && errno == EINTR);
        pthread_mutex_lock(&mu);
        got_n = n;
        memcpy(got, ev, sizeof ev);
        done = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
}

/* Starts one wait; returns once the waiter is on its way into it. */
static void start_wait(int ms)
{
    pthread_mutex_lock(&mu);
    wait_ms = ms;
    go = 1;
    done = 0;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int end_wait(void)
{
    pthread_mutex_lock(&mu);
    while (!done)
        pthread_cond_wait(&cv, &mu);
    int n = got_n;
    pthread_mutex_unlock(&mu);
    return n;
}

static void pause_us(unsigned us)
{
    struct timespec t = { 0, (long)us * 1000 };
    nanosleep(&t, NULL);
}

static void add(int i, uint32_t events)
{
    struct epoll_event e = { .events = events, .data.u64 = (uint64_t)i + 1 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[i], &e) == 0, "add %d: %s", i, strerror(errno));
}

static void mod(int i, uint32_t events)
{
    struct epoll_event e = { .events = events, .data.u64 = (uint64_t)i + 1 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, sv[i], &e) == 0, "mod %d: %s", i, strerror(errno));
}

/* The wait reported exactly connection i with `events`, or nothing (i < 0). */
static void expect(int n, int i, uint32_t events, const char *what, int round)
{
    if (i < 0) {
        CHECK(n == 0, "round %d, %s: %d events, expected none (first tag %llu)", round, what, n,
              n > 0 ? (unsigned long long)got[0].data.u64 : 0ull);
        return;
    }
    CHECK(n == 1 && got[0].data.u64 == (uint64_t)i + 1 && got[0].events == events,
          "round %d, %s: %d events (tag %llu, events %#x), expected tag %d events %#x", round, what,
          n, n > 0 ? (unsigned long long)got[0].data.u64 : 0ull, n > 0 ? got[0].events : 0u, i + 1,
          events);
}

/* A new pair: small writes must not wait for a delayed ACK (Nagle). */
static void pair(int optin, int i)
{
    int one = 1;
    fast_pair(AF_INET, optin, &cl[i], &sv[i]);
    CHECK(setsockopt(cl[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY");
    add(i, EPOLLIN);
}

static void drain(int i)
{
    char b;
    CHECK(read_full(sv[i], &b, 1) == 1, "drain %d", i);
}

static void run(int optin)
{
    ep = epoll_create1(EPOLL_CLOEXEC);
    ep_other = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < CONNS; i++) {
        pair(optin, i);
    }
    pthread_t t;
    stop = 0;
    CHECK(pthread_create(&t, NULL, waiter, NULL) == 0, "pthread_create");
    uint64_t rng = 88172645463325252ull;
    for (int round = 0; round < ROUNDS; round++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int i = (int)(rng % CONNS), j = (i + 1) % CONNS, kind = (int)((rng >> 8) % 5);
        unsigned delay = (unsigned)(rng >> 16) % 80;
        start_wait(kind == 2 || kind == 3 ? QUIET_MS : 5000);
        pause_us(delay);
        switch (kind) {
        case 0:   /* data arrives while it spins */
            CHECK(write_full(cl[i], "d", 1) == 1, "write");
            expect(end_wait(), i, EPOLLIN, "data", round);
            drain(i);
            break;
        case 1:   /* another descriptor modified while it spins, then data */
            mod(j, EPOLLIN | EPOLLRDHUP);
            CHECK(write_full(cl[i], "d", 1) == 1, "write");
            expect(end_wait(), i, EPOLLIN, "MOD of another, then data", round);
            drain(i);
            mod(j, EPOLLIN);
            break;
        case 2:   /* deleted, then data: never reported */
            CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, sv[i], NULL) == 0, "del: %s", strerror(errno));
            CHECK(write_full(cl[i], "d", 1) == 1, "write");
            expect(end_wait(), -1, 0, "DEL then data", round);
            drain(i);
            add(i, EPOLLIN);
            break;
        case 3:   /* closed while it spins (its number may be taken next) */
        case 4:   /* ... and data on another */
            close(sv[i]);
            close(cl[i]);
            /* a wait elsewhere releases what the close left (reap.c) while
             * the waiter may still spin */
            struct epoll_event none;
            epoll_wait(ep_other, &none, 1, 1);
            if (kind == 4)
                CHECK(write_full(cl[j], "d", 1) == 1, "write");
            int n = end_wait();
            if (kind == 4) {
                CHECK(n == 1 && got[0].data.u64 == (uint64_t)j + 1, "round %d, close and data: %d events",
                      round, n);
                drain(j);
            } else
                expect(n, -1, 0, "closed", round);
            pair(optin, i);
            break;
        }
    }
    pthread_mutex_lock(&mu);
    stop = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    for (int i = 0; i < CONNS; i++) {
        close(sv[i]);
        close(cl[i]);
    }
    close(ep);
    close(ep_other);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!getenv("LOOPFAST_SPIN_US")) {
        /* a long spin, so that the closes land inside it: read at start */
        setenv("LOOPFAST_SPIN_US", "2000", 1);
        execv("/proc/self/exe", argv);
        FAIL("execv: %s", strerror(errno));
    }
    alarm(60);
    run(0);
    run(1);
    printf("ok: changes made while epoll_wait spins match kernel TCP\n");
    return 0;
}
