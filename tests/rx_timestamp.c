/* Receive timestamps on TCP reads: with SO_TIMESTAMP or SO_TIMESTAMPNS on
 * (old and new layouts), each recvmsg() that reads bytes carries the time
 * as a control message, before TCP_INQ's count when that is on too; a
 * buffer with room for one of them gets it and MSG_CTRUNC.  On the rings
 * reads carried none.  The time must lie between the write and the end of
 * the read (loopfast gives the time of the read: its ring does not note
 * when bytes came).  Kernel TCP and loopfast (both ends opted in): the
 * transcripts must be the same. */
#include <linux/time_types.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <time.h>

#include "helpers.h"
#include "transcript.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The stamp in cm as seconds, by its type; -1 when it is not one. */
static double stamp_of(struct cmsghdr *cm)
{
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_len < CMSG_LEN(16))
        return -1;
    int64_t v[2];
    memcpy(v, CMSG_DATA(cm), sizeof v);   /* 64-bit seconds and (u|n)s, all four on 64-bit */
    if (cm->cmsg_type == SO_TIMESTAMP_OLD || cm->cmsg_type == SO_TIMESTAMP_NEW)
        return (double)v[0] + (double)v[1] / 1e6;
    if (cm->cmsg_type == SO_TIMESTAMPNS_OLD || cm->cmsg_type == SO_TIMESTAMPNS_NEW)
        return (double)v[0] + (double)v[1] / 1e9;
    return -1;
}

static void stamped_read(int fd, size_t len, size_t control, double sent)
{
    char buf[64], ctl[128] = { 0 };
    struct iovec iov = { buf, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                        .msg_controllen = control };
    ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
    double done = now_s();
    note_result("recvmsg", n);
    if (n < 0)
        return;
    note("/c%zu%s", (size_t)m.msg_controllen, m.msg_flags & MSG_CTRUNC ? "T" : "");
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
        note("/%d.%d.%zu", cm->cmsg_level, cm->cmsg_type, (size_t)cm->cmsg_len);
        double t = stamp_of(cm);
        if (t >= 0)
            note("%s", t >= sent - 1e-3 && t <= done + 1e-3 ? "(in time)" : "(OUT OF TIME)");
    }
}

static void run(int optin, int option, int inq, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s, on = 1;
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(setsockopt(s, SOL_SOCKET, option, &on, sizeof on) == 0, "option %d: %s", option,
          strerror(errno));
    if (inq)
        CHECK(setsockopt(s, IPPROTO_TCP, TCP_INQ, &on, sizeof on) == 0, "TCP_INQ");
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0, "TCP_NODELAY");
    char b;
    CHECK(write_full(c, "x", 1) == 1 && read_full(s, &b, 1) == 1, "exchange");
    double sent = now_s();
    CHECK(write_full(c, "0123456789", 10) == 10, "write");
    for (int i = 0, queued = 0; i < 200 && queued < 10; i++)   /* all ten there */
        if (ioctl(s, FIONREAD, &queued) < 0 || queued < 10)
            usleep(1000);
    stamped_read(s, 4, 128, sent);
    stamped_read(s, 4, CMSG_SPACE(16), sent);   /* room for the stamp only */
    stamped_read(s, 2, 128, sent);
    CHECK(shutdown(c, SHUT_WR) == 0, "shutdown");
    usleep(20000);
    stamped_read(s, 4, 128, sent);   /* the end: no bytes, no stamp */
    case_end(c, s, out, size);
}

/* The kernel stamps packets only once its global switch is on, which the
 * first socket to ask turns on a moment later (a deferred static key): a
 * pair that asks first, kept open, until one of its reads is stamped. */
static int stamps_ready(void)
{
    int c, s, on = 1;
    fast_pair(AF_INET, 0, &c, &s);
    CHECK(setsockopt(s, SOL_SOCKET, SO_TIMESTAMP_OLD, &on, sizeof on) == 0, "SO_TIMESTAMP");
    for (int i = 0; i < 100; i++) {
        char b, ctl[64];
        struct iovec iov = { &b, 1 };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                            .msg_controllen = sizeof ctl };
        CHECK(write_full(c, "w", 1) == 1 && recvmsg(s, &m, 0) == 1, "warm-up");
        if (m.msg_controllen)
            return 1;   /* c and s stay open to the end */
        usleep(10000);
    }
    return 0;
}

int main(void)
{
    alarm(30);
    if (!stamps_ready()) {
        printf("SKIP: the kernel stamps no TCP packets here\n");
        return 77;
    }
    static char kernel[4096], fast[4096];
    char label[128];
    int bad = 0;
    static const int options[] = { SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_TIMESTAMP_NEW,
                                   SO_TIMESTAMPNS_NEW };
    static const char *names[] = { "SO_TIMESTAMP_OLD", "SO_TIMESTAMPNS_OLD", "SO_TIMESTAMP_NEW",
                                   "SO_TIMESTAMPNS_NEW" };
    for (int o = 0; o < 4; o++)
        for (int inq = 0; inq < 2; inq++) {
            run(0, options[o], inq, kernel, sizeof kernel);
            run(1, options[o], inq, fast, sizeof fast);
            snprintf(label, sizeof label, "%s%s", names[o], inq ? " and TCP_INQ" : "");
            bad += transcripts_differ(label, kernel, fast);
        }
    return bad ? 1 : 0;
}
