/* A reader that shut its writing down (shutdown(SHUT_WR), as ncat
 * --recv-only does) and is then killed while a writer streams to it.  Over
 * kernel TCP its close resets the connection (bytes of the writer's were
 * unread): the writer's poll() wakes with POLLERR|POLLHUP and its next
 * send() fails with EPIPE (a reset after the peer's FIN).  With loopfast
 * those bytes are on the ring, so no reset is sent, and the reader's FIN
 * came long before: nothing on TCP tells of its death, and a writer
 * polling for POLLOUT alone slept for good (6 runs in 18), or woke 30-130
 * ms late.  Both ways, kernel TCP the reference: a non-blocking writer
 * polling for POLLOUT with no timeout, its reader draining slowly; and a
 * blocking writer whose reader reads nothing more.  Each writer must end,
 * with the kernel's error. */
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "helpers.h"

static int draining;

/* The reader: its writing shut down at once, a byte read (so that its
 * client switches), then 16 KiB a millisecond (draining) or nothing, until
 * killed. */
static void half_closed_reader(int l)
{
    int c = accept(l, NULL, NULL);
    char b;
    if (c < 0 || shutdown(c, SHUT_WR) != 0 || read_full(c, &b, 1) != 1)
        _exit(2);
    static char buf[16384];
    for (;;) {
        if (!draining || read(c, buf, sizeof buf) <= 0)
            pause();
        sleep_ms(1);
    }
}

/* The writer, in a child: exits with the errno of the send that failed
 * (after a poll that reported POLLERR or POLLHUP, when non-blocking), 1
 * when that poll reported neither.  Says on `ready` after a megabyte. */
static void writer(const struct sockaddr_storage *addr, socklen_t len, int optin, int ready)
{
    int fd = connect_to(addr, len, optin);
    if (write_full(fd, "x", 1) != 1 || (draining && ioctl(fd, FIONBIO, &(int){ 1 }) != 0))
        _exit(3);
    static char buf[65536];
    size_t sent = 0;
    for (;;) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, -1) != 1)
                _exit(4);
            if (p.revents & (POLLERR | POLLHUP)) {
                n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
                _exit(n < 0 ? errno : 1);
            }
            continue;
        }
        if (n < 0)
            _exit(errno);
        if (sent < (1u << 20) && (sent += (size_t)n) >= (1u << 20) && write(ready, "r", 1) != 1)
            _exit(3);
    }
}

static int writer_status(int optin)
{
    return writer_status_after_kill(optin, half_closed_reader, writer);
}

static void both_ways(const char *how)
{
    int k = writer_status(0), f = writer_status(1);
    printf("%s: the writer's status, kernel %d, loopfast %d (%d: EPIPE, %d: ECONNRESET, %d: "
           "never told)\n",
           how, k, f, EPIPE, ECONNRESET, 128 + SIGALRM);
    CHECK(k == EPIPE || k == ECONNRESET, "%s: over kernel TCP the writer exited %d", how, k);
    CHECK(f == k, "%s: with loopfast the writer exited %d, over kernel TCP %d", how, f, k);
}

int main(void)
{
    alarm(100);
    signal(SIGPIPE, SIG_IGN);
    draining = 1;   /* a race: in 1 run of 3 the old code never told */
    for (int i = 0; i < 4; i++)
        both_ways("non-blocking writer polling for POLLOUT, its reader draining");
    draining = 0;
    both_ways("blocking writer, its reader reading nothing");
    return 0;
}
