/* An idle fast connection gives its ring pages back, as the kernel frees an
 * idle socket's buffers: 50 connections each move 2 MiB each way (every
 * fifth leaves 40000 bytes unread in the client-to-server ring), both
 * processes go idle in (a) a blocking read, (b) epoll_wait, (c) poll; within
 * 5 s (required: 2 s) the loopfast memfd mappings of each process keep at
 * most 64 KiB per connection plus headers and the unread bytes, and the
 * machine's Shmem has dropped.  Then every connection moves more data, and
 * every byte, including the unread ones that idled through the punches, is
 * checked.  Last, one connection streams random sizes with random pauses
 * long enough for idle trims to happen while bytes are in flight. */
#include <poll.h>
#include <sys/epoll.h>
#include <time.h>

#include "helpers.h"

#define CONNS 50
#define BULK (2u << 20)
#define UNREAD 40000u          /* left in the ring of every fifth connection */
#define MORE (300u << 10)      /* moved after the idle phase */
#define KEEP_KB 64             /* what an idle connection may keep, per process */

enum { C2S, S2C };

/* The byte at offset `pos` of connection i's stream in direction d. */
static unsigned char pattern(unsigned i, unsigned d, uint64_t pos)
{
    uint64_t x = (pos >> 3) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)i << 40 | (uint64_t)d << 56);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return (unsigned char)(x >> (8 * (pos & 7)));
}

static unsigned char buf[1 << 17];

static void send_stream(int fd, unsigned i, unsigned d, uint64_t *pos, size_t len)
{
    while (len) {
        size_t n = len < sizeof buf ? len : sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = pattern(i, d, *pos + k);
        if (write_full(fd, buf, n) != (ssize_t)n)
            _exit(20);
        *pos += n;
        len -= n;
    }
}

static void recv_stream(int fd, unsigned i, unsigned d, uint64_t *pos, size_t len)
{
    while (len) {
        size_t n = len < sizeof buf ? len : sizeof buf;
        if (read_full(fd, buf, n) != (ssize_t)n)
            _exit(21);
        for (size_t k = 0; k < n; k++)
            if (buf[k] != pattern(i, d, *pos + k)) {
                fprintf(stderr, "conn %u dir %u: byte %llu corrupt\n", i, d,
                        (unsigned long long)(*pos + k));
                _exit(22);
            }
        *pos += n;
        len -= n;
    }
}

static volatile sig_atomic_t woken;
static void on_usr1(int sig) { (void)sig; woken = 1; }

/* Sleeps in loopfast until SIGUSR1 (installed without SA_RESTART). */
static void idle(char mode, const int *fd, const int *quiet, int n)
{
    char b;
    if (mode == 'a') {
        while (!woken) {   /* the peer, woken first, may send already */
            ssize_t r = recv(fd[0], &b, 1, MSG_PEEK);
            if (r == 1)
                return;
            if (r != -1 || errno != EINTR)
                _exit(30);
        }
        return;
    }
    struct pollfd p[CONNS];
    int ep = epoll_create1(0), k = 0;
    for (int i = 0; i < n; i++) {
        if (!quiet[i])
            continue;   /* readable: would not let the wait sleep */
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd[i] };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev) == 0, "epoll_ctl");
        p[k++] = (struct pollfd){ .fd = fd[i], .events = POLLIN };
    }
    while (!woken) {
        struct epoll_event ev[8];
        int r = mode == 'b' ? epoll_wait(ep, ev, 8, -1) : poll(p, (nfds_t)k, -1);
        if (r > 0)
            break;   /* the peer, woken first, sends already */
        if (r != -1 || errno != EINTR)
            _exit(31);
    }
    close(ep);
}

static void tell(int status_fd)
{
    if (write(status_fd, "x", 1) != 1)
        _exit(40);
}

static void client(const struct sockaddr_storage *addr, socklen_t len, char mode, int status_fd)
{
    int fd[CONNS], quiet[CONNS];
    uint64_t tx[CONNS] = { 0 }, rx[CONNS] = { 0 };
    for (unsigned i = 0; i < CONNS; i++) {
        fd[i] = connect_to(addr, len, 1);
        send_stream(fd[i], i, C2S, &tx[i], BULK);
        recv_stream(fd[i], i, S2C, &rx[i], BULK);
        if (i % 5 == 4)
            send_stream(fd[i], i, C2S, &tx[i], UNREAD);
        if (!loopfast_fd_is_fast(fd[i]))
            _exit(23);
        quiet[i] = 1;
    }
    tell(status_fd);
    idle(mode, fd, quiet, CONNS);
    for (unsigned i = 0; i < CONNS; i++) {
        send_stream(fd[i], i, C2S, &tx[i], MORE);
        recv_stream(fd[i], i, S2C, &rx[i], MORE);
        close(fd[i]);
    }
    _exit(0);
}

static void server(int l, char mode, int status_fd)
{
    int fd[CONNS], quiet[CONNS];
    uint64_t tx[CONNS] = { 0 }, rx[CONNS] = { 0 };
    for (unsigned i = 0; i < CONNS; i++) {
        fd[i] = accept(l, NULL, NULL);
        if (fd[i] < 0)
            _exit(24);
        recv_stream(fd[i], i, C2S, &rx[i], BULK);
        send_stream(fd[i], i, S2C, &tx[i], BULK);
        quiet[i] = i % 5 != 4;
    }
    tell(status_fd);
    idle(mode, fd, quiet, CONNS);
    for (unsigned i = 0; i < CONNS; i++) {
        recv_stream(fd[i], i, C2S, &rx[i], (i % 5 == 4 ? UNREAD : 0) + MORE);
        send_stream(fd[i], i, S2C, &tx[i], MORE);
    }
    for (unsigned i = 0; i < CONNS; i++)
        if (read(fd[i], buf, 1) != 0)
            _exit(25);
    _exit(0);
}

static long shmem_kb(void)
{
    return proc_field("/proc/meminfo", "Shmem: %ld kB");
}

static pid_t children[2];

/* A failed check must not leave the idle ends behind. */
static void kill_children(void)
{
    for (int i = 0; i < 2; i++)
        if (children[i] > 0)
            kill(children[i], SIGKILL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void idle_case(char mode)
{
    long shmem_before = shmem_kb();
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    int status[2];
    CHECK(pipe(status) == 0, "pipe");
    pid_t srv = fork();
    if (srv == 0 && alarm(100) == 0)
        server(l, mode, status[1]);
    close(l);
    pid_t cli = fork();
    if (cli == 0 && alarm(100) == 0)
        client(&addr, len, mode, status[1]);
    close(status[1]);
    children[0] = cli;
    children[1] = srv;
    char b[2];
    if (read_full(status[0], b, 2) != 2) {
        int sc = child_status(cli), ss = child_status(srv);
        FAIL("(%c) bulk phase: client exit %d, server exit %d", mode, sc, ss);
    }
    double t0 = now_s(), t;
    long bound = CONNS * (KEEP_KB + 4) + 4 + (CONNS / 5) * (UNREAD / 1024 + 8);
    long rc, rs, sh;
    do {
        usleep(100000);
        rc = loopfast_rss_kb(cli);
        rs = loopfast_rss_kb(srv);
        sh = shmem_kb() - shmem_before;
        t = now_s() - t0;
    } while ((rc > bound || rs > bound) && t < 5);
    printf("(%c) idle after %.1f s: loopfast Rss client %ld KiB, server %ld KiB (bound %ld); "
           "Shmem +%ld KiB (untrimmed: %u)\n", mode, t, rc, rs, bound, sh, CONNS * 2 * BULK / 2048);
    CHECK(rc >= 0 && rc <= bound && rs >= 0 && rs <= bound, "(%c) ring pages not given back", mode);
    /* Shmem is the machine's: other processes move it too; half is plenty. */
    CHECK(sh < (long)(CONNS * BULK / 1024), "(%c) Shmem did not drop: +%ld KiB", mode, sh);
    kill(cli, SIGUSR1);
    kill(srv, SIGUSR1);
    int sc = child_status(cli), ss = child_status(srv);
    CHECK(sc == 0 && ss == 0, "(%c) data after the idle phase: client %d, server %d", mode, sc, ss);
    close(status[0]);
    children[0] = children[1] = 0;
}

/* Random sizes and pauses on one connection; the pauses (sleeps in poll on
 * the connection, which loopfast cuts short to trim) outlast a trim round. */
static void stream_case(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    const uint64_t total = 24u << 20;
    pid_t rd = fork();
    if (rd == 0 && alarm(100) == 0) {
        int s = accept(l, NULL, NULL);
        uint64_t pos = 0;
        srand(7);
        while (pos < total) {
            size_t n = 1 + (size_t)rand() % (200000);
            if (n > total - pos)
                n = (size_t)(total - pos);
            recv_stream(s, 0, C2S, &pos, n);
            if (rand() % 40 == 0) {
                struct pollfd p = { .fd = s, .events = 0 };
                poll(&p, 1, 300 + rand() % 700);
            }
        }
        _exit(read(s, buf, 1) == 0 ? 0 : 26);
    }
    close(l);
    int c = connect_to(&addr, len, 1);
    uint64_t pos = 0;
    srand(11);
    while (pos < total) {
        size_t n = 1 + (size_t)rand() % (300000);
        if (n > total - pos)
            n = (size_t)(total - pos);
        send_stream(c, 0, C2S, &pos, n);
        if (rand() % 40 == 0) {
            struct pollfd p = { .fd = c, .events = 0 };
            poll(&p, 1, 300 + rand() % 700);
        }
    }
    CHECK(loopfast_fd_is_fast(c) == 1, "stream not fast");
    close(c);
    CHECK(child_status(rd) == 0, "stream with trims: corrupt or short");
}

int main(int argc, char **argv)
{
    (void)argc;
    lift_fd_cap(argv);
    alarm(110);
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa = { .sa_handler = on_usr1 };   /* no SA_RESTART: the wait ends */
    sigaction(SIGUSR1, &sa, NULL);
    atexit(kill_children);
    if (loopfast_rss_kb(getpid()) < 0 || shmem_kb() < 0)
        SKIP("no /proc/self/smaps or Shmem in /proc/meminfo");
    idle_case('a');
    idle_case('b');
    idle_case('c');
    stream_case();
    return 0;
}
