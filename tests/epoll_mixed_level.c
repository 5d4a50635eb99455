/* A set that holds fast sockets, always ready, beside entries whose
 * readiness the kernel tells (a pipe, a connection not switched yet, both
 * ends of it in the same set): every level-triggered wait reports all of
 * them, as over kernel TCP, not the kernel's ones once in 8 calls (the
 * fuzzer's "both ends in one set", tests/diff_random.c -a 8).  Each wait is
 * compared with what kernel TCP reports for the same steps (optin 0). */
#include <fcntl.h>
#include <sys/epoll.h>

#include "helpers.h"

enum { MAX_TAGS = 8 };

static void add(int ep, int fd, uint64_t tag)
{
    struct epoll_event e = { .events = EPOLLOUT, .data.u64 = tag };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0, "add %llu: %s", (unsigned long long)tag,
          strerror(errno));
}

/* Every one of `calls` waits reports exactly the tags in `want`. */
static void every_wait(int ep, unsigned want, int calls, const char *what)
{
    for (int i = 0; i < calls; i++) {
        struct epoll_event ev[MAX_TAGS];
        int n;
        do
            n = epoll_wait(ep, ev, MAX_TAGS, i == 0 ? 1000 : 0);
        while (n < 0 && errno == EINTR);
        unsigned seen = 0;
        for (int k = 0; k < n; k++) {
            CHECK(ev[k].data.u64 < MAX_TAGS && !(seen & 1u << ev[k].data.u64),
                  "%s: tag %llu unknown or twice", what, (unsigned long long)ev[k].data.u64);
            seen |= 1u << ev[k].data.u64;
        }
        CHECK(seen == want, "%s: wait %d reported %#x, expected %#x", what, i, seen, want);
    }
}

static void run(int optin)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), c1, s1, c2, s2, p[2];
    CHECK(ep >= 0 && pipe(p) == 0, "epoll_create1, pipe");
    fast_pair(AF_INET, optin, &c1, &s1);
    add(ep, c1, 0);
    add(ep, s1, 1);
    every_wait(ep, 0x3, 20, "a fast pair");

    add(ep, p[1], 2);
    every_wait(ep, 0x7, 20, "a pipe beside it");

    /* a new connection, no byte exchanged: not switched, the kernel's to tell */
    close(accepted_pair(AF_INET, optin, &c2, &s2));
    add(ep, c2, 3);
    add(ep, s2, 4);
    every_wait(ep, 0x1f, 20, "both ends of a new connection too");

    /* the pipe full: not writable, and then writable again once read */
    CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    static char buf[65536];
    while (write(p[1], buf, sizeof buf) > 0)
        ;
    every_wait(ep, 0x1b, 20, "the pipe full");
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    while (read(p[0], buf, sizeof buf) > 0)
        ;
    every_wait(ep, 0x1f, 20, "the pipe emptied");

    for (int fd = 0; fd < 2; fd++)
        close(p[fd]);
    close(c1), close(s1), close(c2), close(s2), close(ep);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    printf("ok: level-triggered kernel entries beside ready fast ones, every wait\n");
    return 0;
}
