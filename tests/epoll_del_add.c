/* EPOLL_CTL_DEL then ADD, as redis-benchmark does for every request: a
 * deleted fast registration is never reported, MOD and DEL of it fail with
 * ENOENT, a second ADD works and reports what arrived meanwhile, and a
 * closed descriptor's number reused by another socket starts afresh.  Each
 * step is compared with kernel TCP. */
#include <sys/epoll.h>

#include "helpers.h"

static int wait_events(int ep, struct epoll_event *ev, int max, int ms)
{
    int n;
    do
        n = epoll_wait(ep, ev, max, ms);
    while (n < 0 && errno == EINTR);
    return n;
}

static int add(int ep, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event e = { .events = events, .data.u64 = tag };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

/* Only `tag` may be reported, once, with EPOLLIN; or nothing when tag is 0. */
static void expect(int ep, uint64_t tag, const char *what)
{
    struct epoll_event ev[4];
    int n = wait_events(ep, ev, 4, tag ? 2000 : 10);
    if (!tag) {
        CHECK(n == 0, "%s: %d events, expected none (first tag %llu)", what, n,
              n > 0 ? (unsigned long long)ev[0].data.u64 : 0ull);
        return;
    }
    CHECK(n == 1 && ev[0].data.u64 == tag && (ev[0].events & EPOLLIN),
          "%s: %d events (tag %llu), expected tag %llu readable", what, n,
          n > 0 ? (unsigned long long)ev[0].data.u64 : 0ull, (unsigned long long)tag);
}

static void drain(int fd, size_t want)
{
    char buf[64];
    CHECK(want <= sizeof buf && read_full(fd, buf, want) == (ssize_t)want, "read %zu", want);
}

static void run(int optin)
{
    int c, s, ep = epoll_create1(EPOLL_CLOEXEC);
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(add(ep, s, EPOLLIN, 1) == 0, "add: %s", strerror(errno));

    for (int round = 0; round < 100; round++) {
        CHECK(write_full(c, "ping", 4) == 4, "write");
        expect(ep, 1, "registered, data sent");
        drain(s, 4);
        CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0, "del: %s", strerror(errno));
        if (round % 4 == 0) {   /* data while deleted: never reported */
            CHECK(write_full(c, "xy", 2) == 2, "write while deleted");
            expect(ep, 0, "deleted, data sent");
        }
        struct epoll_event m = { .events = EPOLLIN };
        errno = 0;
        CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &m) < 0 && errno == ENOENT, "MOD of a deleted fd: %s",
              strerror(errno));
        errno = 0;
        CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) < 0 && errno == ENOENT, "DEL of a deleted fd: %s",
              strerror(errno));
        CHECK(add(ep, s, EPOLLIN, 1) == 0, "re-add: %s", strerror(errno));
        errno = 0;
        CHECK(add(ep, s, EPOLLIN, 1) < 0 && errno == EEXIST, "second ADD: %s", strerror(errno));
        if (round % 4 == 0) {   /* what came while deleted is reported now */
            expect(ep, 1, "re-added with data waiting");
            drain(s, 2);
        }
        expect(ep, 0, "re-added, nothing waiting");
    }

    /* The number goes to another socket after a close of the deleted one. */
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0, "last del");
    int num = s;
    close(s);
    close(c);
    int c2, s2;
    fast_pair(AF_INET, optin, &c2, &s2);
    if (s2 != num && c2 == num) {   /* make the server end take the number */
        int t = s2;
        s2 = c2;
        c2 = t;
    }
    CHECK(add(ep, s2, EPOLLIN, 2) == 0, "add after reuse: %s", strerror(errno));
    expect(ep, 0, "new socket, nothing sent");
    CHECK(write_full(c2, "z", 1) == 1, "write to new");
    expect(ep, 2, "new socket, data sent");
    drain(s2, 1);
    close(s2);
    close(c2);
    close(ep);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    printf("ok: DEL/ADD cycles match kernel TCP\n");
    return 0;
}
