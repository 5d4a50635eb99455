/* No wake-up is lost for idle epoll registrations.  100 connections sit in
 * one epoll set; most stay idle for many waits (the set sleeps and times out
 * with nothing ready), then a peer process writes to a few of them while the
 * set sleeps: every written connection must be reported with exactly its
 * bytes, none other.  Level-triggered, EPOLLET (partly read edges),
 * EPOLLONESHOT (re-armed by EPOLL_CTL_MOD, or left disabled while data
 * comes), EPOLLOUT after a full send buffer, the same socket also read by a
 * blocking read() in another thread, by poll(), by a second epoll set, a set
 * used by a forked child (and by the parent after it), and a peer's shutdown
 * or close.  Each case runs over kernel TCP (nothing opted in) and with
 * loopfast (both ends opted in and fast) and must behave the same.  A wait
 * for news has no timeout (an ending timeout makes loopfast look at the rings
 * again, which would hide a lost wake-up); a 3 s watchdog turns one that is
 * never woken into a FAIL naming the case and the wait, never a hang.
 * Found on the first run: two waiters asleep at once for one fast socket
 * (poll() in a thread and epoll_wait, or two sets in two threads) - the one
 * that reads the doorbell first leaves the other asleep in the kernel.
 * EPOLL_IDLE_WAKE_ONLY=<case name> runs one case, EPOLL_IDLE_WAKE_SKIP=<part
 * of names> leaves cases out. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

#define CONNS 100
#define WATCH_S 3         /* a wait for news longer than this is a lost wake-up */
#define IDLE_WAITS 3      /* timed-out waits with nothing ready before each round's writes */
#define IDLE_MS 2

enum op { OP_WRITE, OP_READ, OP_SHUT, OP_CLOSE, OP_SYNC, OP_FAST };

struct cmd {
    int32_t op, idx, len, delay_us;
};

/* This process's end of one connection. */
struct conn {
    int fd;
    uint32_t events;       /* registered in the main set */
    uint64_t rx, tx_expect;  /* bytes read, bytes the peer was asked to write */
    uint64_t tx;           /* bytes this end wrote (the EPOLLOUT case) */
    int want;              /* must be reported in the current phase */
    int want_eof, eof, rdhup, closed;
    int reported;          /* in the current phase */
    int stopped;           /* the last report was read only in part, on purpose */
    int armed;             /* EPOLLONESHOT: not yet fired since the last MOD */
};

static const char *what = "";   /* the case running, for every message */
static int optin;
static struct conn c[CONNS];
static int ep, cmd_fd, rep_fd;
static pid_t peer;
static uint64_t rng = 88172645463325252ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for news have no timeout: loopfast looks at the rings again when a
 * timeout ends, which would hide a lost wake-up.  A watchdog ends the case
 * instead, naming the wait that was never woken. */
static char step[400];

static void watchdog(int sig)
{
    (void)sig;
    char msg[600];
    int n = snprintf(msg, sizeof msg, "FAIL %s: LOST WAKE-UP: %s: nothing in %d s\n", what, step,
                     WATCH_S);
    if (write(2, msg, (size_t)n) < 0)
        _exit(1);
    _exit(1);
}

static void watch(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(step, sizeof step, fmt, ap);
    va_end(ap);
    alarm(WATCH_S);
}

static void unwatch(void)
{
    alarm(0);
}

/* Byte k of the stream on connection i, towards this process (dir 0) or
 * towards the peer (dir 1). */
static unsigned char pat(int i, uint64_t k, int dir)
{
    return (unsigned char)(i * (dir ? 17 : 131) + k * 7 + (k >> 9) + dir);
}

/* ---- the peer: a process holding the other end of every connection and
 * doing what the control pipe says, in order ---- */

static int peer_conn[CONNS];
static uint64_t peer_out[CONNS], peer_in[CONNS];

static void peer_do(const struct cmd *m, int rep)
{
    static unsigned char buf[1 << 16];
    int fd = peer_conn[m->idx];
    if (m->delay_us)
        usleep((useconds_t)m->delay_us);
    unsigned char ok = 0;
    switch (m->op) {
    case OP_WRITE:
        for (int k = 0; k < m->len; k++)
            buf[k] = pat(m->idx, peer_out[m->idx] + (uint64_t)k, 0);
        if (write_full(fd, buf, (size_t)m->len) != m->len)
            _exit(3);
        peer_out[m->idx] += (uint64_t)m->len;
        return;
    case OP_READ:
        for (int64_t left = m->len; left > 0;) {
            size_t want = left < (int64_t)sizeof buf ? (size_t)left : sizeof buf;
            ssize_t n = read(fd, buf, want);
            if (n <= 0) {
                ok = 1;
                break;
            }
            for (ssize_t k = 0; k < n; k++)
                if (buf[k] != pat(m->idx, peer_in[m->idx] + (uint64_t)k, 1))
                    ok = 2;
            peer_in[m->idx] += (uint64_t)n;
            left -= n;
        }
        break;
    case OP_SHUT:
        shutdown(fd, SHUT_WR);
        return;
    case OP_CLOSE:
        close(fd);
        return;
    case OP_SYNC:
        break;
    case OP_FAST:
        for (int i = 0; i < CONNS; i++)
            ok += (unsigned char)(loopfast_fd_is_fast(peer_conn[i]) == 1);
        break;
    }
    if (write(rep, &ok, 1) != 1)
        _exit(4);
}

static void peer_main(int l, int cmd, int rep)
{
    alarm(30);
    for (int k = 0; k < CONNS; k++) {
        int s = accept(l, NULL, NULL);
        uint16_t idx;
        if (s < 0 || read_full(s, &idx, sizeof idx) != sizeof idx || idx >= CONNS)
            _exit(2);
        peer_conn[idx] = s;
        if (write_full(s, "h", 1) != 1)
            _exit(2);
    }
    close(l);
    struct cmd m;
    ssize_t n;
    while ((n = read(cmd, &m, sizeof m)) == sizeof m)
        peer_do(&m, rep);
    _exit(n == 0 ? 0 : 5);
}

static void tell(int op, int idx, int len, int delay_us)
{
    struct cmd m = { op, idx, len, delay_us };
    CHECK(write(cmd_fd, &m, sizeof m) == sizeof m, "%s: control pipe: %s", what, strerror(errno));
}

/* The peer's next answer (it has done everything told before). */
static unsigned char answer(void)
{
    struct pollfd p = { rep_fd, POLLIN, 0 };
    CHECK(poll(&p, 1, 10000) == 1, "%s: the peer did not answer in 10 s", what);
    unsigned char b;
    CHECK(read(rep_fd, &b, 1) == 1, "%s: the peer died", what);
    return b;
}

static void peer_write(int i, int len, int delay_us)
{
    c[i].tx_expect += (uint64_t)len;
    tell(OP_WRITE, i, len, delay_us);
}

/* ---- the set ---- */

static void ctl(int set, int op, int i, uint32_t events)
{
    struct epoll_event e = { .events = events, .data.u64 = (uint64_t)i };
    CHECK(epoll_ctl(set, op, c[i].fd, &e) == 0, "%s: epoll_ctl(%d) conn %d: %s", what, op, i,
          strerror(errno));
}

/* A few waits that sleep and time out: nothing may be reported. */
static void idle_waits(int set, int count)
{
    for (int k = 0; k < count; k++) {
        struct epoll_event ev[8];
        int n = epoll_wait(set, ev, 8, k < count - 1 ? IDLE_MS : 0);
        CHECK(n >= 0, "%s: epoll_wait: %s", what, strerror(errno));
        CHECK(n == 0, "%s: conn %d reported (events %#x) with nothing new on it", what,
              (int)ev[0].data.u64, ev[0].events);
    }
}

/* Reads what conn i has, at most `limit` bytes (0: until EAGAIN or EOF),
 * checking every byte; returns the bytes read. */
static uint64_t take(int i, uint64_t limit)
{
    unsigned char buf[8192];
    uint64_t got = 0;
    c[i].stopped = 0;
    for (;;) {
        size_t want = sizeof buf;
        if (limit && limit - got < want)
            want = (size_t)(limit - got);
        ssize_t n = recv(c[i].fd, buf, want, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            return got;
        CHECK(n >= 0, "%s: conn %d: read: %s", what, i, strerror(errno));
        if (n == 0) {
            CHECK(c[i].want_eof, "%s: conn %d: EOF, the peer did not close", what, i);
            CHECK(c[i].rx == c[i].tx_expect, "%s: conn %d: EOF after %llu of %llu bytes", what, i,
                  (unsigned long long)c[i].rx, (unsigned long long)c[i].tx_expect);
            c[i].eof = 1;
            return got;
        }
        for (ssize_t k = 0; k < n; k++)
            CHECK(buf[k] == pat(i, c[i].rx + (uint64_t)k, 0), "%s: conn %d: byte %llu differs",
                  what, i, (unsigned long long)(c[i].rx + (uint64_t)k));
        c[i].rx += (uint64_t)n;
        got += (uint64_t)n;
        CHECK(c[i].rx <= c[i].tx_expect, "%s: conn %d: more bytes than the peer wrote", what, i);
        if (limit && got == limit) {
            c[i].stopped = c[i].rx < c[i].tx_expect;
            return got;
        }
    }
}


static int done(int i)
{
    if (!c[i].reported)
        return 0;
    if (c[i].want_eof)
        return c[i].closed;
    return c[i].rx == c[i].tx_expect || c[i].stopped;
}

/* How a report is handled: read all, or (EPOLLET) maybe only a part; for
 * EPOLLONESHOT re-arm, or leave disabled. */
struct policy {
    int partial;       /* read at most a random part, half the time */
    int rearm_pct;     /* EPOLLONESHOT: re-arm this often once all is read */
};

static void handle(int set, int i, uint32_t events, const struct policy *p)
{
    uint32_t allowed = (c[i].events & (EPOLLIN | EPOLLRDHUP));
    CHECK(!(events & ~allowed), "%s: conn %d: events %#x, registered for %#x", what, i, events,
          c[i].events);
    CHECK(events & EPOLLIN, "%s: conn %d: events %#x without EPOLLIN", what, i, events);
    uint64_t got = take(i, p->partial && rnd(2) ? 1 + rnd(3000) : 0);
    /* The kernel never reports a socket that then has nothing to read, not
     * even the peer's FIN before it is readable (tests/eof_readiness.c). */
    CHECK(got || c[i].eof, "%s: conn %d reported EPOLLIN (events %#x) with nothing to read"
          " (read %llu of %llu)", what, i, events, (unsigned long long)c[i].rx,
          (unsigned long long)c[i].tx_expect);
    c[i].reported = 1;
    if (c[i].eof) {
        c[i].rdhup |= (events & EPOLLRDHUP) != 0;
        /* EPOLLRDHUP, when asked, comes with the FIN: in this report or
         * (it arrived after the wait) in the next */
        if (!(c[i].events & EPOLLRDHUP) || c[i].rdhup) {
            CHECK(epoll_ctl(set, EPOLL_CTL_DEL, c[i].fd, NULL) == 0, "%s: DEL", what);
            close(c[i].fd);
            c[i].closed = 1;
        }
        return;
    }
    if (c[i].events & EPOLLONESHOT) {
        c[i].armed = 0;
        if (c[i].rx < c[i].tx_expect || (int)rnd(100) < p->rearm_pct) {
            ctl(set, EPOLL_CTL_MOD, i, c[i].events);
            c[i].armed = 1;
        }
    }
}

static void missing(char *out, size_t len)
{
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < CONNS && k + 24 < len; i++)
        if (c[i].want && !done(i))
            k += (size_t)snprintf(out + k, len - k, " %d(read %llu of %llu)", i,
                                  (unsigned long long)c[i].rx, (unsigned long long)c[i].tx_expect);
}

/* Waits on `set` until every wanted conn is reported and read; any other
 * report is a failure, except for `ignore` (another reader's). */
static void collect(int set, const struct policy *p, int ignore)
{
    for (int i = 0; i < CONNS; i++)
        c[i].reported = 0;
    for (;;) {
        int left = 0;
        for (int i = 0; i < CONNS; i++)
            left += c[i].want && !done(i);
        if (!left)
            break;
        char list[300];
        missing(list, sizeof list);
        watch("epoll_wait: written, not reported:%s", list);
        struct epoll_event ev[64];
        int n = epoll_wait(set, ev, 64, -1);
        unwatch();
        CHECK(n >= 0, "%s: epoll_wait: %s", what, strerror(errno));
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u64;
            if (i == ignore)
                continue;
            CHECK(i >= 0 && i < CONNS && !c[i].closed, "%s: unknown data %llu", what,
                  (unsigned long long)ev[k].data.u64);
            CHECK(c[i].want && !done(i), "%s: conn %d reported (events %#x) with nothing new on it"
                  " (want %d eof %d/%d rdhup %d read %llu of %llu)", what, i, ev[k].events,
                  c[i].want, c[i].want_eof, c[i].eof, c[i].rdhup, (unsigned long long)c[i].rx,
                  (unsigned long long)c[i].tx_expect);
            handle(set, i, ev[k].events, p);
        }
    }
    for (int i = 0; i < CONNS; i++)
        c[i].want = 0;
}

/* One round: the set sleeps idle a few times, then the peer writes to a few
 * conns (the first write after 10 ms, while the set sleeps). */
static void round_in(int set, const struct policy *p, int last)
{
    idle_waits(set, IDLE_WAITS);
    int chosen[CONNS] = { 0 }, count = 1 + (int)rnd(8), first = 1;
    for (int k = 0; k < count; k++) {
        int i = (int)rnd(CONNS);
        chosen[i] = !c[i].want_eof;   /* not those the peer shut down */
    }
    for (int i = 0; i < CONNS; i++)
        if (c[i].stopped)   /* EPOLLET left bytes: only new data reports it again */
            chosen[i] = 1;
    struct policy now = *p;
    if (last)
        now.partial = 0;
    for (int i = 0; i < CONNS; i++) {
        if (!chosen[i])
            continue;
        c[i].want = !(c[i].events & EPOLLONESHOT) || c[i].armed;
        peer_write(i, 1 + (int)rnd(2000), first ? 10000 : (int)rnd(2) * (int)rnd(2000));
        if (!p->partial && !rnd(4))   /* a second arrival, after the first was read maybe */
            peer_write(i, 1 + (int)rnd(2000), 2000);
        first = 0;
    }
    collect(set, &now, -1);
    tell(OP_SYNC, 0, 0, 0);
    CHECK(answer() == 0, "%s: sync", what);
    /* EPOLLONESHOT: what came while disabled is reported by the re-arming MOD */
    for (int i = 0; i < CONNS; i++)
        if ((c[i].events & EPOLLONESHOT) && !c[i].armed) {
            c[i].want = c[i].rx < c[i].tx_expect;
            ctl(set, EPOLL_CTL_MOD, i, c[i].events);
            c[i].armed = 1;
        }
    struct policy rearm = now;
    rearm.rearm_pct = 100;
    collect(set, &rearm, -1);
    idle_waits(set, 1);
}

static void all_read(void)
{
    for (int i = 0; i < CONNS; i++)
        CHECK(c[i].closed || c[i].rx == c[i].tx_expect, "%s: conn %d: read %llu of %llu", what, i,
              (unsigned long long)c[i].rx, (unsigned long long)c[i].tx_expect);
}

static void register_all(uint32_t events)
{
    for (int i = 0; i < CONNS; i++) {
        c[i].events = events;
        c[i].armed = 1;
        ctl(ep, EPOLL_CTL_ADD, i, events);
    }
}

static void rounds(int set, const struct policy *p, int n)
{
    for (int r = 0; r < n; r++)
        round_in(set, p, r == n - 1);
    all_read();
}

/* ---- the cases ---- */

static void level(void)
{
    register_all(EPOLLIN);
    struct policy p = { 0, 0 };
    rounds(ep, &p, 25);
}

static void edge(void)
{
    register_all(EPOLLIN | EPOLLET);
    struct policy p = { 1, 0 };
    rounds(ep, &p, 25);
}

static void oneshot(void)
{
    register_all(EPOLLIN | EPOLLONESHOT);
    struct policy p = { 0, 60 };
    rounds(ep, &p, 25);
}

/* Writes to conn i until its send buffer (or ring) is full, and stays full:
 * a delayed ACK freeing room later would make the kernel's socket writable
 * again, so it fills again until a write after a pause finds no room. */
static void fill(int i)
{
    static unsigned char buf[1 << 16];
    for (int tries = 0; tries < 50; tries++) {
        uint64_t before = c[i].tx;
        for (;;) {
            for (size_t k = 0; k < sizeof buf; k++)
                buf[k] = pat(i, c[i].tx + k, 1);
            ssize_t n = send(c[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && errno == EAGAIN)
                break;
            CHECK(n > 0, "%s: conn %d: write: %s", what, i, strerror(errno));
            c[i].tx += (uint64_t)n;
        }
        if (tries && c[i].tx == before)
            return;
        usleep(20000);
    }
    FAIL("%s: conn %d: the send buffer never stayed full", what, i);
}

/* EPOLLOUT for conns whose send buffer is full, level and edge-triggered:
 * the set sleeps idle, then the peer drains them. */
static void writable(void)
{
    register_all(EPOLLIN);
    for (int r = 0; r < 3; r++) {
        int out[4];
        uint64_t start[4];
        for (int k = 0; k < 4; k++) {
            out[k] = 10 + 20 * k + (int)rnd(20);
            start[k] = c[out[k]].tx;
            fill(out[k]);
            c[out[k]].events = EPOLLIN | EPOLLOUT | (k % 2 ? EPOLLET : 0);
            ctl(ep, EPOLL_CTL_MOD, out[k], c[out[k]].events);
        }
        idle_waits(ep, IDLE_WAITS);
        for (int k = 0; k < 4; k++)
            tell(OP_READ, out[k], (int)(c[out[k]].tx - start[k]), k ? 0 : 10000);
        int seen[4] = { 0 }, left = 4;
        while (left) {
            watch("EPOLLOUT after the peer drained conns %d %d %d %d: %d not reported", out[0],
                  out[1], out[2], out[3], left);
            struct epoll_event ev[64];
            int n = epoll_wait(ep, ev, 64, -1);
            unwatch();
            CHECK(n >= 0, "%s: epoll_wait: %s", what, strerror(errno));
            for (int j = 0; j < n; j++) {
                int i = (int)ev[j].data.u64, k = 0;
                while (k < 4 && out[k] != i)
                    k++;
                CHECK(k < 4 && !seen[k], "%s: conn %d reported (events %#x), not drained", what, i,
                      ev[j].events);
                CHECK(ev[j].events == EPOLLOUT, "%s: conn %d: events %#x, want EPOLLOUT", what, i,
                      ev[j].events);
                seen[k] = 1;
                left--;
                c[i].events = EPOLLIN;
                ctl(ep, EPOLL_CTL_MOD, i, EPOLLIN);
            }
        }
        for (int k = 0; k < 4; k++)
            CHECK(answer() == 0, "%s: the peer read wrong bytes or EOF", what);
        idle_waits(ep, 1);
    }
}

/* ---- the same socket, X (conn 0, blocking), read by other means too ---- */

#define X 0

struct helper {
    pthread_t t;
    int set;          /* for the epoll helper */
    uint64_t len;     /* for the reader */
    int ok;
};

static void *blocking_reader(void *arg)
{
    struct helper *h = arg;
    unsigned char buf[4096];
    /* blocking, no timeout: the main thread's watchdog catches a hang */
    ssize_t n = read_full(c[X].fd, buf, (size_t)h->len);
    h->ok = n == (ssize_t)h->len;
    for (ssize_t k = 0; h->ok && k < n; k++)
        h->ok = buf[k] == pat(X, c[X].rx + (uint64_t)k, 0);
    return NULL;
}

static void *poller(void *arg)
{
    struct helper *h = arg;
    struct pollfd p = { c[X].fd, POLLIN, 0 };
    h->ok = poll(&p, 1, -1) == 1 && p.revents == POLLIN;
    return NULL;
}

static void *epoller(void *arg)
{
    struct helper *h = arg;
    while (!h->ok) {
        struct epoll_event ev[8];
        int n = epoll_wait(h->set, ev, 8, -1);
        if (n < 0)
            return NULL;
        for (int k = 0; k < n; k++)
            h->ok |= ev[k].data.u64 == X && (ev[k].events & EPOLLIN);
    }
    return NULL;
}

/* EPOLL_IDLE_WAKE_TRACE=1: each step of the mixed cases, with the time. */
static void trace(const char *step)
{
    static int on = -1;
    static uint64_t t0;
    if (on < 0) {
        on = getenv("EPOLL_IDLE_WAKE_TRACE") != NULL;
        t0 = now_ms();
    }
    if (on)
        fprintf(stderr, "%6llu ms %s: %s\n", (unsigned long long)(now_ms() - t0), what, step);
}

static void start(struct helper *h, void *(*fn)(void *))
{
    h->ok = 0;
    CHECK(pthread_create(&h->t, NULL, fn, h) == 0, "pthread_create");
    usleep(2000);   /* most often it sleeps before the data comes; either way is right */
}

static void joined(struct helper *h, const char *step)
{
    watch("%s: the other thread's wait was not woken", step);
    pthread_join(h->t, NULL);
    unwatch();
    CHECK(h->ok, "%s: %s: the other thread's wait failed", what, step);
}

/* Waits until `set` reports X readable, reading nothing; others must be quiet. */
static void wait_reported(int set, const char *step)
{
    for (;;) {
        watch("%s: epoll_wait: conn %d written, not reported", step, X);
        struct epoll_event ev[8];
        int n = epoll_wait(set, ev, 8, -1);
        unwatch();
        CHECK(n >= 0, "%s: epoll_wait: %s", what, strerror(errno));
        for (int k = 0; k < n; k++) {
            CHECK(ev[k].data.u64 == X, "%s: %s: conn %d reported, nothing new on it", what, step,
                  (int)ev[k].data.u64);
            if (ev[k].events & EPOLLIN)
                return;
        }
    }
}

/* Later data on X must still be reported by the main set. */
static void still_reported(const char *step)
{
    static const struct policy p = { 0, 100 };
    idle_waits(ep, IDLE_WAITS);
    peer_write(X, 1 + (int)rnd(2000), 10000);
    c[X].want = 1;
    collect(ep, &p, -1);
    trace(step);
}

static void read_all_x(void)
{
    while (c[X].rx < c[X].tx_expect) {
        struct pollfd p = { c[X].fd, POLLIN, 0 };
        watch("poll: conn %d written, not readable", X);
        CHECK(poll(&p, 1, -1) == 1, "%s: conn %d: poll: %s", what, X, strerror(errno));
        unwatch();
        take(X, 0);
    }
}

/* X blocking, registered in the main set with `xflags`, and in a second set
 * `b` with conns 0-9 (level-triggered). */
static int mixed_setup(uint32_t xflags)
{
    register_all(EPOLLIN);
    c[X].events = xflags;
    ctl(ep, EPOLL_CTL_MOD, X, xflags);
    int fl = fcntl(c[X].fd, F_GETFL);
    CHECK(fcntl(c[X].fd, F_SETFL, fl & ~O_NONBLOCK) == 0, "fcntl");
    int b = epoll_create1(0);
    CHECK(b >= 0, "epoll_create1");
    for (int i = 0; i < 10; i++)
        ctl(b, EPOLL_CTL_ADD, i, EPOLLIN);
    return b;
}

/* One other reader at a time takes X's data (or a wake-up); then epoll. */
static void mixed_in_turn(uint32_t xflags)
{
    static const struct policy p = { 0, 100 };
    int b = mixed_setup(xflags);
    struct helper h = { .set = b };
    for (int r = 0; r < 3; r++) {
        /* (a) a blocking read() in another thread takes the data while this
         * thread sleeps in epoll_wait for another conn, Y */
        idle_waits(ep, IDLE_WAITS);
        h.len = 1 + rnd(2000);
        start(&h, blocking_reader);
        int y = 10 + (int)rnd(CONNS - 10);
        c[X].tx_expect += h.len;
        tell(OP_WRITE, X, (int)h.len, 10000);
        peer_write(y, 1 + (int)rnd(2000), 2000);
        c[y].want = 1;
        collect(ep, &p, X);   /* X may or may not be reported meanwhile: not read here */
        joined(&h, "blocking read");
        c[X].rx += h.len;
        still_reported("after a blocking read");

        /* (b1) poll() sees the data, read() takes it */
        peer_write(X, 1 + (int)rnd(2000), 10000);
        struct pollfd pf = { c[X].fd, POLLIN, 0 };
        watch("poll: conn %d written, not readable", X);
        CHECK(poll(&pf, 1, -1) == 1 && pf.revents == POLLIN, "%s: poll: %#x", what, pf.revents);
        unwatch();
        read_all_x();
        still_reported("after poll and read");

        /* (b2) poll() sees the data; epoll must see it too */
        peer_write(X, 1 + (int)rnd(2000), 10000);
        watch("poll: conn %d written, not readable", X);
        CHECK(poll(&pf, 1, -1) == 1 && pf.revents == POLLIN, "%s: poll: %#x", what, pf.revents);
        unwatch();
        c[X].want = 1;
        collect(ep, &p, -1);
        idle_waits(ep, IDLE_WAITS);

        /* (c1) a second set reports and the data is read */
        idle_waits(b, IDLE_WAITS);
        peer_write(X, 1 + (int)rnd(2000), 10000);
        wait_reported(b, "second set");
        read_all_x();
        idle_waits(b, 1);
        still_reported("after the second set");

        /* (c2) a second set reports, nothing read: the first must report */
        peer_write(X, 1 + (int)rnd(2000), 10000);
        wait_reported(b, "second set, unread");
        c[X].want = 1;
        collect(ep, &p, -1);
        idle_waits(b, 1);
        idle_waits(ep, 1);
    }
    all_read();
    close(b);
}

/* Two waiters asleep at once for X, in two threads: both are woken, as by
 * the kernel (each wait looks at the socket when the data comes). */
static void mixed_at_once(uint32_t xflags, int second_set)
{
    int b = mixed_setup(xflags);
    struct helper h = { .set = b };
    for (int r = 0; r < 5; r++) {
        idle_waits(ep, IDLE_WAITS);
        if (!second_set) {
            /* (b3) another thread sleeps in poll() while this one sleeps
             * in epoll_wait */
            start(&h, poller);
            peer_write(X, 1 + (int)rnd(2000), 10000);
            wait_reported(ep, "poll in another thread");
            joined(&h, "poll in another thread");
            read_all_x();
            still_reported("after poll in another thread");
            continue;
        }
        /* (c3) both sets sleep, in two threads */
        start(&h, epoller);
        peer_write(X, 1 + (int)rnd(2000), 10000);
        trace("two sets asleep: data coming");
        wait_reported(ep, "two sets asleep");
        trace("two sets asleep: reported by the first");
        joined(&h, "two sets asleep");
        trace("two sets asleep: reported by the second");
        read_all_x();
        idle_waits(b, 1);
        still_reported("after two sets asleep");
    }
    all_read();
    close(b);
}

static void in_turn_level(void) { mixed_in_turn(EPOLLIN); }
static void in_turn_edge(void) { mixed_in_turn(EPOLLIN | EPOLLET); }
static void poll_at_once_level(void) { mixed_at_once(EPOLLIN, 0); }
static void poll_at_once_edge(void) { mixed_at_once(EPOLLIN | EPOLLET, 0); }
static void sets_at_once_level(void) { mixed_at_once(EPOLLIN, 1); }
static void sets_at_once_edge(void) { mixed_at_once(EPOLLIN | EPOLLET, 1); }

/* The set and its conns made before fork(); the child waits on it alone,
 * then (the child gone) the parent again. */
static void forked(void)
{
    register_all(EPOLLIN);
    struct policy p = { 0, 0 };
    rounds(ep, &p, 3);
    int state[2];
    CHECK(pipe(state) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        what = "fork: in the child";
        rounds(ep, &p, 12);
        for (int i = 0; i < CONNS; i++)
            CHECK(write(state[1], &c[i].rx, sizeof c[i].rx) == sizeof c[i].rx, "state");
        exit(0);
    }
    int st = child_status(pid);
    CHECK(st == 0, "%s: the child failed (%d)", what, st);
    for (int i = 0; i < CONNS; i++) {   /* what the child read is gone */
        CHECK(read(state[0], &c[i].rx, sizeof c[i].rx) == sizeof c[i].rx, "state");
        c[i].tx_expect = c[i].rx;
    }
    close(state[0]);
    close(state[1]);
    what = "fork: the parent after the child";
    rounds(ep, &p, 10);
}

/* The peer shuts down or closes idle conns (some after a last write):
 * EPOLLIN, EPOLLRDHUP when asked, then EOF. */
static void peer_closes(void)
{
    static const uint32_t flags[4] = { EPOLLIN, EPOLLIN | EPOLLRDHUP, EPOLLIN | EPOLLET,
                                       EPOLLIN | EPOLLRDHUP | EPOLLET };
    register_all(EPOLLIN);
    for (int i = 0; i < CONNS; i++) {
        c[i].events = flags[i % 4];
        ctl(ep, EPOLL_CTL_MOD, i, c[i].events);
    }
    static const struct policy p = { 0, 0 };
    for (int r = 0; r < 8; r++) {
        idle_waits(ep, IDLE_WAITS);
        for (int k = 0, first = 1; k < 4; k++) {
            int i = (int)rnd(CONNS);
            if (c[i].want_eof)
                continue;
            if (rnd(2))
                peer_write(i, 1 + (int)rnd(2000), first ? 10000 : 0);
            int op = rnd(2) ? OP_SHUT : OP_CLOSE;
            tell(op, i, 0, first ? 10000 : 1000);
            if (getenv("EPOLL_IDLE_WAKE_TRACE"))
                fprintf(stderr, "conn %d: %s after %llu bytes\n", i, op == OP_SHUT ? "shutdown" :
                        "close", (unsigned long long)c[i].tx_expect);
            c[i].want = c[i].want_eof = 1;
            first = 0;
        }
        collect(ep, &p, -1);
        idle_waits(ep, 1);
    }
    struct policy q = { 0, 0 };
    rounds(ep, &q, 3);   /* the others still work */
}

/* ---- set-up: CONNS connections to the peer, fast on both ends or neither ---- */

static void setup(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int cmdp[2], repp[2];
    CHECK(pipe(cmdp) == 0 && pipe(repp) == 0, "pipe");
    peer = fork();
    CHECK(peer >= 0, "fork");
    if (peer == 0) {
        close(cmdp[1]);
        close(repp[0]);
        peer_main(l, cmdp[0], repp[1]);
    }
    close(l);
    close(cmdp[0]);
    close(repp[1]);
    cmd_fd = cmdp[1];
    rep_fd = repp[0];
    for (int i = 0; i < CONNS; i++) {
        uint16_t idx = (uint16_t)i;
        char b;
        c[i].fd = connect_to(&addr, len, optin);
        CHECK(write_full(c[i].fd, &idx, sizeof idx) == sizeof idx && read_full(c[i].fd, &b, 1) == 1,
              "%s: conn %d: first exchange", what, i);
        CHECK(loopfast_fd_is_fast(c[i].fd) == optin, "%s: conn %d: is_fast %d", what, i,
              loopfast_fd_is_fast(c[i].fd));
        CHECK(fcntl(c[i].fd, F_SETFL, O_NONBLOCK) == 0, "fcntl");
    }
    tell(OP_FAST, 0, 0, 0);
    unsigned char fast = answer();
    CHECK(fast == (optin ? CONNS : 0), "%s: %d of the peer's ends fast", what, fast);
    ep = epoll_create1(0);
    CHECK(ep >= 0, "epoll_create1");
}

static void teardown(void)
{
    close(cmd_fd);
    int st = child_status(peer);
    CHECK(st == 0, "%s: the peer failed (%d)", what, st);
}

/* The case's exit status; a backstop kills it after 15 s (a wait outside
 * the watchdog, or the watchdog itself, hung). */
static int finished(pid_t pid)
{
    int st;
    for (int ms = 0; ms < 15000; ms += 5) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        CHECK(r >= 0, "waitpid");
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(5000);
    }
    kill(pid, SIGKILL);
    return child_status(pid);
}

int main(int argc, char **argv)
{
    (void)argc;
    lift_fd_cap(argv);
    static const struct { const char *name; void (*fn)(void); } cases[] = {
        { "level-triggered EPOLLIN", level },
        { "EPOLLET, edges read in part", edge },
        { "EPOLLONESHOT, re-armed by MOD", oneshot },
        { "EPOLLOUT after a full buffer", writable },
        { "blocking read, poll, second set in turn (level)", in_turn_level },
        { "blocking read, poll, second set in turn (EPOLLET)", in_turn_edge },
        { "asleep at once: poll in a thread (level)", poll_at_once_level },
        { "asleep at once: poll in a thread (EPOLLET)", poll_at_once_edge },
        { "asleep at once: second set in a thread (level)", sets_at_once_level },
        { "asleep at once: second set in a thread (EPOLLET)", sets_at_once_edge },
        { "fork: the child waits on the set", forked },
        { "peer shutdown and close", peer_closes },
    };
    const char *only = getenv("EPOLL_IDLE_WAKE_ONLY");   /* a case's name */
    const char *skip = getenv("EPOLL_IDLE_WAKE_SKIP");   /* a part of names */
    int failed = 0;
    for (int m = 0; m < 2; m++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            if ((only && strcmp(only, cases[k].name)) || (skip && strstr(cases[k].name, skip)))
                continue;
            pid_t pid = fork();   /* each case alone, so that every failure shows */
            CHECK(pid >= 0, "fork");
            if (pid == 0) {
                signal(SIGALRM, watchdog);
                what = cases[k].name;
                optin = m;
                rng += k * 7919;
                setup();
                cases[k].fn();
                teardown();
                exit(0);
            }
            int st = finished(pid);
            fprintf(stderr, "%s %-8s %s%s\n", st ? "FAIL" : "ok  ", m ? "loopfast" : "kernel",
                    cases[k].name, st == 128 + SIGKILL ? " (hung: killed after 15 s)" : "");
            failed += st != 0;
        }
    return failed != 0;
}
