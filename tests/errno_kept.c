/* A call that succeeds leaves errno as it was, as glibc's do: gRPC's client
 * makes a non-blocking connect(), registers the socket with epoll_ctl() and
 * only then reads errno for EINPROGRESS; loopfast's epoll_ctl, succeeding,
 * had left ENOENT there (from an attempt of its own), and no gRPC client
 * could connect, to any server (a helper's sweep).  Each call below, on a
 * pending, a fast and a plain socket, is made with errno set to a value no
 * call sets, and must leave it so when it succeeds; kernel TCP first, as
 * the reference.  Also a blocking read and a blocking write that wait
 * (their sleeps time out and retry inside loopfast): nuttcp's writer tests
 * errno after its last successful write, and a wait's ETIMEDOUT or EAGAIN
 * left there failed its run 8 times in 10. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>

#include "helpers.h"

#define MARK 4242   /* no errno value */

static int failures;

/* r: the call's result; ok: whether that result is a success. */
static void kept(const char *what, const char *mode, long r, int ok)
{
    int e = errno;
    if (ok && e != MARK) {
        printf("FAIL %s, %s: returned %ld and left errno %d (%s)\n", mode, what, r, e, strerror(e));
        failures++;
    }
}

#define TRY(what, call, ok_if)                                                                  \
    do {                                                                                        \
        errno = MARK;                                                                           \
        long r_ = (long)(call);                                                                 \
        kept(what, mode, r_, (ok_if));                                                          \
    } while (0)

static void calls_on(int fd, int peer, const char *mode)
{
    char b[64] = "x";
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
    TRY("epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), r_ == 0);
    TRY("epoll_ctl MOD", epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev), r_ == 0);
    TRY("epoll_wait", epoll_wait(ep, &ev, 1, 0), r_ >= 0);
    TRY("epoll_ctl DEL", epoll_ctl(ep, EPOLL_CTL_DEL, fd, &ev), r_ == 0);
    close(ep);
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
    TRY("poll", poll(&p, 1, 0), r_ >= 0);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    struct timeval tv = { 0, 0 };
    TRY("select", select(fd + 1, &rs, NULL, NULL, &tv), r_ >= 0);
    TRY("write", write(fd, b, 1), r_ == 1);
    TRY("peer read", read(peer, b, sizeof b), r_ > 0);
    TRY("peer send", send(peer, b, 1, 0), r_ == 1);
    TRY("recv", recv(fd, b, sizeof b, 0), r_ > 0);
    TRY("recv MSG_DONTWAIT, nothing there", recv(fd, b, sizeof b, MSG_DONTWAIT), r_ < 0 && 0);
    int n = 0;
    TRY("ioctl FIONREAD", ioctl(fd, FIONREAD, &n), r_ == 0);
    int one = 1;
    TRY("setsockopt", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one), r_ == 0);
    socklen_t len = sizeof one;
    TRY("getsockopt", getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, &len), r_ == 0);
    TRY("fcntl F_GETFL", fcntl(fd, F_GETFL), r_ >= 0);
    int d;
    TRY("dup", d = dup(fd), r_ >= 0);
    TRY("close of a dup", close(d), r_ == 0);
}

#define BIG (16u << 20)
static char big[BIG];

/* The other end: every 300 ms (the futex phase of a wait is 200) a byte,
 * for a poll, a select, an epoll_wait and a read that wait, then
 * everything the blocked write sends. */
static void *slow_peer(void *arg)
{
    int peer = *(int *)arg;
    for (int i = 0; i < 4; i++) {   /* poll, select, epoll_wait, read */
        usleep(300000);
        if (write_full(peer, "z", 1) != 1)
            return (void *)1;
    }
    usleep(300000);
    static char sink[1 << 16];
    for (size_t got = 0; got < BIG;) {
        ssize_t n = read(peer, sink, sizeof sink);
        if (n <= 0)
            return (void *)1;
        got += (size_t)n;
    }
    return NULL;
}

static void waits_on(int fd, int peer, const char *mode)
{
    pthread_t t;
    void *bad;
    char b;
    CHECK(pthread_create(&t, NULL, slow_peer, &peer) == 0, "thread");
    struct pollfd p = { .fd = fd, .events = POLLIN };
    TRY("a poll that waits", poll(&p, 1, 5000), r_ == 1);
    CHECK(read(fd, &b, 1) == 1, "read");
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(fd, &rs);
    struct timeval tv = { 5, 0 };
    TRY("a select that waits", select(fd + 1, &rs, NULL, NULL, &tv), r_ == 1);
    CHECK(read(fd, &b, 1) == 1, "read");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl");
    TRY("an epoll_wait that waits", epoll_wait(ep, &ev, 1, 5000), r_ == 1);
    close(ep);
    CHECK(read(fd, &b, 1) == 1, "read");
    TRY("a blocking read that waits", read(fd, &b, 1), r_ == 1);
    TRY("a blocking write that waits for room", write(fd, big, BIG), r_ > 0);
    CHECK(pthread_join(t, &bad) == 0 && !bad, "%s: the slow peer failed", mode);
}

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);

    int bc = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bc >= 0 && (!optin || opt_in(bc) == 0), "socket");
    TRY("a blocking connect", connect(bc, (struct sockaddr *)&addr, len), r_ == 0);
    int bs;
    TRY("its accept", bs = accept(l, NULL, NULL), r_ >= 0);
    close(bc);
    close(bs);

    /* pending: a non-blocking connect, then epoll_ctl, as gRPC does */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(c >= 0 && (!optin || opt_in(c) == 0), "socket");
    errno = 0;
    int r = connect(c, (struct sockaddr *)&addr, len);
    int connect_errno = errno;
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
    int added = epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
    if (r < 0 && added == 0 && errno != connect_errno) {
        printf("FAIL %s: connect's %s became %s after a successful epoll_ctl\n", mode,
               strerror(connect_errno), strerror(errno));
        failures++;
    }
    close(ep);
    int s;
    TRY("accept", s = accept(l, NULL, NULL), r_ >= 0);
    struct pollfd p = { .fd = c, .events = POLLOUT };
    CHECK(poll(&p, 1, 5000) == 1, "connected");
    CHECK(fcntl(c, F_SETFL, 0) == 0, "blocking");
    calls_on(c, s, mode);   /* pending, then switched on the way */
    char b;
    for (int i = 0; i < 3; i++)
        CHECK(write_full(c, "x", 1) == 1 && read_full(s, &b, 1) == 1 && write_full(s, "y", 1) == 1 &&
                  read_full(c, &b, 1) == 1,
              "exchange");
    CHECK(loopfast_fd_is_fast(c) == optin, "%s: fast %d", mode, loopfast_fd_is_fast(c));
    calls_on(c, s, mode);   /* fast */
    calls_on(s, c, mode);
    waits_on(c, s, mode);
    TRY("close", close(c), r_ == 0);
    TRY("close of the last end", close(s), r_ == 0);
    TRY("close of the listener", close(l), r_ == 0);
}

int main(void)
{
    alarm(30);
    signal(SIGPIPE, SIG_IGN);
    run(0);
    int kernel = failures;
    run(1);
    printf("%d calls left errno changed over kernel TCP, %d with loopfast\n", kernel,
           failures - kernel);
    return failures != 0;
}
