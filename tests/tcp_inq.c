/* TCP_INQ: with it on, each recvmsg() carries a TCP_CM_INQ control message,
 * the bytes still queued after the read (1 at the end of the stream with
 * none left); gRPC reads it to decide whether to read again.  On the rings
 * recvmsg carried no control message at all.  Checked on a connection that
 * switched: the counts as bytes are read, peeked and end, a control buffer
 * too small for it (MSG_CTRUNC), and none without the option.  Kernel TCP
 * and loopfast (both ends opted in): the transcripts must be the same. */
#include <netinet/tcp.h>
#include <sys/ioctl.h>

#include "helpers.h"
#include "transcript.h"

static void inq_read(int fd, size_t len, int flags, size_t control)
{
    char buf[64], ctl[64] = { 0 };
    struct iovec iov = { buf, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                        .msg_controllen = control };
    ssize_t n = recvmsg(fd, &m, flags | MSG_DONTWAIT);
    note_result("recvmsg", n);
    note("/c%zu%s", (size_t)m.msg_controllen, m.msg_flags & MSG_CTRUNC ? "T" : "");
    struct cmsghdr *cm = n >= 0 && m.msg_controllen ? CMSG_FIRSTHDR(&m) : NULL;
    if (cm && cm->cmsg_len == CMSG_LEN(sizeof(int))) {
        int inq;
        memcpy(&inq, CMSG_DATA(cm), sizeof inq);
        note("/%d.%d=%d", cm->cmsg_level, cm->cmsg_type, inq);
    }
}

static void run(int optin, int on, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    note_result("TCP_INQ", setsockopt(s, IPPROTO_TCP, TCP_INQ, &on, sizeof on));
    int one = 1;
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY");
    char b;
    CHECK(write_full(c, "x", 1) == 1 && read_full(s, &b, 1) == 1, "exchange");
    CHECK(write_full(c, "0123456789", 10) == 10, "write");
    for (int i = 0, queued = 0; i < 200 && queued < 10; i++)   /* all ten there */
        if (ioctl(s, FIONREAD, &queued) < 0 || queued < 10)
            usleep(1000);
    inq_read(s, 4, 0, 64);
    inq_read(s, 2, MSG_PEEK, 64);
    inq_read(s, 4, 0, 64);
    inq_read(s, 1, 0, CMSG_LEN(0));   /* no room for the count */
    inq_read(s, 4, 0, 64);
    inq_read(s, 4, 0, 64);   /* nothing there */
    CHECK(shutdown(c, SHUT_WR) == 0, "shutdown");
    usleep(20000);
    inq_read(s, 4, 0, 64);   /* the end: 1 */
    case_end(c, s, out, size);
}

int main(void)
{
    alarm(30);
    static char kernel[4096], fast[4096];
    int bad = 0;
    for (int on = 1; on >= 0; on--) {
        run(0, on, kernel, sizeof kernel);
        run(1, on, fast, sizeof fast);
        bad += transcripts_differ(on ? "TCP_INQ on" : "TCP_INQ off", kernel, fast);
    }
    return bad ? 1 : 0;
}
