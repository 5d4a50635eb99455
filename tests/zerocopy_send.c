/* MSG_ZEROCOPY as over kernel TCP: with SO_ZEROCOPY on, each send's
 * completion comes on the error queue (origin ZEROCOPY, code COPIED over
 * loopback, consecutive sends merged into one range of ids), POLLERR and
 * EPOLLERR say so (also to an epoll set made before the send), and reading
 * it empties the queue; without SO_ZEROCOPY nothing comes; a control buffer
 * too small is truncated (MSG_CTRUNC); sends made on TCP before the switch
 * keep their ids and the ring's follow them.  A program waits for these
 * completions before it reuses its buffers: on the rings none came, and it
 * waited for good.  IPv4 and IPv6, kernel TCP and both ends fast: the
 * transcripts must be the same. */
#include <time.h>   /* before linux/errqueue.h */
#include <linux/errqueue.h>
#include <sys/epoll.h>

#include "helpers.h"
#include "transcript.h"

#define MSG 4096

static void note_errqueue(int fd, size_t control)
{
    char ctl[256], *buf = ctl;
    struct msghdr m = { .msg_control = buf, .msg_controllen = control };
    ssize_t n = recvmsg(fd, &m, MSG_ERRQUEUE);
    note_result("errqueue", n);
    if (n < 0)
        return;
    note("/%s%s", m.msg_flags & MSG_ERRQUEUE ? "Q" : "", m.msg_flags & MSG_CTRUNC ? "T" : "");
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    if (!cm) {
        note("/none");
        return;
    }
    note("/%d.%d.%zu", cm->cmsg_level, cm->cmsg_type, (size_t)cm->cmsg_len);
    if (cm->cmsg_len < CMSG_LEN(sizeof(struct sock_extended_err)))
        return;
    struct sock_extended_err ee;
    memcpy(&ee, CMSG_DATA(cm), sizeof ee);
    note("/o%d.c%d.e%d:%u-%u", ee.ee_origin, ee.ee_code, ee.ee_errno, ee.ee_info, ee.ee_data);
}

static void note_pollerr(const char *what, int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = 0 };
    int n = poll(&p, 1, ms);
    note(" %s:%d%s", what, n, n == 1 && (p.revents & POLLERR) ? "E" : "");
}

static void note_epoll(const char *what, int ep, int ms)
{
    struct epoll_event e;
    int n = epoll_wait(ep, &e, 1, ms);
    note(" %s:%d%s", what, n, n == 1 && (e.events & EPOLLERR) ? "E" : "");
}

static void zc_send(int fd, int times)
{
    static char buf[MSG];
    memset(buf, 'z', sizeof buf);
    for (int i = 0; i < times; i++)
        note_result("send", send(fd, buf, sizeof buf, MSG_ZEROCOPY));
}

static void drain(int s, size_t want)
{
    static char buf[1 << 16];
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(s, buf, sizeof buf);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    note(" peer-got:%zu", got);
}

/* Two zerocopy sends, their notice (waited for up to poll_ms), the peer's
 * bytes; then both ends close and the transcript is the case's. */
static void last_sends(int c, int s, int poll_ms, char *out, size_t size)
{
    zc_send(c, 2);
    note_pollerr("poll", c, poll_ms);
    note_errqueue(c, 256);
    drain(s, 2 * MSG);
    case_end(c, s, out, size);
}

/* On a connection that has switched: notices, readiness, the queue's end. */
static void switched_case(int family, int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s, on = 1;
    fast_pair(family, optin, &c, &s);
    CHECK(setsockopt(c, SOL_SOCKET, SO_ZEROCOPY, &on, sizeof on) == 0, "SO_ZEROCOPY: %s",
          strerror(errno));
    int ep = epoll_create1(0);
    struct epoll_event e = { .events = EPOLLIN };   /* EPOLLERR comes unasked */
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c, &e) == 0, "epoll: %s", strerror(errno));
    note_epoll("epoll-before", ep, 0);
    zc_send(c, 3);
    note_pollerr("poll", c, 1000);
    note_epoll("epoll", ep, 1000);
    note_errqueue(c, 256);
    note_pollerr("poll-after", c, 0);
    note_epoll("epoll-after", ep, 0);
    note_errqueue(c, 256);
    zc_send(c, 1);   /* the set made before it hears it */
    note_epoll("epoll-again", ep, 1000);
    note_errqueue(c, CMSG_SPACE(4));   /* too small a buffer: truncated */
    note_errqueue(c, 256);
    drain(s, 4 * MSG);
    close(ep);
    case_end(c, s, out, size);
}

/* MSG_ZEROCOPY without SO_ZEROCOPY: the kernel ignores the flag. */
static void not_enabled_case(int family, int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(family, optin, &c, &s);
    last_sends(c, s, 200, out, size);
}

/* A zerocopy send before the switch (the client's first call, on TCP):
 * the kernel numbers it; the ring's sends after the switch follow. */
static void before_switch_case(int family, int optin, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(family, optin, &addr, &len), on = 1;
    int c = connect_to(&addr, len, optin);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept: %s", strerror(errno));
    close(l);
    CHECK(setsockopt(c, SOL_SOCKET, SO_ZEROCOPY, &on, sizeof on) == 0, "SO_ZEROCOPY");
    char b;
    note_result("first", send(c, "a", 1, MSG_ZEROCOPY));
    CHECK(read_full(s, &b, 1) == 1 && write_full(s, "b", 1) == 1 && read_full(c, &b, 1) == 1,
          "first exchange");
    note_pollerr("poll", c, 1000);
    note_errqueue(c, 256);
    CHECK(write_full(c, "c", 1) == 1 && read_full(s, &b, 1) == 1 && write_full(s, "d", 1) == 1 &&
          read_full(c, &b, 1) == 1, "second exchange");
    if (optin)
        CHECK(loopfast_fd_is_fast(c) == 1, "not fast after two exchanges");
    last_sends(c, s, 1000, out, size);
}

int main(void)
{
    alarm(60);
    static char kernel[4096], fast[4096];
    char label[128];
    int bad = 0;
    static const int families[] = { AF_INET, AF_INET6 };
    void (*cases[])(int, int, char *, size_t) = { switched_case, not_enabled_case,
                                                  before_switch_case };
    static const char *names[] = { "zerocopy sends on the rings", "without SO_ZEROCOPY",
                                   "one send before the switch" };
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < 3; k++) {
            cases[k](families[f], 0, kernel, sizeof kernel);
            cases[k](families[f], 1, fast, sizeof fast);
            snprintf(label, sizeof label, "%s, %s", names[k], f ? "IPv6" : "IPv4");
            bad += transcripts_differ(label, kernel, fast);
        }
    return bad ? 1 : 0;
}
