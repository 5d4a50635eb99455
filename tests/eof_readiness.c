/* A peer's shutdown or close is reported readable only once a read would
 * not block.  The kernel reports EPOLLIN/POLLIN (and EPOLLRDHUP/POLLRDHUP)
 * for a peer's FIN only when the FIN (or data) is in the receive queue: a
 * non-blocking read right after such a report returns bytes or 0, never
 * EAGAIN, and after EPOLLRDHUP reading on ends with 0.  Many connections,
 * each peer end does shutdown(SHUT_WR), close(), write-then-close or
 * write-then-shutdown at various moments: right after connect/accept (no
 * byte yet), after a byte one way, after a byte each way (both switched),
 * and close() while another of its threads is inside poll() on the socket
 * (the kernel sends the FIN only once that poll lets go of the file).
 * The reader waits with epoll (level, EPOLLET, each with and without
 * EPOLLRDHUP; EPOLLET|EPOLLONESHOT re-armed after one more wait), poll
 * (with and without POLLRDHUP) and select, as the client and as the server; every case over kernel TCP and with both ends fast.
 * EOF_READINESS_ONLY=<mode> runs one waiting mode (or oneshot-after-fin). */
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "helpers.h"

#define CONNS 40
#define ROUNDS 3
#define WATCH_S 10

enum mode { M_EPOLL, M_EPOLL_RDHUP, M_EPOLL_ET, M_EPOLL_ET_RDHUP, M_EPOLL_ONESHOT, M_POLL,
            M_POLL_RDHUP, M_SELECT, M_COUNT };
static const char *mode_name[M_COUNT] = { "epoll", "epoll+rdhup", "epoll-et", "epoll-et+rdhup",
                                          "epoll-et-oneshot", "poll", "poll+rdhup", "select" };

enum op { OP_SHUT, OP_CLOSE };

/* What the peer does on one connection. */
struct script {
    int exch;       /* before acting: 0 no byte, 1 a byte client->server, 2 and one back */
    int early;      /* act at once (else when the reader waits) */
    int op;         /* enum op */
    int len;        /* bytes written just before */
    int delay_us;
    int holder;     /* OP_CLOSE while another thread polls the socket */
};

static struct script sc[CONNS];
static const char *what = "";
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void plan(void)
{
    static const int delays[] = { 0, 0, 5, 20, 100, 500 };
    for (int i = 0; i < CONNS; i++) {
        struct script *s = &sc[i];
        s->exch = (int)rnd(3);
        s->early = s->exch == 0 ? 1 : !rnd(4);
        s->op = (int)rnd(2);
        s->len = rnd(2) ? 0 : 1 + (int)rnd(3000);
        s->delay_us = delays[rnd(sizeof delays / sizeof delays[0])];
        s->holder = s->op == OP_CLOSE && !rnd(5);
    }
}

/* ---- the peer ---- */

static void *holder(void *arg)
{
    struct pollfd p = { *(int *)arg, POLLIN, 0 };
    poll(&p, 1, 20);   /* holds the file: the FIN waits for this to return */
    return NULL;
}

static uint64_t peer_act(int fd, const struct script *s, pthread_t *th, int *th_fd)
{
    static char buf[4096];
    if (s->delay_us)
        usleep((useconds_t)s->delay_us);
    if (s->len) {
        memset(buf, 'x', sizeof buf);
        if (write_full(fd, buf, (size_t)s->len) != s->len)
            _exit(3);
    }
    if (s->op == OP_SHUT) {
        shutdown(fd, SHUT_WR);
        return (uint64_t)s->len;
    }
    if (s->holder) {
        *th_fd = fd;
        if (pthread_create(th, NULL, holder, th_fd) != 0)
            _exit(3);
        usleep(2000);   /* most likely inside poll() by now */
    }
    close(fd);
    return (uint64_t)s->len;
}

/* The peer: its end of each connection (as client when the reader is the
 * server), a byte exchange as planned, the early acts; the others when the
 * reader says go; then the bytes written, on `rep`. */
static void peer_main(int reader_is_client, int l, const struct sockaddr_storage *addr,
                      socklen_t alen, int optin, int cmd, int rep)
{
    alarm(30);
    int fd[CONNS];
    pthread_t th[CONNS];
    int th_fd[CONNS], threads[CONNS] = { 0 };
    uint64_t wrote = 0;
    char b;
    for (int i = 0; i < CONNS; i++) {
        if (reader_is_client) {
            fd[i] = accept(l, NULL, NULL);
            if (fd[i] < 0 || (sc[i].exch >= 1 && read_full(fd[i], &b, 1) != 1) ||
                (sc[i].exch == 2 && write_full(fd[i], "b", 1) != 1))
                _exit(2);
        } else {
            fd[i] = connect_to(addr, alen, optin);
            if (sc[i].exch >= 1 && write_full(fd[i], "a", 1) != 1)
                _exit(2);
        }
        if (sc[i].early) {
            /* the reader reads the exchange's bytes of an early act as data */
            wrote += (uint64_t)(reader_is_client ? sc[i].exch == 2 : sc[i].exch >= 1);
            wrote += peer_act(fd[i], &sc[i], &th[i], &th_fd[i]);
            threads[i] = sc[i].holder;
        }
    }
    if (l >= 0)
        close(l);
    for (int i = 0; i < CONNS; i++)
        if (!reader_is_client && sc[i].exch == 2 && !sc[i].early && read_full(fd[i], &b, 1) != 1)
            _exit(2);
    if (read(cmd, &b, 1) != 1)
        _exit(4);
    for (int k = 0; k < CONNS; k++) {
        int i = (k * 7 + 3) % CONNS;   /* not in the order of connect */
        if (sc[i].early)
            continue;
        wrote += peer_act(fd[i], &sc[i], &th[i], &th_fd[i]);
        threads[i] = sc[i].holder;
    }
    for (int i = 0; i < CONNS; i++)
        if (threads[i])
            pthread_join(th[i], NULL);
    if (write(rep, &wrote, sizeof wrote) != sizeof wrote)
        _exit(4);
    (void)!read(cmd, &b, 1);   /* the reader is done: shut-down ends may go */
    _exit(0);
}

/* ---- the reader ---- */

struct rconn {
    int fd, done;
    uint64_t got;
};

static struct rconn rc[CONNS];
static uint64_t reports, eofs, data_reports;

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL eof_readiness: a peer's end was never reported\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

/* A report of conn i: reads until EAGAIN or EOF.  The first read must not
 * block, and after a report of the peer's FIN (RDHUP) no read may. */
static void on_report(int ep, int i, int in, int rdhup, unsigned events)
{
    static char buf[8192];
    reports++;
    if (!in && !rdhup)
        return;
    for (int first = 1;; first = 0) {
        ssize_t n = recv(rc[i].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            rc[i].got += (uint64_t)n;
            data_reports += first;
            continue;
        }
        if (n == 0) {
            eofs++;
            if (ep >= 0)
                CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, rc[i].fd, NULL) == 0, "%s: DEL", what);
            close(rc[i].fd);
            rc[i].done = 1;
            return;
        }
        CHECK(errno == EAGAIN || errno == EWOULDBLOCK, "%s: conn %d: read: %s", what, i,
              strerror(errno));
        CHECK(!first, "%s: conn %d (exch %d early %d %s len %d holder %d) reported (events %#x)"
              " but a read would block", what, i, sc[i].exch, sc[i].early,
              sc[i].op == OP_SHUT ? "shutdown" : "close", sc[i].len, sc[i].holder, events);
        CHECK(!rdhup, "%s: conn %d (exch %d early %d %s len %d) reported the peer's FIN (events"
              " %#x) but a read after %llu bytes would block", what, i, sc[i].exch,
              sc[i].early, sc[i].op == OP_SHUT ? "shutdown" : "close", sc[i].len, events,
              (unsigned long long)rc[i].got);
        return;
    }
}

static int left(void)
{
    int n = 0;
    for (int i = 0; i < CONNS; i++)
        n += !rc[i].done;
    return n;
}

static void wait_epoll(enum mode m)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1");
    uint32_t events = EPOLLIN;
    if (m == M_EPOLL_RDHUP || m == M_EPOLL_ET_RDHUP)
        events |= EPOLLRDHUP;
    if (m == M_EPOLL_ET || m == M_EPOLL_ET_RDHUP)
        events |= EPOLLET;
    if (m == M_EPOLL_ONESHOT)
        events |= EPOLLET | EPOLLONESHOT;
    for (int i = 0; i < CONNS; i++) {
        struct epoll_event e = { .events = events, .data.u32 = (uint32_t)i };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, rc[i].fd, &e) == 0, "%s: ADD: %s", what,
              strerror(errno));
    }
    /* EPOLLONESHOT: a fired conn is re-armed only after one more wait, so
     * that what comes meanwhile is taken in while it is disabled */
    int rearm[CONNS], nrearm = 0;
    while (left()) {
        struct epoll_event ev[16];
        int had = nrearm;
        int n = epoll_wait(ep, ev, 16, had ? 1 : -1);
        CHECK(n >= 0 || errno == EINTR, "%s: epoll_wait: %s", what, strerror(errno));
        for (int k = 0; k < n; k++) {
            int i = (int)ev[k].data.u32;
            CHECK(!rc[i].done, "%s: conn %d reported after its EOF", what, i);
            on_report(ep, i, (ev[k].events & EPOLLIN) != 0, (ev[k].events & EPOLLRDHUP) != 0,
                      ev[k].events);
            if ((events & EPOLLONESHOT) && !rc[i].done)
                rearm[nrearm++] = i;
        }
        for (int k = 0; k < had; k++) {   /* re-armed: reports what is there now */
            int i = rearm[k];
            struct epoll_event e = { .events = events, .data.u32 = (uint32_t)i };
            CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, rc[i].fd, &e) == 0, "%s: MOD", what);
        }
        memmove(rearm, rearm + had, (size_t)(nrearm - had) * sizeof rearm[0]);
        nrearm -= had;
    }
    close(ep);
}

static void wait_poll(enum mode m)
{
    short events = POLLIN | (m == M_POLL_RDHUP ? POLLRDHUP : 0);
    while (left()) {
        struct pollfd p[CONNS];
        int idx[CONNS], np = 0;
        for (int i = 0; i < CONNS; i++)
            if (!rc[i].done) {
                p[np] = (struct pollfd){ rc[i].fd, events, 0 };
                idx[np++] = i;
            }
        int n = poll(p, (nfds_t)np, -1);
        CHECK(n > 0 || (n < 0 && errno == EINTR), "%s: poll: %s", what, strerror(errno));
        for (int k = 0; k < np && n > 0; k++)
            if (p[k].revents)
                on_report(-1, idx[k], (p[k].revents & POLLIN) != 0,
                          (p[k].revents & POLLRDHUP) != 0, (unsigned)p[k].revents);
    }
}

static void wait_select(void)
{
    while (left()) {
        fd_set r;
        FD_ZERO(&r);
        int max = -1;
        for (int i = 0; i < CONNS; i++)
            if (!rc[i].done) {
                CHECK(rc[i].fd < FD_SETSIZE, "fd above FD_SETSIZE");
                FD_SET(rc[i].fd, &r);
                max = rc[i].fd > max ? rc[i].fd : max;
            }
        int n = select(max + 1, &r, NULL, NULL, NULL);
        CHECK(n > 0 || (n < 0 && errno == EINTR), "%s: select: %s", what, strerror(errno));
        for (int i = 0; i < CONNS && n > 0; i++)
            if (!rc[i].done && FD_ISSET(rc[i].fd, &r))
                on_report(-1, i, 1, 0, 1);
    }
}

/* The reader's ends, in the peer's order, with the planned byte exchange. */
static void reader_ends(int reader_is_client, int l, const struct sockaddr_storage *addr,
                        socklen_t alen, int optin)
{
    char b;
    for (int i = 0; i < CONNS; i++) {
        rc[i] = (struct rconn){ -1, 0, 0 };
        if (reader_is_client) {
            rc[i].fd = connect_to(addr, alen, optin);
            if (sc[i].exch >= 1)
                CHECK(write_full(rc[i].fd, "a", 1) == 1, "%s: write", what);
        } else {
            rc[i].fd = accept(l, NULL, NULL);
            CHECK(rc[i].fd >= 0, "%s: accept: %s", what, strerror(errno));
        }
    }
    for (int i = 0; i < CONNS; i++) {
        if (reader_is_client && sc[i].exch == 2 && !sc[i].early)
            CHECK(read_full(rc[i].fd, &b, 1) == 1 && b == 'b', "%s: conn %d: no reply", what, i);
        if (!reader_is_client && sc[i].exch >= 1 && !sc[i].early)
            CHECK(read_full(rc[i].fd, &b, 1) == 1 && b == 'a', "%s: conn %d: no byte", what, i);
        if (!reader_is_client && sc[i].exch == 2 && !sc[i].early)
            CHECK(write_full(rc[i].fd, "b", 1) == 1, "%s: write", what);
    }
}

static int fast_count;

static void one_run(int optin, int reader_is_client, enum mode m)
{
    char name[128];
    snprintf(name, sizeof name, "%s, reader is the %s, %s", optin ? "loopfast" : "kernel",
             reader_is_client ? "client" : "server", mode_name[m]);
    what = name;
    plan();
    struct sockaddr_storage addr;
    socklen_t alen;
    int l = listen_on(AF_INET, optin, &addr, &alen);
    int cmd[2], rep[2];
    CHECK(pipe(cmd) == 0 && pipe(rep) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(cmd[1]);
        close(rep[0]);
        peer_main(reader_is_client, reader_is_client ? l : -1, &addr, alen, optin, cmd[0], rep[1]);
    }
    close(cmd[0]);
    close(rep[1]);
    reader_ends(reader_is_client, l, &addr, alen, optin);
    close(l);
    for (int i = 0; i < CONNS; i++)
        fast_count += loopfast_fd_is_fast(rc[i].fd) == 1;
    alarm(WATCH_S);
    CHECK(write(cmd[1], "g", 1) == 1, "go");
    if (m == M_SELECT)
        wait_select();
    else if (m == M_POLL || m == M_POLL_RDHUP)
        wait_poll(m);
    else
        wait_epoll(m);
    alarm(0);
    uint64_t wrote = 0, got = 0;
    CHECK(read(rep[0], &wrote, sizeof wrote) == sizeof wrote, "%s: the peer's count", what);
    for (int i = 0; i < CONNS; i++)
        got += rc[i].got;
    CHECK(got == wrote, "%s: read %llu bytes, the peer wrote %llu", what,
          (unsigned long long)got, (unsigned long long)wrote);
    close(cmd[1]);
    close(rep[0]);
    CHECK(child_status(pid) == 0, "%s: peer failed", what);
}

/* EPOLLET|EPOLLONESHOT: the peer's FIN comes while the record is disabled
 * (it fired for EPOLLOUT) and a wait takes it in; the re-arming MOD must
 * report it, as the kernel's does.  The peer's byte went on TCP (we were
 * not ready yet) and it closes without writing again: its direction never
 * switched, so that only TCP can say a read would not block. */
static void oneshot_after_fin(int optin)
{
    what = optin ? "loopfast, EPOLLONESHOT re-armed after the FIN" :
                   "kernel, EPOLLONESHOT re-armed after the FIN";
    struct sockaddr_storage addr;
    socklen_t alen;
    int l = listen_on(AF_INET, optin, &addr, &alen);
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(30);
        close(go[1]);
        int s = accept(l, NULL, NULL);
        char b;
        if (s < 0 || read_full(s, &b, 1) != 1 || write_full(s, "b", 1) != 1 ||
            read(go[0], &b, 1) != 1)
            _exit(2);
        close(s);
        _exit(0);
    }
    close(go[0]);
    close(l);
    int c = connect_to(&addr, alen, optin);
    char b;
    CHECK(write_full(c, "a", 1) == 1 && read_full(c, &b, 1) == 1, "%s: exchange", what);
    CHECK(loopfast_fd_is_fast(c) == optin, "%s: fast %d", what, loopfast_fd_is_fast(c));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = { .events = EPOLLOUT | EPOLLET | EPOLLONESHOT }, ev[4];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &e) == 0, "%s: ADD", what);
    CHECK(epoll_wait(ep, ev, 4, 5000) == 1 && ev[0].events == EPOLLOUT, "%s: no EPOLLOUT", what);
    CHECK(write(go[1], "g", 1) == 1, "go");
    CHECK(child_status(pid) == 0, "%s: peer failed", what);
    /* The FIN came (asked of the kernel behind loopfast's back, so that
     * loopfast hears of it only from the wait below, the record disabled). */
    struct pollfd p = { c, POLLRDHUP, 0 };
    struct timespec ts = { 5, 0 };
    CHECK(syscall(SYS_ppoll, &p, 1, &ts, NULL, (size_t)8) == 1, "%s: no FIN", what);
    int n = epoll_wait(ep, ev, 4, 0);
    CHECK(n == 0, "%s: a disabled record reported (%#x)", what, n > 0 ? ev[0].events : 0);
    e.events = EPOLLIN | EPOLLET | EPOLLONESHOT;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, c, &e) == 0, "%s: MOD", what);
    CHECK(epoll_wait(ep, ev, 4, 5000) == 1 && (ev[0].events & EPOLLIN), "%s: the re-armed record"
          " did not report the FIN", what);
    CHECK(recv(c, &b, 1, MSG_DONTWAIT) == 0, "%s: no EOF", what);
    close(ep);
    close(c);
    close(go[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, watchdog);
    const char *only = getenv("EOF_READINESS_ONLY");
    for (int optin = 0; optin <= 1; optin++) {
        fast_count = 0;
        reports = eofs = data_reports = 0;
        for (int m = 0; m < M_COUNT; m++) {
            if (only && strcmp(only, mode_name[m]))
                continue;
            for (int r = 0; r < ROUNDS; r++)
                for (int side = 0; side <= 1; side++)
                    one_run(optin, side, (enum mode)m);
        }
        printf("%s: %llu reports, %llu with data first, %llu EOFs; %d reader ends fast\n",
               optin ? "loopfast" : "kernel", (unsigned long long)reports,
               (unsigned long long)data_reports, (unsigned long long)eofs, fast_count);
        if (optin && !only)
            CHECK(fast_count > 0, "no connection was fast");
        if (!only || !strcmp(only, "oneshot-after-fin"))
            oneshot_after_fin(optin);
    }
    return 0;
}
