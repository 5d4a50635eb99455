/* An edge-triggered epoll record whose peer died with our bytes unread
 * (a reset): the kernel reports EPOLLHUP|EPOLLERR as an edge, once; ours
 * reported them at every epoll_wait, since a peer gone leaves them on for
 * good, and an ET loop that kept the hung-up socket registered woke ~2
 * million times a second (found by a helper's sweep).  Both ways, after
 * the switching echoes (both directions on the rings): 64 KiB the peer
 * never reads, the peer killed, then 1 s of epoll_wait (50 ms timeouts) on
 * the socket
 * with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, reading it as an ET loop does
 * (until EAGAIN, EOF or an error) after each report: the reports, which
 * must be a handful both ways. */
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "helpers.h"

static void peer(int l)
{
    server_switch(accept(l, NULL, NULL));
    for (;;)
        pause();
}

static void drain(int fd)
{
    char buf[4096];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

static int reports_after_death(int optin)
{
    pid_t pid;
    int fd = switched_to_forked(optin, peer, &pid);
    CHECK(ioctl(fd, FIONBIO, &(int){ 1 }) == 0, "FIONBIO");
    static char unread[65536];
    CHECK(send(fd, unread, sizeof unread, MSG_NOSIGNAL) > 0, "send");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd };
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll");
    while (epoll_wait(ep, &ev, 1, 0) > 0)   /* the first report: what is there */
        drain(fd);
    sleep_ms(100);
    kill(pid, SIGKILL);
    child_status(pid);
    int reports = 0;
    for (int i = 0; i < 20; i++)
        while (epoll_wait(ep, &ev, 1, 50) > 0 && reports < 100000) {
            reports++;
            drain(fd);
        }
    close(ep);
    close(fd);
    return reports;
}

int main(void)
{
    alarm(30);
    int k = reports_after_death(0), f = reports_after_death(1);
    printf("epoll_wait reports in 1 s after the peer's death: kernel %d, loopfast %d\n", k, f);
    CHECK(k >= 1 && k <= 3, "over kernel TCP: %d reports", k);
    CHECK(f >= 1 && f <= 5, "with loopfast: %d reports (kernel TCP: %d)", f, k);
    return 0;
}
