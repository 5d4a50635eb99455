/* Readiness of fast descriptors mixed with pipes, eventfd and timerfd in one
 * set: poll, ppoll, select, pselect and epoll (level, EPOLLET, EPOLLONESHOT,
 * EPOLLRDHUP, EPOLLOUT) report exactly what the kernel would. */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/timerfd.h>

#include "helpers.h"

static int c, s, p[2], ev, tfd;

static int epoll_ready(int ep, int fd, uint32_t *events)
{
    struct epoll_event out[8];
    int n = epoll_wait(ep, out, 8, 0), hit = 0;
    *events = 0;
    for (int i = 0; i < n; i++)
        if (out[i].data.fd == fd) {
            hit++;
            *events |= out[i].events;
        }
    return hit;
}

static void test_poll_family(void)
{
    struct pollfd f[4] = { { s, POLLIN, 0 }, { p[0], POLLIN, 0 }, { ev, POLLIN, 0 }, { tfd, POLLIN, 0 } };
    CHECK(poll(f, 4, 0) == 0, "nothing ready yet");
    CHECK(write_full(c, "x", 1) == 1, "write");
    CHECK(poll(f, 4, 1000) == 1 && f[0].revents == POLLIN, "poll: fast fd readable");
    struct timespec ts = { 1, 0 };
    CHECK(ppoll(f, 4, &ts, NULL) == 1 && f[0].revents == POLLIN, "ppoll");
    uint64_t one = 1;
    CHECK(write(ev, &one, 8) == 8 && write(p[1], "y", 1) == 1, "other fds");
    CHECK(poll(f, 4, 0) == 3, "poll: three ready");
    fd_set r;
    FD_ZERO(&r);
    FD_SET(s, &r); FD_SET(p[0], &r); FD_SET(ev, &r); FD_SET(tfd, &r);
    struct timeval tv = { 1, 0 };
    CHECK(select(tfd + 1, &r, NULL, NULL, &tv) == 3 && FD_ISSET(s, &r) && !FD_ISSET(tfd, &r), "select");
    char b[8];
    read(s, b, 1);
    read(p[0], b, 1);
    read(ev, &one, 8);
    FD_ZERO(&r);
    FD_SET(s, &r);
    fd_set w;
    FD_ZERO(&w);
    FD_SET(s, &w);
    CHECK(pselect(s + 1, &r, &w, NULL, &ts, NULL) == 1 && !FD_ISSET(s, &r) && FD_ISSET(s, &w),
          "pselect: writable only");
    /* a sleeping poller is woken by the peer, through the doorbell */
    struct itimerspec it = { { 0, 0 }, { 0, 300000000 } };
    timerfd_settime(tfd, 0, &it, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(100000);
        write_full(c, "z", 1);
        _exit(0);
    }
    f[0].revents = 0;
    CHECK(poll(f, 4, 5000) == 1 && f[0].revents == POLLIN, "woken poller: fast fd first");
    child_status(pid);
    read(s, b, 1);
    CHECK(poll(f, 4, 5000) == 1 && f[3].revents == POLLIN, "then the timer");
}

static void test_epoll(void)
{
    int ep = epoll_create1(0);
    struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = s };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e) == 0, "add");
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e) == -1 && errno == EEXIST, "add twice: EEXIST");
    e.data.fd = p[0];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e) == 0, "add pipe");
    uint32_t got;
    CHECK(epoll_ready(ep, s, &got) == 0, "nothing yet");
    write_full(c, "abc", 3);
    CHECK(epoll_ready(ep, s, &got) == 1 && got == EPOLLIN, "level: readable");
    CHECK(epoll_ready(ep, s, &got) == 1, "level: still readable");
    char b[8];
    read(s, b, 3);
    CHECK(epoll_ready(ep, s, &got) == 0, "level: drained");
    /* edge-triggered: one report per arrival */
    e.events = EPOLLIN | EPOLLET;
    e.data.fd = s;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e) == 0, "mod ET");
    write_full(c, "d", 1);
    CHECK(epoll_ready(ep, s, &got) == 1, "ET: first report");
    CHECK(epoll_ready(ep, s, &got) == 0, "ET: no second report without new data");
    write_full(c, "e", 1);
    CHECK(epoll_ready(ep, s, &got) == 1, "ET: new data, new report");
    read(s, b, 2);
    /* one-shot: one report until re-armed */
    e.events = EPOLLIN | EPOLLONESHOT;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e) == 0, "mod oneshot");
    write_full(c, "f", 1);
    CHECK(epoll_ready(ep, s, &got) == 1 && epoll_ready(ep, s, &got) == 0, "oneshot");
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e) == 0 && epoll_ready(ep, s, &got) == 1, "re-armed");
    read(s, b, 1);
    /* EPOLLOUT while the ring has room */
    e.events = EPOLLOUT;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e) == 0 && epoll_ready(ep, s, &got) == 1 && got == EPOLLOUT,
          "EPOLLOUT");
    /* a sleeping epoll_wait is woken by the peer */
    e.events = EPOLLIN | EPOLLRDHUP;
    epoll_ctl(ep, EPOLL_CTL_MOD, s, &e);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(100000);
        write_full(c, "g", 1);
        usleep(100000);
        shutdown(c, SHUT_WR);
        _exit(0);
    }
    struct epoll_event out[4];
    CHECK(epoll_wait(ep, out, 4, 5000) == 1 && out[0].data.fd == s && out[0].events == EPOLLIN, "woken");
    read(s, b, 1);
    CHECK(epoll_wait(ep, out, 4, 5000) == 1 && (out[0].events & EPOLLRDHUP), "EPOLLRDHUP after shutdown");
    CHECK(read(s, b, 1) == 0, "EOF");
    child_status(pid);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0, "del");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == -1 && errno == ENOENT, "del twice: ENOENT");
    close(ep);
}

int main(void)
{
    alarm(30);
    fast_pair(AF_INET, 1, &c, &s);
    CHECK(pipe(p) == 0, "pipe");
    ev = eventfd(0, 0);
    tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    test_poll_family();
    test_epoll();
    return 0;
}
