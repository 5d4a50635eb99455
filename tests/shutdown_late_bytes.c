/* Bytes the peer sends after we shut down both directions (SHUT_RDWR, or
 * SHUT_RD and SHUT_WR one after the other in either order): Linux answers
 * them with a reset, so the peer's next call fails (EPIPE) instead of
 * filling a buffer nobody reads, and our next read says ECONNRESET.  Each
 * case runs over kernel TCP and with both ends fast; the transcripts must
 * be the same.  The last cases are the ones that hung: the peer streams
 * 4 MiB in a blocking send(), more than a ring holds, after our shutdown or
 * waiting for room when it comes (over the kernel its buffers take it all);
 * the send ends, and the next one says EPIPE.  A send still blocked after WAKE_MS is noted "hung" (and released
 * by closing our end, so the test ends). */
#include <poll.h>
#include <pthread.h>

#include "helpers.h"
#include "transcript.h"

#define WAKE_MS 3000

enum order { O_RDWR, O_RD_THEN_WR, O_WR_THEN_RD, O_COUNT };
static const char *order_name[O_COUNT] = { "SHUT_RDWR", "SHUT_RD then SHUT_WR",
                                           "SHUT_WR then SHUT_RD" };

static void shut_both(int fd, enum order o)
{
    if (o == O_RDWR) {
        CHECK(shutdown(fd, SHUT_RDWR) == 0, "shutdown: %s", strerror(errno));
        return;
    }
    CHECK(shutdown(fd, o == O_RD_THEN_WR ? SHUT_RD : SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    usleep(10000);
    CHECK(shutdown(fd, o == O_RD_THEN_WR ? SHUT_WR : SHUT_RD) == 0, "shutdown: %s", strerror(errno));
}

/* Until the peer's end answers: the kernel's reset takes a moment to come
 * back; a bounded number of looks, each noted only when it changes. */
static void settle(int s)
{
    for (int i = 0; i < 50; i++) {
        struct pollfd p = { .fd = s, .events = POLLOUT };
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)))
            return;
        usleep(2000);
    }
}

static void small_case(int optin, enum order o, int unread, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    char buf[64];
    fast_pair(AF_INET, optin, &c, &s);
    if (unread) {   /* bytes we never read, there when we shut down */
        CHECK(write_full(s, "early", 5) == 5, "peer send");
        usleep(20000);
    }
    shut_both(c, o);
    usleep(20000);
    note_readiness("mine", c);
    note_readiness("peer", s);
    note_result("peer-send", send(s, "late", 4, MSG_NOSIGNAL));
    settle(s);
    note_readiness("mine", c);
    note_readiness("peer", s);
    note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    note_result("peer-send", send(s, "more", 4, MSG_NOSIGNAL));
    note_result("peer-send", send(s, "more", 4, MSG_NOSIGNAL));
    note_result("peer-recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    note_result("peer-recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    case_end(c, s, out, size);
}

/* More than a ring holds, less than kernel TCP's buffers between two
 * sockets (4 MiB of send buffer and 6 MiB of receive buffer at most, by
 * default): over the kernel a send this big that found the window shut
 * would wait for good (only window probes go out: nothing to reset). */
#define BIG_STREAM (4 << 20)

struct streamer {
    int fd;
    ssize_t result;
    int err;
    struct call_done done;
};

static void *stream_out(void *arg)
{
    struct streamer *st = arg;
    static char big[BIG_STREAM];
    st->result = send(st->fd, big, sizeof big, MSG_NOSIGNAL);
    st->err = errno;
    call_done_set(&st->done);
    return NULL;
}

/* The peer streams more than any buffer holds after our shutdown, or
 * starts before it (`blocked`: it waits for room when we shut down). */
static void stream_case(int optin, enum order o, int blocked, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    char buf[64];
    fast_pair(AF_INET, optin, &c, &s);
    if (!blocked) {
        shut_both(c, o);
        usleep(20000);
    }
    struct streamer st = { .fd = s };
    call_done_init(&st.done);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, stream_out, &st) == 0, "pthread_create");
    if (blocked) {
        usleep(100000);
        shut_both(c, o);
    }
    if (!call_done_wait(&st.done, WAKE_MS)) {
        note(" hung");
        close(c);
        c = -1;
    }
    pthread_join(t, NULL);
    /* How much went before the reset differs with the buffers: only
     * whether it ended, and how (when it waited, the kernel's buffers took
     * it all and a ring only a part: that it ended). */
    errno = st.err;
    if (blocked && st.result >= 0)
        note(" peer-stream:ended");
    else
        note_result("peer-stream", st.result < 0 ? -1 : st.result == BIG_STREAM ? 1 : 0);
    if (c >= 0) {
        note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
        close(c);
    }
    note_result("peer-send", send(s, "more", 4, MSG_NOSIGNAL));
    close(s);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(60);
    static char kernel[4096], fast[4096];
    char label[128];
    int bad = 0;
    for (int o = 0; o < O_COUNT; o++)
        for (int unread = 0; unread < 2; unread++) {
            small_case(0, (enum order)o, unread, kernel, sizeof kernel);
            small_case(1, (enum order)o, unread, fast, sizeof fast);
            snprintf(label, sizeof label, "%s, then late bytes%s", order_name[o],
                     unread ? " (early bytes unread)" : "");
            bad += transcripts_differ(label, kernel, fast);
        }
    for (int o = 0; o < O_COUNT; o++)
        for (int blocked = 0; blocked < 2; blocked++) {
            stream_case(0, (enum order)o, blocked, kernel, sizeof kernel);
            stream_case(1, (enum order)o, blocked, fast, sizeof fast);
            snprintf(label, sizeof label, blocked ? "%s while a 4 MiB send waits for room"
                     : "%s, then a 4 MiB stream", order_name[o]);
            bad += transcripts_differ(label, kernel, fast);
        }
    return bad ? 1 : 0;
}
