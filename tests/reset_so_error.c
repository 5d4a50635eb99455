/* Where a reset's error is after a peer died with our bytes unread: Linux
 * keeps it as the socket's error, which poll() shows as POLLERR and
 * getsockopt(SO_ERROR) reads once (ECONNRESET; EPIPE after the peer's
 * shutdown), the next read then saying EOF.  Ours said POLLERR but
 * SO_ERROR 0, and the next read ECONNRESET (an event loop that asks
 * SO_ERROR on POLLERR, as most do, saw a clean EOF); and after a
 * MSG_WAITALL read cut short by the reset (its error kept for the next
 * call, socket.c) poll() showed no POLLERR.  Found by a helper's sweep.
 * Both ways, after the switching echoes (both directions on the rings),
 * the peer killed 300 ms in: (A) a poll for POLLIN|POLLRDHUP, (B) the same
 * after the peer's shutdown(SHUT_WR), with no events asked, (C) a
 * MSG_WAITALL read of more than the peer's 1000 bytes, then a poll; each
 * then SO_ERROR and a read.  Everything must match. */
#include <poll.h>
#include <sys/wait.h>

#include "helpers.h"

struct seen {
    ssize_t waitall;
    short revents;
    int so_error;
    ssize_t got;
    int got_err;
};

static char shape;   /* 'A', 'B', 'C' */

static void peer(const struct sockaddr_storage *addr, socklen_t len, int optin)
{
    int c = connect_to(addr, len, optin);
    client_switch(c);
    static char some[1000];
    if ((shape == 'B' && shutdown(c, SHUT_WR) != 0) ||
        (shape == 'C' && write_full(c, some, sizeof some) != sizeof some))
        _exit(3);
    for (;;)
        pause();
}

static struct seen after_reset(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        peer(&addr, len, optin);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    close(l);
    server_switch(s);
    sleep_ms(100);   /* the peer's shutdown or bytes are there */
    static char unread[1000], buf[100000];
    CHECK(write_full(s, unread, sizeof unread) == sizeof unread, "write");
    pid_t killer = fork();
    CHECK(killer >= 0, "fork");
    if (killer == 0) {
        sleep_ms(300);
        kill(pid, SIGKILL);
        _exit(0);
    }
    struct seen w = { -1, 0, -1, 0, 0 };
    struct pollfd p = { .fd = s, .events = shape == 'B' ? 0 : POLLIN | POLLRDHUP };
    if (shape == 'C')
        w.waitall = recv(s, buf, sizeof buf, MSG_WAITALL);
    CHECK(poll(&p, 1, shape == 'C' ? 0 : 5000) == 1, "poll: no event");
    w.revents = p.revents;
    socklen_t n = sizeof w.so_error;
    CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &w.so_error, &n) == 0, "SO_ERROR");
    w.got = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    w.got_err = w.got < 0 ? errno : 0;
    child_status(killer);
    child_status(pid);
    close(s);
    return w;
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    for (shape = 'A'; shape <= 'C'; shape++) {
        struct seen k = after_reset(0), f = after_reset(1);
        printf("%c: kernel: waitall %zd, revents %#x, SO_ERROR %d, read %zd (%d); loopfast: "
               "waitall %zd, revents %#x, SO_ERROR %d, read %zd (%d)\n",
               shape, k.waitall, k.revents, k.so_error, k.got, k.got_err, f.waitall, f.revents,
               f.so_error, f.got, f.got_err);
        CHECK(k.so_error != 0, "%c: over kernel TCP SO_ERROR said 0", shape);
        CHECK(f.waitall == k.waitall && f.revents == k.revents && f.so_error == k.so_error &&
                  f.got == k.got && f.got_err == k.got_err,
              "%c: loopfast differs from kernel TCP", shape);
    }
    return 0;
}
