/* recvmmsg/sendmmsg and preadv2/pwritev2 on a fast connection behave as on
 * kernel TCP: several messages in one call (MSG_WAITFORONE returns what is
 * there once one came), an offset other than -1 is ESPIPE, RWF_NOWAIT on an
 * empty socket is EAGAIN.  Before they were interposed, a fast socket's
 * recvmmsg waited on TCP for bytes that came on the ring, and sendmmsg wrote
 * TCP bytes the fast peer never read.  Run on a fast pair and, as control,
 * a plain pair. */
#include "helpers.h"

#include <netinet/tcp.h>
#include <sys/uio.h>

static void run(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    const char *mode = optin ? "loopfast" : "kernel";
    int one = 1;   /* no Nagle: all three messages are there when read */
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    /* three messages out in one call */
    struct iovec out[3] = { { "one", 3 }, { "two!", 4 }, { "three", 5 } };
    struct mmsghdr om[3];
    memset(om, 0, sizeof om);
    for (int i = 0; i < 3; i++) {
        om[i].msg_hdr.msg_iov = &out[i];
        om[i].msg_hdr.msg_iovlen = 1;
    }
    CHECK(sendmmsg(c, om, 3, 0) == 3, "sendmmsg (%s): %s", mode, strerror(errno));
    CHECK(om[0].msg_len == 3 && om[1].msg_len == 4 && om[2].msg_len == 5, "sendmmsg lengths (%s)", mode);
    /* the plain calls read what sendmmsg wrote, and write what recvmmsg
     * reads: each must be on the same path as the other calls */
    char all[12];
    CHECK(read_full(s, all, 12) == 12 && !memcmp(all, "onetwo!three", 12), "read after sendmmsg (%s)", mode);
    CHECK(write_full(c, "onetwo!three", 12) == 12, "write (%s)", mode);
    usleep(20000);

    /* in with MSG_WAITFORONE: the stream fills the first buffer, the rest
     * goes to the second, the third finds nothing and does not wait */
    char a[8], b[8], d[8];
    struct iovec in[3] = { { a, 8 }, { b, 8 }, { d, 8 } };
    struct mmsghdr im[3];
    memset(im, 0, sizeof im);
    for (int i = 0; i < 3; i++) {
        im[i].msg_hdr.msg_iov = &in[i];
        im[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(s, im, 3, MSG_WAITFORONE, NULL);
    CHECK(n == 2, "recvmmsg WAITFORONE (%s): %d %s", mode, n, strerror(errno));
    CHECK(im[0].msg_len == 8 && im[1].msg_len == 4 && !memcmp(a, "onetwo!t", 8) &&
          !memcmp(b, "hree", 4), "recvmmsg bytes (%s)", mode);

    /* nothing there, non-blocking: the error, not 0 */
    n = recvmmsg(s, im, 3, MSG_DONTWAIT, NULL);
    CHECK(n == -1 && errno == EAGAIN, "recvmmsg on empty (%s): %d %s", mode, n, strerror(errno));

    /* preadv2/pwritev2 */
    struct iovec w = { "xyz", 3 };
    errno = 0;
    CHECK(pwritev2(c, &w, 1, 0, 0) == -1 && errno == ESPIPE, "pwritev2 at offset 0 (%s): %s", mode, strerror(errno));
    CHECK(pwritev2(c, &w, 1, -1, 0) == 3, "pwritev2 (%s): %s", mode, strerror(errno));
    CHECK(read_full(s, all, 3) == 3 && !memcmp(all, "xyz", 3), "read after pwritev2 (%s)", mode);
    CHECK(write_full(c, "xyz", 3) == 3, "write (%s)", mode);
    usleep(20000);
    struct iovec r = { a, sizeof a };
    errno = 0;
    CHECK(preadv2(s, &r, 1, 0, 0) == -1 && errno == ESPIPE, "preadv2 at offset 0 (%s): %s", mode, strerror(errno));
    CHECK(preadv2(s, &r, 1, -1, 0) == 3 && !memcmp(a, "xyz", 3), "preadv2 (%s)", mode);
    errno = 0;
    CHECK(preadv2(s, &r, 1, -1, RWF_NOWAIT) == -1 && errno == EAGAIN, "preadv2 RWF_NOWAIT on empty (%s): %s", mode, strerror(errno));

    /* end of stream: every message gets length 0 */
    close(c);
    for (int i = 0; i < 3; i++)
        im[i].msg_len = 99;
    n = recvmmsg(s, im, 3, 0, NULL);
    CHECK(n == 3 && !im[0].msg_len && !im[1].msg_len && !im[2].msg_len, "recvmmsg at EOF (%s): %d", mode, n);
    close(s);
}

int main(void)
{
    alarm(20);
    run(0);
    run(1);
    return 0;
}
