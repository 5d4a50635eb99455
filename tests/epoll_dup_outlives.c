/* An epoll registration outlives the number it was made with while another
 * number still names the socket (epoll(7), Q6: the kernel keys it by the
 * open file and the number): after dup() and close() of the registered
 * number the set still reports the socket with the registration's data,
 * the closed number is EBADF to epoll_ctl, the surviving number can be
 * registered beside it, the registration follows through a second dup and
 * close, and goes with the file's last number.  Registered before the
 * switch (pending) and after it (fast), level- and edge-triggered; each
 * step is the same over kernel TCP (optin 0) and on the rings (optin 1). */
#include <sys/epoll.h>

#include "helpers.h"

enum { TAG_OLD = 7, TAG_NEW = 8, TAG_REUSED = 9 };

/* The tags reported within `ms` (a bit each), at most `calls` waits. */
static unsigned tags_seen(int ep, int ms, int calls)
{
    unsigned seen = 0;
    double end = seconds_now() + ms / 1000.0;
    for (int i = 0; i < calls && seconds_now() < end; i++) {
        struct epoll_event ev[8];
        int n = epoll_wait(ep, ev, 8, ms);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n >= 0, "epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            CHECK(ev[k].data.u64 < 32, "a tag never registered: %llu",
                  (unsigned long long)ev[k].data.u64);
            seen |= 1u << ev[k].data.u64;
        }
        if (n > 0)
            break;
    }
    return seen;
}

static void send_byte(int c, int fd_reader, int ep, unsigned want, const char *what)
{
    CHECK(write_full(c, "x", 1) == 1, "%s: write", what);
    unsigned seen = tags_seen(ep, 2000, 50);
    CHECK(seen == want, "%s: tags %#x reported, expected %#x", what, seen, want);
    char b;
    CHECK(read_full(fd_reader, &b, 1) == 1 && b == 'x', "%s: read", what);
}

static void run(int optin, int before_switch, uint32_t et)
{
    int c, s, ep = epoll_create1(EPOLL_CLOEXEC);
    if (before_switch)
        close(accepted_pair(AF_INET, optin, &c, &s));
    struct epoll_event reg = { .events = EPOLLIN | et, .data.u64 = TAG_OLD };
    if (!before_switch) {
        fast_pair(AF_INET, optin, &c, &s);
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &reg) == 0, "add: %s", strerror(errno));
    } else {
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &reg) == 0, "add: %s", strerror(errno));
        char b;   /* the switch, after the registration */
        for (int i = 0; i < 10 && (i == 0 || (optin && loopfast_fd_is_fast(s) != 1)); i++) {
            CHECK(write_full(c, "a", 1) == 1 && read_full(s, &b, 1) == 1, "exchange c->s");
            CHECK(write_full(s, "b", 1) == 1 && read_full(c, &b, 1) == 1, "exchange s->c");
        }
        CHECK(!optin || loopfast_fd_is_fast(s) == 1, "pair not fast");
        tags_seen(ep, 10, 1);   /* what the exchange left to report */
    }

    int d = dup(s), old = s;
    CHECK(d >= 0, "dup: %s", strerror(errno));
    CHECK(close(s) == 0, "close of the registered number");
    send_byte(c, d, ep, 1u << TAG_OLD, "registered number closed, a dup kept");

    errno = 0;
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, old, NULL) < 0 && errno == EBADF,
          "DEL by the closed number: %s", strerror(errno));

    struct epoll_event more = { .events = EPOLLIN | et, .data.u64 = TAG_NEW };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, d, &more) == 0, "ADD of the surviving number: %s",
          strerror(errno));
    send_byte(c, d, ep, 1u << TAG_OLD | 1u << TAG_NEW, "both registrations");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL) == 0, "DEL of the surviving number: %s",
          strerror(errno));
    send_byte(c, d, ep, 1u << TAG_OLD, "the survivor's own registration deleted");

    /* the closed number given to another socket: a registration of its own */
    int c2, s2;
    close(accepted_pair(AF_INET, optin, &c2, &s2));
    int reused = s2 == old ? s2 : dup2(s2, old);
    CHECK(reused == old, "dup2 onto the old number: %s", strerror(errno));
    if (s2 != old)
        close(s2);
    struct epoll_event third = { .events = EPOLLIN | et, .data.u64 = TAG_REUSED };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, old, &third) == 0, "ADD of the reused number: %s",
          strerror(errno));
    tags_seen(ep, 10, 1);
    send_byte(c2, old, ep, 1u << TAG_REUSED, "the reused number's socket");
    send_byte(c, d, ep, 1u << TAG_OLD, "the first socket, beside it");
    close(old);
    close(c2);

    int d2 = dup(d);
    CHECK(d2 >= 0 && close(d) == 0, "second dup and close");
    send_byte(c, d2, ep, 1u << TAG_OLD, "after the second dup and close");

    CHECK(close(d2) == 0, "close of the last number");
    CHECK(write_full(c, "x", 1) == 1, "write after the last close");
    unsigned seen = tags_seen(ep, 100, 3);
    CHECK(seen == 0, "the file closed: tags %#x still reported", seen);
    char b;
    ssize_t r;
    do
        r = read(c, &b, 1);
    while (r < 0 && errno == EINTR);
    CHECK(r == 0 || (r < 0 && errno == ECONNRESET), "the peer's read after the last close: %zd (%s)",
          r, r < 0 ? strerror(errno) : "");
    close(c);
    close(ep);
}

int main(void)
{
    alarm(60);
    for (int optin = 0; optin < 2; optin++)
        for (int before = 0; before < 2; before++) {
            run(optin, before, 0);
            run(optin, before, EPOLLET);
        }
    printf("ok: a registration outlives its number as over kernel TCP\n");
    return 0;
}
