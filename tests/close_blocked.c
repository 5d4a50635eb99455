/* A socket closed while another thread's call is blocked on it: Linux
 * keeps the socket until that call returns (the call holds the file), so
 * the call goes on waiting, the peer's later bytes reach it, and the peer
 * sees the end of the stream only after it returns.  Each shape runs over
 * kernel TCP first, then over loopfast, and must end the same way:
 *  (a) a reader blocked in read(), closed in the futex phase of its wait
 *      (50 ms) and in its poll phase (400 ms): the peer sees no end while
 *      it waits, its later bytes reach the reader, then the peer reads EOF;
 *  (b) a writer blocked for room (a 24 MiB write() the peer does not read
 *      yet): the write completes whole after the close, the peer reads
 *      every byte in order, then EOF;
 *  (c) Java's close (NioSocketImpl): dup2() of a dead socketpair end onto
 *      the number under the blocked reader, then a signal without
 *      SA_RESTART: read() fails with EINTR, and only then the peer reads EOF;
 *  (d) the closed number given out again at once (a pipe) while the reader
 *      waits: the pipe's readiness on that number does not end the reader,
 *      the peer's bytes still reach it, and the pipe works;
 *  (e) a fork while the reader waits: the child, which never held the
 *      socket, does not keep the peer's TCP socket from its FIN (CLOSE_WAIT)
 *      once the reader returns. */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <time.h>

#include "helpers.h"

#define BIG (24u << 20)

static const char *how(int optin)
{
    return optin ? "loopfast" : "kernel TCP";
}

/* Does `fd` show the end of the stream (or anything to read) within ms? */
static int readable_within(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, ms) > 0;
}

static void expect_eof(int fd, const char *shape, int optin)
{
    char b;
    CHECK(readable_within(fd, 3000), "%s %s: the peer saw no end of stream", shape, how(optin));
    ssize_t n = read(fd, &b, 1);
    CHECK(n == 0, "%s %s: the peer read %zd (%s), not EOF", shape, how(optin), n,
          n < 0 ? strerror(errno) : "a byte");
}

struct blocked {
    int fd;
    char buf[64];
    ssize_t n;
    int err;
    struct call_done done;
};

static void *blocked_read(void *arg)
{
    struct blocked *b = arg;
    b->n = read(b->fd, b->buf, sizeof b->buf);
    b->err = b->n < 0 ? errno : 0;
    call_done_set(&b->done);
    return NULL;
}

static void *blocked_write(void *arg)
{
    struct blocked *b = arg;
    char *data = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (char)(i * 7 + (i >> 13));
    b->n = write(b->fd, data, BIG);
    b->err = b->n < 0 ? errno : 0;
    free(data);
    call_done_set(&b->done);
    return NULL;
}

static void start(struct blocked *b, int fd, void *(*fn)(void *), pthread_t *th)
{
    memset(b, 0, sizeof *b);
    b->fd = fd;
    call_done_init(&b->done);
    CHECK(pthread_create(th, NULL, fn, b) == 0, "pthread_create");
}

/* The reader still waits: the peer sees no end, its bytes reach it. */
static void reader_gets_late_bytes(struct blocked *b, pthread_t th, int peer, const char *shape,
                                   int optin)
{
    CHECK(!readable_within(peer, 300), "%s %s: the peer saw the end while a read still held "
          "the socket", shape, how(optin));
    CHECK(!call_done_wait(&b->done, 0), "%s %s: the blocked read ended at the close (%zd, %s)",
          shape, how(optin), b->n, strerror(b->err));
    CHECK(write_full(peer, "late", 4) == 4, "%s: peer write: %s", shape, strerror(errno));
    CHECK(call_done_wait(&b->done, 5000), "%s %s: the late bytes never reached the reader",
          shape, how(optin));
    pthread_join(th, NULL);
    CHECK(b->n == 4 && memcmp(b->buf, "late", 4) == 0, "%s %s: the reader got %zd (%s)", shape,
          how(optin), b->n, b->n < 0 ? strerror(b->err) : "other bytes");
}

/* A pair whose end `*a` another thread reads, closed after delay_ms: the peer. */
static int close_under_reader(int optin, int delay_ms, struct blocked *b, pthread_t *th, int *a)
{
    int peer;
    fast_pair(AF_INET, optin, a, &peer);
    start(b, *a, blocked_read, th);
    sleep_ms(delay_ms);
    CHECK(close(*a) == 0, "close: %s", strerror(errno));
    return peer;
}

static void shape_reader(int optin, int delay_ms)
{
    int a;
    struct blocked b;
    pthread_t th;
    int peer = close_under_reader(optin, delay_ms, &b, &th, &a);
    reader_gets_late_bytes(&b, th, peer, delay_ms < 200 ? "(a, futex phase)" : "(a, poll phase)",
                           optin);
    expect_eof(peer, "(a)", optin);
    close(peer);
}

static void shape_writer(int optin)
{
    int a, peer;
    fast_pair(AF_INET, optin, &a, &peer);
    struct blocked b;
    pthread_t th;
    start(&b, a, blocked_write, &th);
    sleep_ms(300);
    CHECK(!call_done_wait(&b.done, 0), "(b) %s: a %u-byte write did not block", how(optin), BIG);
    CHECK(close(a) == 0, "(b) close: %s", strerror(errno));
    static char buf[65536];
    size_t total = 0;
    int bad = 0;
    for (;;) {
        ssize_t n = read(peer, buf, sizeof buf);
        if (n <= 0) {
            CHECK(n == 0, "(b) %s: the peer's read failed after %zu bytes: %s", how(optin), total,
                  strerror(errno));
            break;
        }
        for (ssize_t i = 0; i < n; i++, total++)
            bad |= buf[i] != (char)(total * 7 + (total >> 13));
    }
    pthread_join(th, NULL);
    CHECK(b.n == (ssize_t)BIG, "(b) %s: the blocked write returned %zd (%s)", how(optin), b.n,
          strerror(b.err));
    CHECK(total == BIG && !bad, "(b) %s: the peer read %zu bytes%s, then EOF", how(optin), total,
          bad ? ", not those written" : "");
    close(peer);
}

static void on_signal(int sig)
{
    (void)sig;
}

static void shape_java(int optin)
{
    int a, peer, dead[2];
    fast_pair(AF_INET, optin, &a, &peer);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, dead) == 0, "socketpair");
    close(dead[1]);
    struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    struct blocked b;
    pthread_t th;
    start(&b, a, blocked_read, &th);
    sleep_ms(300);
    CHECK(dup2(dead[0], a) == a, "(c) dup2: %s", strerror(errno));
    CHECK(!readable_within(peer, 300), "(c) %s: the peer saw the end while a read still held "
          "the socket", how(optin));
    /* Java signals until the reader has left (a signal can come before it
     * sleeps again); the first one normally does it. */
    for (int i = 0; i < 50 && !call_done_wait(&b.done, 100); i++)
        pthread_kill(th, SIGUSR1);
    CHECK(call_done_wait(&b.done, 0), "(c) %s: the signal did not end the blocked read",
          how(optin));
    pthread_join(th, NULL);
    CHECK(b.n < 0 && b.err == EINTR, "(c) %s: the reader got %zd (%s), not EINTR", how(optin), b.n,
          strerror(b.err));
    expect_eof(peer, "(c)", optin);
    close(a);
    close(dead[0]);
    close(peer);
}

static void shape_reused(int optin)
{
    int a, p[2];
    struct blocked b;
    pthread_t th;
    int peer = close_under_reader(optin, 400, &b, &th, &a);
    CHECK(pipe(p) == 0, "(d) pipe: %s", strerror(errno));
    int reused = p[0] == a || p[1] == a;
    CHECK(write(p[1], "pipe", 4) == 4, "(d) pipe write");
    reader_gets_late_bytes(&b, th, peer, "(d)", optin);
    char got[4];
    CHECK(read(p[0], got, 4) == 4 && memcmp(got, "pipe", 4) == 0, "(d) %s: the pipe on the "
          "reused number lost its bytes", how(optin));
    expect_eof(peer, "(d)", optin);
    close(p[0]);
    close(p[1]);
    close(peer);
    if (!reused)
        fprintf(stderr, "(d) the number was not given out again (pipe %d %d, socket %d)\n",
                p[0], p[1], a);
}

/* The kernel's state of fd's TCP socket (TCP_ESTABLISHED, TCP_CLOSE_WAIT...). */
static int tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 ? ti.tcpi_state : -1;
}

static void shape_fork(int optin)
{
    int a;
    struct blocked b;
    pthread_t th;
    int peer = close_under_reader(optin, 300, &b, &th, &a);
    pid_t child = fork();
    CHECK(child >= 0, "(e) fork");
    if (child == 0) {
        sleep_ms(3000);
        _exit(0);
    }
    reader_gets_late_bytes(&b, th, peer, "(e)", optin);
    int state = -1;
    for (int i = 0; i < 100 && (state = tcp_state(peer)) != TCP_CLOSE_WAIT; i++)
        sleep_ms(10);
    CHECK(state == TCP_CLOSE_WAIT, "(e) %s: the peer's TCP socket is in state %d, not CLOSE_WAIT, "
          "while a child forked after the close lives", how(optin), state);
    expect_eof(peer, "(e)", optin);
    kill(child, SIGKILL);
    child_status(child);
    close(peer);
}

int main(void)
{
#ifdef UNDER_TSAN
    SKIP("close_blocked: each shape is a close racing a call, which TSan reports");
#endif
    signal(SIGPIPE, SIG_IGN);
    for (int optin = 0; optin <= 1; optin++) {
        shape_reader(optin, 50);
        shape_reader(optin, 400);
        shape_writer(optin);
        shape_java(optin);
        shape_reused(optin);
        shape_fork(optin);
    }
    return 0;
}
