/* shutdown() of our own end, as the kernel does it: a thread blocked in
 * recv(), poll() or epoll_wait() on the socket wakes when another thread
 * shuts its reading down (SHUT_RD, SHUT_RDWR), and one blocked in send()
 * when it shuts writing down (SHUT_WR, SHUT_RDWR); readiness after our own
 * shutdowns, alone and with the peer's shutdown or close (POLLHUP once
 * both directions are shut), and what reads and writes return then.  Each
 * case runs over kernel TCP and with both ends fast; the transcripts must
 * be the same.  A blocked call that does not wake within WAKE_MS is noted
 * as "hung" (and then released by the peer's bytes, so the test ends). */
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>

#include "helpers.h"
#include "transcript.h"

#define WAKE_MS 2000

/* How long the blocked call has slept when the shutdown comes: within the
 * futex phase, or past it (on its wake socket: wait.c) */
static useconds_t slept_us = 50000;

enum block { B_RECV, B_POLL, B_EPOLL, B_SEND, B_COUNT };
static const char *block_name[B_COUNT] = { "recv", "poll", "epoll", "send" };

struct blocked {
    int fd;
    enum block how;
    char result[64];
    struct call_done done;
};

static void *block_in(void *arg)
{
    struct blocked *b = arg;
    char buf[64], ev[16];
    if (b->how == B_SEND) {   /* more than the socket holds: it blocks */
        static char big[4 << 20];
        ssize_t n = send(b->fd, big, sizeof big, MSG_NOSIGNAL);
        snprintf(b->result, sizeof b->result, "%s", n > 0 ? "part" : n == 0 ? "0" : strerror(errno));
    } else if (b->how == B_RECV) {
        ssize_t n = recv(b->fd, buf, sizeof buf, 0);
        snprintf(b->result, sizeof b->result, "%zd%s%s", n, n < 0 ? " " : "", n < 0 ? strerror(errno) : "");
    } else if (b->how == B_POLL) {
        struct pollfd p = { .fd = b->fd, .events = POLLIN | POLLRDHUP };
        int n = poll(&p, 1, -1);
        events_text(ev, sizeof ev, (unsigned)p.revents);
        snprintf(b->result, sizeof b->result, "%d:%s", n, ev);
    } else {
        int ep = epoll_create1(0);
        struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP }, out;
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b->fd, &e) == 0, "epoll_ctl");
        int n = epoll_wait(ep, &out, 1, -1);
        events_text(ev, sizeof ev, n == 1 ? out.events : 0);
        snprintf(b->result, sizeof b->result, "%d:%s", n, ev);
        close(ep);
    }
    call_done_set(&b->done);
    return NULL;
}

/* A thread blocks on `c`; this one shuts `c` down with `how`. */
static void wake_case(int optin, enum block how_block, int how, int peer_sent, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    if (peer_sent) {   /* bytes unread when the shutdown comes: nobody blocks */
        CHECK(write_full(s, "early", 5) == 5, "peer send");
        usleep(20000);
    }
    struct blocked b = { .fd = c, .how = how_block };
    call_done_init(&b.done);
    pthread_t t;
    if (!peer_sent) {
        CHECK(pthread_create(&t, NULL, block_in, &b) == 0, "pthread_create");
        usleep(slept_us);   /* it sleeps now */
    }
    CHECK(shutdown(c, how) == 0, "shutdown: %s", strerror(errno));
    if (!peer_sent) {
        if (!call_done_wait(&b.done, WAKE_MS)) {
            note(" hung");
            CHECK(write_full(s, "x", 1) == 1, "release");
        }
        pthread_join(t, NULL);
        note(" woke:%s", b.result);
    }
    note_readiness("after", c);
    char buf[64];
    note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    /* The peer's bytes after our SHUT_RD: Linux still takes them.  (After
     * SHUT_RDWR its answer is a reset: tests/shutdown_late_bytes.c.) */
    if (how == SHUT_RD) {
        note_result("peer-send", send(s, "late", 4, MSG_NOSIGNAL | MSG_DONTWAIT));
        usleep(20000);
        note_readiness("late", c);
        note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    }
    note_result("send", send(c, "z", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    if (how_block == B_SEND) {
        /* How much each buffers differs (the kernel's FIN waits behind the
         * bytes in our send queue; a ring holds them all): read them all. */
        static char drain[1 << 16];
        ssize_t n;
        struct pollfd p = { .fd = s, .events = POLLIN };
        while ((n = recv(s, drain, sizeof drain, MSG_DONTWAIT)) > 0 ||
               (n < 0 && errno == EAGAIN && poll(&p, 1, 2000) == 1))
            ;
        note_result("peer-drained", n);
    }
    note_readiness("peer", s);
    note_result("peer-recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    close(c);
    close(s);
    snprintf(out, size, "%s", transcript);
}

enum peer_act { P_SHUT_WR, P_CLOSE, P_NONE };
static const char *peer_name[] = { "peer SHUT_WR", "peer close", "peer nothing" };

/* Our SHUT_WR (or SHUT_RDWR), the peer's own end of the stream or not:
 * POLLHUP once both directions are shut, in either order. */
static void hup_case(int optin, int how, enum peer_act act, int peer_first, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    char buf[64];
    if (peer_first && act == P_SHUT_WR)
        CHECK(shutdown(s, SHUT_WR) == 0, "peer shutdown");
    if (peer_first && act == P_CLOSE)
        close(s), s = -1;
    usleep(20000);
    CHECK(shutdown(c, how) == 0, "shutdown: %s", strerror(errno));
    usleep(20000);
    note_readiness("mid", c);
    if (!peer_first && act == P_SHUT_WR)
        CHECK(shutdown(s, SHUT_WR) == 0, "peer shutdown");
    if (!peer_first && act == P_CLOSE)
        close(s), s = -1;
    usleep(20000);
    note_readiness("end", c);
    note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    note_readiness("read", c);
    if (s >= 0) {
        note_readiness("peer", s);
        note_result("peer-recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
        close(s);
    }
    close(c);
    snprintf(out, size, "%s", transcript);
}

static const char *how_name(int how)
{
    return how == SHUT_RD ? "SHUT_RD" : how == SHUT_WR ? "SHUT_WR" : "SHUT_RDWR";
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(60);
    static char kernel[4096], fast[4096];
    char label[128];
    int bad = 0;
    static const int hows[] = { SHUT_RD, SHUT_RDWR, SHUT_WR };
    for (int h = 0; h < 3; h++)
        for (int blk = 0; blk < B_COUNT; blk++)
            for (int early = 0; early < 2; early++) {
                if ((early && blk != B_RECV) || ((blk == B_SEND) != (hows[h] == SHUT_WR) &&
                                                 hows[h] != SHUT_RDWR))
                    continue;
                wake_case(0, blk, hows[h], early, kernel, sizeof kernel);
                wake_case(1, blk, hows[h], early, fast, sizeof fast);
                snprintf(label, sizeof label, "%s while %s%s", how_name(hows[h]),
                         early ? "bytes wait" : "blocked in ", early ? "" : block_name[blk]);
                bad += transcripts_differ(label, kernel, fast);
            }
    static const struct { int how; enum block blk; } late[] = {
        { SHUT_RD, B_RECV }, { SHUT_RD, B_POLL }, { SHUT_WR, B_SEND },
    };
    slept_us = 300000;
    for (size_t i = 0; i < sizeof late / sizeof late[0]; i++) {
        wake_case(0, late[i].blk, late[i].how, 0, kernel, sizeof kernel);
        wake_case(1, late[i].blk, late[i].how, 0, fast, sizeof fast);
        snprintf(label, sizeof label, "%s while blocked in %s for 300 ms", how_name(late[i].how),
                 block_name[late[i].blk]);
        bad += transcripts_differ(label, kernel, fast);
    }
    static const int hup_hows[] = { SHUT_WR, SHUT_RDWR, SHUT_RD };
    for (int h = 0; h < 3; h++)
        for (int act = P_SHUT_WR; act <= P_NONE; act++)
            for (int first = 0; first < 2; first++) {
                if (act == P_NONE && first)
                    continue;
                hup_case(0, hup_hows[h], act, first, kernel, sizeof kernel);
                hup_case(1, hup_hows[h], act, first, fast, sizeof fast);
                snprintf(label, sizeof label, "our %s, %s%s", how_name(hup_hows[h]),
                         peer_name[act], act == P_NONE ? "" : first ? " (first)" : " (after)");
                bad += transcripts_differ(label, kernel, fast);
            }
    CHECK(!bad, "%d cases differ", bad);
    return 0;
}
