/* A writer whose reader reads nothing stops where it would over kernel TCP,
 * not earlier.  With no buffer size set, the kernel holds the writer's
 * autotuned SO_SNDBUF plus the reader's SO_RCVBUF (4.29 MB with Linux's
 * defaults); a 1 MiB ring refused after 1.1 MB, so that a client writing
 * 4 MB to an echo server before it reads the echo (Python's
 * socket.sendfile() with a timeout) waited for ever.  Each shape runs over
 * kernel TCP first, the reference, then on the fast path:
 *  - a non-blocking writer, nobody reading: the bytes accepted until it is
 *    refused are at least the kernel's (and at most twice), poll() then
 *    says not writable, and the reader gets every byte;
 *  - an echo server that writes back what it reads, and a client that
 *    writes 1.5 times the kernel's hold before reading: blocking writes (a
 *    paced writer must stop pacing once its reader stalls), then
 *    non-blocking writes each waiting in poll() for POLLOUT; every byte
 *    comes back in order;
 *  - one blocking write() of 3 MB, nobody reading, with SO_SNDTIMEO of 1 ms,
 *    then with a signal each millisecond whose handler has no SA_RESTART: the
 *    kernel, with room, takes it whole in one call, and so must a writer
 *    that paces itself (its pause is no wait of the kernel's). */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include "helpers.h"

static long held_unread(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    long held = fill_until_refused(c, 65536);
    struct pollfd p = { .fd = c, .events = POLLOUT };
    CHECK(poll(&p, 1, 0) == 0, "refused, but poll says %#x", p.revents);
    shutdown(c, SHUT_WR);
    static char buf[1 << 16];
    long got = 0;
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0)
        got += n;
    CHECK(n == 0 && got == held, "read back %ld of %ld bytes", got, held);
    close(c);
    close(s);
    return held;
}

static unsigned char pattern(long i)
{
    return (unsigned char)(i * 7 + (i >> 13));
}

/* Writes `total` bytes of the pattern; 0, or -1 when a write waited 3 s. */
static int write_all(int fd, long total, int nonblocking)
{
    static unsigned char buf[100000];
    for (long done = 0; done < total;) {
        size_t n = total - done < (long)sizeof buf ? (size_t)(total - done) : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(done + (long)i);
        ssize_t w = write(fd, buf, n);
        if (w > 0) {
            done += w;
            continue;
        }
        CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "write: %s", strerror(errno));
        if (!nonblocking)
            return -1;   /* SO_SNDTIMEO ran out */
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, 3000) == 0)
            return -1;
    }
    return 0;
}

/* 0: every byte came back in order; -1: the writes waited for ever. */
static int echo_ahead(int optin, long total, int nonblocking)
{
    pid_t server;
    int c = connect_to_forked(optin, echo_server, &server);
    client_switch(c);
    struct timeval tv = { .tv_sec = 3 };
    CHECK(setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    if (nonblocking)
        CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    int r = write_all(c, total, nonblocking);
    if (r == 0) {
        CHECK(fcntl(c, F_SETFL, 0) == 0 && shutdown(c, SHUT_WR) == 0, "shutdown");
        static unsigned char buf[1 << 16];
        long got = 0;
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < n; i++, got++)
                CHECK(buf[i] == pattern(got), "byte %ld differs", got);
        CHECK(n == 0 && got == total, "read back %ld of %ld bytes: %s", got, total, strerror(errno));
    }
    close(c);
    if (r == 0)
        CHECK(child_status(server) == 10 + optin, "echo server: %d", child_status(server));
    else
        kill(server, SIGKILL), waitpid(server, NULL, 0);
    return r;
}

static void on_signal(int sig)
{
    (void)sig;
}

enum { BY_TIMEOUT, BY_SIGNAL };

struct ticker { pthread_t target; int stop; };

/* SIGUSR1 to the writing thread every millisecond until told to stop. */
static void *tick(void *arg)
{
    struct ticker *t = arg;
    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
        pthread_kill(t->target, SIGUSR1);
        usleep(1000);
    }
    return NULL;
}

/* What one write() of `total` bytes returns, nobody reading. */
static long one_write(int optin, long total, int how)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    static char buf[8 << 20];
    struct timeval tv = { .tv_usec = 1000 };
    struct ticker t = { pthread_self(), 0 };
    pthread_t ticker;
    if (how == BY_TIMEOUT)
        CHECK(setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    else
        CHECK(pthread_create(&ticker, NULL, tick, &t) == 0, "thread");
    ssize_t n = write(c, buf, (size_t)total);
    long r = n < 0 ? -errno : n;
    if (how == BY_SIGNAL) {
        __atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
        pthread_join(ticker, NULL);
    }
    close(c);
    close(s);
    return r;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* nothing buffered for the forked servers to copy */
    alarm(60);
    struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    long kernel = held_unread(0), fast = held_unread(1);
    printf("a writer nobody reads from: kernel TCP holds %ld bytes, loopfast %ld (%.2fx)\n",
           kernel, fast, (double)fast / (double)kernel);
    CHECK(fast >= kernel && fast <= 2 * kernel, "loopfast holds %ld, kernel TCP %ld", fast, kernel);

    long ahead = kernel * 3 / 2;
    for (int nonblocking = 0; nonblocking < 2; nonblocking++) {
        const char *how = nonblocking ? "non-blocking writes and poll()" : "blocking writes";
        if (echo_ahead(0, ahead, nonblocking) < 0)
            SKIP("kernel TCP does not take %ld bytes ahead of an echo here (%s)", ahead, how);
        CHECK(echo_ahead(1, ahead, nonblocking) == 0,
              "%s: %ld bytes ahead of an echo waited for ever, as kernel TCP does not", how, ahead);
        printf("%s: %ld bytes ahead of an echo, read back whole, both ways\n", how, ahead);
    }

    for (int how = BY_TIMEOUT; how <= BY_SIGNAL; how++) {
        const char *what = how == BY_TIMEOUT ? "SO_SNDTIMEO 1 ms" : "a signal each ms, no SA_RESTART";
        long total = kernel * 3 / 4, k = one_write(0, total, how), f = one_write(1, total, how);
        printf("one write of %ld bytes, nobody reading, %s: kernel TCP %ld, loopfast %ld\n", total,
               what, k, f);
        if (k != total)
            SKIP("kernel TCP took %ld of %ld bytes in one write here (%s)", k, total, what);
        CHECK(f == total, "%s: one write took %ld of %ld bytes, kernel TCP all", what, f, total);
    }
    return 0;
}
