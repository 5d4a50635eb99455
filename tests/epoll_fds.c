/* Registering fast sockets in an epoll set costs no descriptor, as over
 * kernel TCP: the set holds the socket and its doorbells themselves, not an
 * inner epoll per socket (before: one more descriptor per registration).
 * Every registration still reports its data, and is gone after DEL + close. */
#include <dirent.h>
#include <sys/epoll.h>

#include "helpers.h"

#define CONNS 40

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void run(int optin)
{
    int c[CONNS], s[CONNS], ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < CONNS; i++)
        fast_pair(AF_INET, optin, &c[i], &s[i]);
    int before = open_fds();
    for (int i = 0; i < CONNS; i++) {
        struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s[i], &e) == 0, "add %d: %s", i, strerror(errno));
    }
    int after = open_fds();
    CHECK(after == before, "%s: %d registrations cost %d descriptors", optin ? "loopfast" : "kernel",
          CONNS, after - before);
    for (int i = 0; i < CONNS; i += 3) {
        char b;
        CHECK(write_full(c[i], "d", 1) == 1, "write %d", i);
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, 2000);
        CHECK(n == 1 && out[0].data.u64 == (uint64_t)i && (out[0].events & EPOLLIN),
              "connection %d: %d events, first %llu", i, n,
              n > 0 ? (unsigned long long)out[0].data.u64 : 0ull);
        CHECK(read_full(s[i], &b, 1) == 1 && b == 'd', "read %d", i);
    }
    for (int i = 0; i < CONNS; i++) {
        CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s[i], NULL) == 0, "del %d", i);
        close(s[i]);
        close(c[i]);
    }
    struct epoll_event out[4];
    CHECK(epoll_wait(ep, out, 4, 50) == 0, "events after every socket was closed");
    close(ep);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    printf("ok: registrations cost no descriptor\n");
    return 0;
}
