/* A thread blocked on a fast socket is cancelled (pthread_cancel) as over
 * TCP: at once, its cleanup handlers run, and the connection stays whole
 * for the others (docs/design.md, 6).  For each of a blocking read(), a
 * write() into a full buffer, a poll() and an epoll_wait(), cancelled
 * EARLY_MS into the wait (on the futex, which is no cancellation point of
 * libc's: the cancellation waited for its 200 ms) and LATE_MS into it (on
 * the wake socket): the thread must be joined within JOIN_MS with its
 * cleanup handler run (built with -fexceptions, the handler runs only if
 * every frame can be unwound: loopfast's syscall() had no unwind
 * information, and a thread cancelled in its futex sleep skipped it), then the
 * connection must carry a byte each way, a new thread blocked in read()
 * must be woken by the next message, and a close must reach the peer as
 * EOF.  First, a read made before the server accepted (so before the
 * switch), cancelled: the connection must still switch.  Kernel TCP first,
 * loopfast then; any hang ends in alarm(). */
#include <poll.h>
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

#define EARLY_MS 5
#define LATE_MS 400
#define JOIN_MS 120
#define CHUNK (1 << 20)

enum how { READ, WRITE, POLL, EPOLL, HOWS };
static const char *const how_name[HOWS] = { "read", "write", "poll", "epoll_wait" };

struct blocked { int fd; enum how how; int cleaned; };

static void cleaned_up(void *arg)
{
    __atomic_store_n(&((struct blocked *)arg)->cleaned, 1, __ATOMIC_RELEASE);
}

static void block_in(struct blocked *b)
{
    static char big[CHUNK];
    char c;
    if (b->how == READ) {
        (void)!read(b->fd, &c, 1);
    } else if (b->how == WRITE) {
        while (write(b->fd, big, sizeof big) > 0)
            ;
    } else if (b->how == POLL) {
        struct pollfd p = { .fd = b->fd, .events = POLLIN };
        poll(&p, 1, -1);
    } else {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event e = { .events = EPOLLIN };
        if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, b->fd, &e) == 0)
            epoll_wait(ep, &e, 1, -1);
    }
}

static void *blocker(void *arg)
{
    struct blocked *b = arg;
    pthread_cleanup_push(cleaned_up, b);
    block_in(b);
    pthread_cleanup_pop(0);
    return NULL;   /* not cancelled: the check below says so */
}

static void *one_read(void *arg)
{
    char c = 0;
    return read(*(int *)arg, &c, 1) == 1 ? (void *)(intptr_t)c : NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Everything the peer holds, read away (after a write that filled it). */
static void drain(int fd)
{
    static char buf[1 << 16];
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (poll(&p, 1, 200) == 1 && read(fd, buf, sizeof buf) > 0)
        ;
}

/* The time the cancelled thread took to be joined, ms. */
static double cancel_one(int optin, enum how how, int after_ms)
{
    int a, b;
    fast_pair(AF_INET, optin, &a, &b);
    struct blocked bl = { a, how, 0 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocker, &bl) == 0, "thread");
    usleep((useconds_t)after_ms * 1000);
    double start = now_ms();
    CHECK(pthread_cancel(t) == 0, "pthread_cancel");
    void *res;
    CHECK(pthread_join(t, &res) == 0, "join");
    double took = now_ms() - start;
    const char *what = how_name[how];
    CHECK(res == PTHREAD_CANCELED && bl.cleaned, "%s, %d ms in: not cancelled (%p, cleaned %d)",
          what, after_ms, res, bl.cleaned);
    if (how == WRITE)
        drain(b);
    char c;
    CHECK(write_full(b, "z", 1) == 1 && read_full(a, &c, 1) == 1 && c == 'z',
          "%s, %d ms in: the connection lost its way in", what, after_ms);
    CHECK(write_full(a, "w", 1) == 1 && read_full(b, &c, 1) == 1 && c == 'w',
          "%s, %d ms in: the connection lost its way out", what, after_ms);
    pthread_t r;   /* a new sleeper past the futex phase, in the same direction */
    CHECK(pthread_create(&r, NULL, one_read, &a) == 0, "thread");
    usleep(LATE_MS * 1000);
    CHECK(write_full(b, "n", 1) == 1, "write");
    CHECK(pthread_join(r, &res) == 0 && res == (void *)(intptr_t)'n',
          "%s, %d ms in: a later reader got %p", what, after_ms, res);
    close(a);
    struct pollfd p = { .fd = b, .events = POLLIN };
    CHECK(poll(&p, 1, 3000) == 1 && read(b, &c, 1) == 0, "%s, %d ms in: no EOF after the close",
          what, after_ms);
    close(b);
    return took;
}

/* A client's read made before its server accepted, so before the
 * connection could switch (its read waits on TCP, and no switch comes while
 * a read is in flight): cancelled, it must not keep the switch from coming. */
static void cancel_pending_read(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), a = connect_to(&addr, len, optin);
    struct blocked bl = { a, READ, 0 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocker, &bl) == 0, "thread");
    usleep(LATE_MS * 1000);
    void *res;
    CHECK(pthread_cancel(t) == 0 && pthread_join(t, &res) == 0 && res == PTHREAD_CANCELED,
          "a read before the accept: not cancelled");
    int b = accept(l, NULL, NULL);
    CHECK(b >= 0, "accept: %s", strerror(errno));
    close(l);
    char c;
    for (int i = 0; i < 3; i++)
        CHECK(write_full(a, "q", 1) == 1 && read_full(b, &c, 1) == 1 && c == 'q' &&
              write_full(b, "r", 1) == 1 && read_full(a, &c, 1) == 1 && c == 'r',
              "exchange %d after a cancelled read", i);
    CHECK(loopfast_fd_is_fast(a) == optin && loopfast_fd_is_fast(b) == optin,
          "after a read cancelled before the accept the connection stays %d/%d (opted in: %d)",
          loopfast_fd_is_fast(a), loopfast_fd_is_fast(b), optin);
    close(a);
    close(b);
}

int main(void)
{
    alarm(120);
    cancel_pending_read(0);
    cancel_pending_read(1);
    const int after[2] = { EARLY_MS, LATE_MS };
    for (int how = 0; how < HOWS; how++)
        for (int i = 0; i < 2; i++) {
            double kernel = cancel_one(0, (enum how)how, after[i]);
            double fast = cancel_one(1, (enum how)how, after[i]);
            printf("%s cancelled %d ms in: joined after %.1f ms (kernel %.1f ms)\n",
                   how_name[how], after[i], fast, kernel);
            CHECK(fast <= JOIN_MS, "%s cancelled %d ms in: joined only after %.0f ms (kernel %.1f)",
                  how_name[how], after[i], fast, kernel);
        }
    return 0;
}
