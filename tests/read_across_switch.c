/* A read takes all that has arrived, as the kernel's does, even when the
 * bytes straddle the peer's switch: the first ones came on TCP before the
 * server could write its ring, the rest on the ring.  loopfast's read
 * stopped at the last TCP byte.  libuv (node.js) takes a read shorter than
 * its buffer, with the peer's FIN already reported, for the end of the
 * stream: a node client got the first 230 bytes of its 5851-byte echo and
 * then EOF.  A peek sees as much, and FIONREAD counts as much, before and
 * after a read of part of the TCP bytes (it counted the TCP bytes alone,
 * and nginx, reading more than it said, waited for ever for the edge of
 * news it took the rest for).  Kernel TCP and loopfast (both ends opted
 * in): the transcripts must be the same. */
#include <poll.h>
#include <sys/ioctl.h>

#include "helpers.h"
#include "transcript.h"

#define LATE 3000

static void run(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    close(accepted_pair(AF_INET, optin, &c, &s));
    /* before the client's first call it cannot read rings: TCP */
    CHECK(write_full(s, "early", 5) == 5, "early write");
    usleep(50000);
    char b[65536];
    /* the client's calls take the server's answer and prove it (4.7) */
    for (int i = 0; i < 50 && (i == 0 || (optin && loopfast_fd_is_fast(s) != 1)); i++) {
        CHECK(write_full(c, "x", 1) == 1 && read_full(s, b, 1) == 1, "client's byte");
        usleep(1000);
    }
    /* the client now reads rings: these go on the ring, then the FIN */
    static char late[LATE];
    memset(late, 'L', sizeof late);
    for (int i = 0; i < 3; i++)
        CHECK(write_full(s, late + i * (LATE / 3), LATE / 3) == LATE / 3, "late write");
    close(s);
    usleep(100000);
    struct pollfd p = { .fd = c, .events = POLLIN | POLLRDHUP };
    char ev[16];
    int k = poll(&p, 1, 2000);
    events_text(ev, sizeof ev, k == 1 ? (unsigned)p.revents : 0);
    note(" poll:%s", ev);
    int queued = -1;
    note(" fionread:%d", ioctl(c, FIONREAD, &queued) == 0 ? queued : -1);
    note_result("peek", recv(c, b, sizeof b, MSG_PEEK | MSG_DONTWAIT));
    note_result("read-3", recv(c, b, 3, MSG_DONTWAIT));
    note(" fionread:%d", ioctl(c, FIONREAD, &queued) == 0 ? queued : -1);
    note_result("read", recv(c, b, sizeof b, MSG_DONTWAIT));
    note_result("read-again", recv(c, b, sizeof b, MSG_DONTWAIT));
    close(c);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(30);
    char kernel[4096], fast[4096];
    int bad = 0;
    for (int round = 0; round < 3; round++) {
        run(0, kernel, sizeof kernel);
        run(1, fast, sizeof fast);
        bad |= transcripts_differ("early bytes on TCP, late ones on the ring, then FIN", kernel, fast);
    }
    return bad;
}
