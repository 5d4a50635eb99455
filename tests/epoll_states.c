/* An epoll registration follows its socket through every state change:
 * registered before connect() (EPOLLET, as nginx does for its upstreams),
 * while the offer is pending (the server opted in, or not: then the socket
 * falls back to plain TCP and later MOD/DEL must still work), on a dup'ed
 * descriptor, in a forked child, in two epoll sets at once.  Each case runs
 * with loopfast (both ends opted in, or only the client) and over kernel TCP
 * (neither), and must behave the same: every round's reply arrives through
 * epoll_wait, every epoll_ctl the kernel accepts is accepted. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

#define ROUNDS 20
#define IO_FLAGS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits (at most 3 s) until `ep` reports one of `want` for `tag`. */
static uint32_t wait_event(int ep, uint64_t tag, uint32_t want, const char *what)
{
    uint64_t end = now_ms() + 3000;
    for (;;) {
        struct epoll_event ev[8];
        uint64_t t = now_ms();
        CHECK(t < end, "%s: no event %#x in 3 s", what, want);
        int n = epoll_wait(ep, ev, 8, (int)(end - t));
        CHECK(n >= 0, "%s: epoll_wait: %s", what, strerror(errno));
        uint32_t got = 0;
        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 == tag)
                got |= ev[i].events;
        if (got & want)
            return got;
    }
}

static void add(int ep, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = { .events = events, .data.u64 = tag };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "EPOLL_CTL_ADD: %s", strerror(errno));
}

static void mod(int ep, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = { .events = events, .data.u64 = tag };
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0, "EPOLL_CTL_MOD: %s", strerror(errno));
}

/* One request and its echo, waiting in epoll_wait (on `ep`, where `fd` is
 * registered as `tag` with EPOLLIN) whenever the socket has nothing. */
static void round_trip(int ep, int fd, uint64_t tag, int i)
{
    char out[4096], in[sizeof out];
    size_t len = 100 + (size_t)i * 150;
    memset(out, 'a' + i % 26, len);
    CHECK(write_full(fd, out, len) == (ssize_t)len, "round %d: write: %s", i, strerror(errno));
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, in + got, len - got);
        if (n < 0 && errno == EAGAIN) {
            wait_event(ep, tag, EPOLLIN, "reply");
            continue;
        }
        CHECK(n > 0, "round %d: read: %zd %s", i, n, n ? strerror(errno) : "EOF");
        got += (size_t)n;
    }
    CHECK(!memcmp(in, out, len), "round %d: reply differs", i);
}

static void rounds(int ep, int fd, uint64_t tag)
{
    for (int i = 0; i < ROUNDS; i++)
        round_trip(ep, fd, tag, i);
}

struct server {
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid;
};

static struct server echo(int optin)
{
    struct server s;
    int l = listen_on(AF_INET, optin, &s.addr, &s.len);
    s.pid = fork_echo_server(l);
    close(l);
    return s;
}

/* An echo server that waits 20 ms before each reply: longer than any spin,
 * so the client sleeps in the kernel and only a wake-up brings the reply. */
static struct server slow_echo(int optin)
{
    struct server s;
    int l = listen_on(AF_INET, optin, &s.addr, &s.len);
    s.pid = fork();
    CHECK(s.pid >= 0, "fork");
    if (s.pid == 0) {
        int c = accept(l, NULL, NULL);
        char buf[8192];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0) {
            usleep(20000);
            if (write_full(c, buf, (size_t)n) != n)
                _exit(3);
        }
        _exit(n == 0 ? 10 + loopfast_fd_is_fast(c) : 4);
    }
    close(l);
    return s;
}

static int nb_socket(int optin)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(fd >= 0, "socket");
    if (optin)
        CHECK(opt_in(fd) == 0, "opt in: %s", strerror(errno));
    return fd;
}

static void start_connect(int fd, const struct server *s)
{
    int r = connect(fd, (const struct sockaddr *)&s->addr, s->len);
    CHECK(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
}

/* The connection must be fast exactly when both ends opted in (`mine`: -1
 * when this process's end is not the one that talked). */
static void finish(int fd, const struct server *s, int mine, int fast)
{
    if (mine >= 0)
        CHECK(loopfast_fd_is_fast(fd) == mine, "is_fast %d, want %d", loopfast_fd_is_fast(fd), mine);
    close(fd);
    int st = child_status(s->pid);
    CHECK(fast < 0 ? st == 10 || st == 11 : st == 10 + fast, "echo server: %d", st);
}

/* nginx's upstream: registered edge-triggered before connect(). */
static void before_connect(int client, int server)
{
    struct server s = echo(server);
    int ep = epoll_create1(0), fd = nb_socket(client);
    add(ep, fd, IO_FLAGS, 7);
    start_connect(fd, &s);
    wait_event(ep, 7, EPOLLOUT, "connected");
    rounds(ep, fd, 7);
    close(ep);
    finish(fd, &s, client && server, client && server);
}

/* Registered while pending; against a plain server it falls back, and the
 * program's MOD and DEL must then work as the kernel's do. */
static void while_pending(int client, int server, uint32_t flags)
{
    struct server s = echo(server);
    int ep = epoll_create1(0), fd = nb_socket(client);
    start_connect(fd, &s);
    add(ep, fd, flags, 8);
    wait_event(ep, 8, EPOLLOUT, "connected");
    round_trip(ep, fd, 8, 0);
    mod(ep, fd, EPOLLIN | (flags & EPOLLET), 9);
    round_trip(ep, fd, 9, 1);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0, "EPOLL_CTL_DEL: %s", strerror(errno));
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == -1 && errno == ENOENT, "second DEL: %s",
          strerror(errno));
    struct epoll_event ev = { .events = EPOLLIN };
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == -1 && errno == ENOENT, "MOD after DEL");
    add(ep, fd, flags, 10);
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1 && errno == EEXIST, "second ADD");
    rounds(ep, fd, 10);
    close(ep);
    finish(fd, &s, client && server, client && server);
}

/* The answer is taken by a write, not by epoll_wait: the registration made
 * while pending must then wake for data on the rings. */
static void answer_taken_by_write(int client, int server)
{
    struct server s = slow_echo(server);
    int ep = epoll_create1(0), fd = nb_socket(client);
    start_connect(fd, &s);
    add(ep, fd, EPOLLIN, 11);
    struct pollfd p = { fd, POLLOUT, 0 };
    CHECK(poll(&p, 1, 3000) == 1, "connected");
    usleep(20000);   /* the server has accepted: its answer is queued */
    rounds(ep, fd, 11);
    close(ep);
    finish(fd, &s, client && server, client && server);
}

/* Registered under a dup'ed number, before connect; the traffic uses the
 * original number. */
static void dup_registered(int client, int server)
{
    struct server s = echo(server);
    int ep = epoll_create1(0), fd = nb_socket(client), d = dup(fd);
    CHECK(d >= 0, "dup");
    add(ep, d, IO_FLAGS, 12);
    start_connect(fd, &s);
    wait_event(ep, 12, EPOLLOUT, "connected");
    rounds(ep, fd, 12);
    close(d);
    close(ep);
    finish(fd, &s, client && server, client && server);
}

/* A child registers the inherited socket in its own set (once the parent has
 * connected it, and once before connecting it itself). */
static void in_child(int client, int server, int connect_first)
{
    struct server s = echo(server);
    int fd = nb_socket(client);
    if (connect_first)
        start_connect(fd, &s);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int ep = epoll_create1(0);
        add(ep, fd, IO_FLAGS, 13);
        if (!connect_first)
            start_connect(fd, &s);
        wait_event(ep, 13, EPOLLOUT, "connected");
        rounds(ep, fd, 13);
        /* forked while pending: fast only if the answer was already there
         * (fork settles pending clients, docs/design.md 4.4) */
        if (!connect_first || !(client && server))
            CHECK(loopfast_fd_is_fast(fd) == (client && server), "child: is_fast");
        _exit(0);
    }
    CHECK(child_status(pid) == 0, "child failed");
    finish(fd, &s, -1, connect_first && client && server ? -1 : client && server);
}

/* Two sets hold the socket, one edge-triggered, one level-triggered; the
 * rounds wait on each in turn. */
static void two_sets(int client, int server)
{
    struct server s = echo(server);
    int a = epoll_create1(0), b = epoll_create1(0), fd = nb_socket(client);
    add(a, fd, IO_FLAGS, 14);
    add(b, fd, EPOLLIN, 15);
    start_connect(fd, &s);
    wait_event(a, 14, EPOLLOUT, "connected");
    for (int i = 0; i < ROUNDS; i++)
        round_trip(i % 2 ? a : b, fd, i % 2 ? 14 : 15, i);
    close(a);
    close(b);
    finish(fd, &s, client && server, client && server);
}

/* One thread sleeps in epoll_wait (EPOLLIN|EPOLLET, registered before
 * connect) and reads each reply; the main thread connects and writes, so the
 * socket turns fast while the other thread sleeps. */
struct sleeper { int ep, fd, done[2]; };

static void *sleeper_reads(void *arg)
{
    struct sleeper *z = arg;
    for (int i = 0; i < ROUNDS; i++) {
        size_t len = 100 + (size_t)i * 150, got = 0;
        char in[4096];
        /* The reply comes after this sleep, which has no timeout: only the
         * socket's news ends it (the case's alarm() catches a hang). */
        struct epoll_event ev;
        int n;
        while ((n = epoll_wait(z->ep, &ev, 1, -1)) == 1 && !(ev.events & EPOLLIN))
            ;
        CHECK(n == 1 && ev.data.u64 == 16, "sleeper: epoll_wait %d: %s", n, strerror(errno));
        while (got < len) {
            ssize_t n = read(z->fd, in + got, len - got);
            if (n < 0 && errno == EAGAIN) {
                wait_event(z->ep, 16, EPOLLIN, "sleeper");
                continue;
            }
            CHECK(n > 0, "sleeper: read: %s", n ? strerror(errno) : "EOF");
            got += (size_t)n;
        }
        CHECK(write(z->done[1], "r", 1) == 1, "sleeper: pipe");
    }
    return NULL;
}

static void other_thread_sleeps(int client, int server)
{
    struct server s = slow_echo(server);
    struct sleeper z = { .ep = epoll_create1(0), .fd = nb_socket(client) };
    CHECK(pipe(z.done) == 0, "pipe");
    add(z.ep, z.fd, EPOLLIN | EPOLLET, 16);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, sleeper_reads, &z) == 0, "pthread_create");
    usleep(20000);   /* it sleeps */
    start_connect(z.fd, &s);
    struct pollfd p = { z.fd, POLLOUT, 0 };
    CHECK(poll(&p, 1, 3000) == 1, "connected");
    usleep(20000);   /* the server has accepted: the first write takes its answer */
    for (int i = 0; i < ROUNDS; i++) {
        char out[4096], b;
        size_t len = 100 + (size_t)i * 150;
        memset(out, 'a' + i % 26, len);
        CHECK(write_full(z.fd, out, len) == (ssize_t)len, "write: %s", strerror(errno));
        CHECK(read(z.done[0], &b, 1) == 1, "sleeper's round");
    }
    pthread_join(t, NULL);
    close(z.ep);
    finish(z.fd, &s, client && server, client && server);
}

typedef void (*scenario)(int client, int server);

static void wp_level(int c, int s) { while_pending(c, s, EPOLLIN | EPOLLOUT); }
static void wp_edge(int c, int s) { while_pending(c, s, IO_FLAGS); }
static void child_after(int c, int s) { in_child(c, s, 1); }
static void child_before(int c, int s) { in_child(c, s, 0); }

int main(void)
{
    static const struct { const char *name; scenario fn; } cases[] = {
        { "before connect, EPOLLET", before_connect },
        { "while pending, level", wp_level },
        { "while pending, EPOLLET", wp_edge },
        { "answer taken by a write", answer_taken_by_write },
        { "dup'ed descriptor", dup_registered },
        { "child, connected by parent", child_after },
        { "child, registered before connect", child_before },
        { "two sets", two_sets },
        { "another thread sleeps in epoll_wait", other_thread_sleeps },
    };
    /* client, server opted in: kernel TCP, one-sided, both */
    static const int modes[][2] = { { 0, 0 }, { 1, 0 }, { 1, 1 } };
    int failed = 0;
    /* EPOLL_STATES_ONLY: a case's name, to run it alone; with
     * EPOLL_STATES_MODE="1 1" too, in this process (for debuggers) */
    const char *only = getenv("EPOLL_STATES_ONLY");
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (only && strcmp(only, cases[i].name))
                continue;
            if (only && getenv("EPOLL_STATES_MODE")) {   /* "client server": no fork */
                int mc, ms;
                if (sscanf(getenv("EPOLL_STATES_MODE"), "%d %d", &mc, &ms) != 2 ||
                    mc != modes[m][0] || ms != modes[m][1])
                    continue;
                cases[i].fn(mc, ms);
                return 0;
            }
            /* each case in a child of its own, so that every failure shows */
            pid_t pid = fork();
            CHECK(pid >= 0, "fork");
            if (pid == 0) {
                alarm(10);
                cases[i].fn(modes[m][0], modes[m][1]);
                _exit(0);
            }
            int st = child_status(pid);
            fprintf(stderr, "%s client %d server %d: %s\n", st ? "FAIL" : "ok  ", modes[m][0],
                    modes[m][1], cases[i].name);
            failed += st != 0;
        }
    return failed != 0;
}
