/* A writer that must not wait keeps to a window of 256 KiB in flight while
 * its reader drains it, and the window grows to the whole capacity while
 * its reader takes nothing (docs/design.md, 5: the pace).  Over kernel TCP
 * and loopfast:
 * - a reader busy elsewhere (a pause of 1 ms after each 64 KiB, as an
 *   event loop serving other connections): a non-blocking writer's bytes
 *   in flight (SIOCOUTQ) stay near the window (median at most 1 MiB;
 *   the kernel's is printed), where they filled the ring's 4 MB hold: 50
 *   such connections spread their copies over memory the caches do not
 *   hold (build/bench_conns_bulk);
 * - a reader that reads nothing: writes until 10 passes 20 ms apart find no
 *   room take as much as the kernel's socket does (at least 90% of it),
 *   and every byte arrives once the reader reads;
 * - the window's growth is an edge: EPOLLOUT|EPOLLET registered after the
 *   refusal, or registered before and gone idle, reports within 1 s with
 *   nobody reading;
 * - a refused writer that then waits only for EPOLLIN (or POLLIN) for 300
 *   ms sleeps: under 50 ms of CPU;
 * - one call that offers 2 MB takes them all, as the kernel's does (Java
 *   NIO pays per call for all it offers: 3x the kernel's time in 256 KiB
 *   calls). */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <linux/sockios.h>

#include "helpers.h"

#define WINDOW (256 << 10)
#define STREAM (16u << 20)
#define PIECE (64u << 10)

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static unsigned char byte_at(uint64_t pos)
{
    return (unsigned char)(pos * 131 >> 7);
}

/* The reader process: reads everything until EOF, checking each byte (a
 * pause of `pause_us` after each read); exits 0 when `want` bytes came. */
static void read_checked(int s, uint64_t want, int start_fd, int pause_us)
{
    char go;
    if (start_fd >= 0 && read(start_fd, &go, 1) != 1)
        _exit(5);
    static unsigned char b[PIECE];
    uint64_t pos = 0;
    for (;;) {
        ssize_t n = read(s, b, sizeof b);
        if (n == 0)
            _exit(pos == want ? 0 : 3);
        if (n < 0)
            _exit(2);
        for (ssize_t i = 0; i < n; i++)
            if (b[i] != byte_at(pos + (uint64_t)i))
                _exit(4);
        pos += (uint64_t)n;
        if (pause_us)
            usleep((useconds_t)pause_us);
    }
}

static pid_t fork_reader(int c, int s, uint64_t want, int start_fd, int pause_us)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(c);
        read_checked(s, want, start_fd, pause_us);
    }
    close(s);
    return pid;
}

/* Writes what a poll says it may, from *pos; returns the bytes taken. */
static ssize_t write_some(int c, uint64_t *pos, size_t most)
{
    static unsigned char b[PIECE];
    size_t n = most < sizeof b ? most : sizeof b;
    for (size_t i = 0; i < n; i++)
        b[i] = byte_at(*pos + i);
    ssize_t w = send(c, b, n, MSG_DONTWAIT);
    if (w > 0)
        *pos += (uint64_t)w;
    return w;
}

static int by_value(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return a < b ? -1 : a > b;
}

static int busy_reader(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    pid_t reader = fork_reader(c, s, STREAM, -1, 1000);
    static int outq[STREAM / PIECE * 4];
    size_t samples = 0;
    uint64_t pos = 0;
    while (pos < STREAM) {
        struct pollfd p = { .fd = c, .events = POLLOUT };
        CHECK(poll(&p, 1, 5000) == 1, "%s: no POLLOUT in 5 s", optin ? "loopfast" : "kernel");
        ssize_t w = write_some(c, &pos, STREAM - pos);
        CHECK(w > 0 || errno == EAGAIN, "write: %s", strerror(errno));
        int q = 0;
        if (w > 0 && samples < sizeof outq / sizeof outq[0] && ioctl(c, SIOCOUTQ, &q) == 0)
            outq[samples++] = q;
    }
    close(c);
    CHECK(child_status(reader) == 0, "%s: the reader failed (%d)", optin ? "loopfast" : "kernel",
          child_status(reader));
    qsort(outq, samples, sizeof outq[0], by_value);
    int median = samples ? outq[samples / 2] : -1;
    printf("%s, a reader busy elsewhere: %u MiB, in flight after a write: median %d KiB, most %d KiB\n",
           optin ? "loopfast" : "kernel", STREAM >> 20, median >> 10,
           samples ? outq[samples - 1] >> 10 : -1);
    return median;
}

/* Writes until 10 passes 20 ms apart find no room: the bytes taken. */
static uint64_t fill_settled(int c, uint64_t *pos)
{
    uint64_t start = *pos;
    for (int quiet = 0; quiet < 10;) {
        ssize_t w = write_some(c, pos, PIECE);
        if (w > 0) {
            quiet = 0;
            continue;
        }
        CHECK(errno == EAGAIN, "write: %s", strerror(errno));
        usleep(20000);
        quiet++;
    }
    return *pos - start;
}

static uint64_t idle_reader(int optin)
{
    int c, s, start[2];
    CHECK(pipe(start) == 0, "pipe");
    fast_pair(AF_INET, optin, &c, &s);
    uint64_t pos = 0, first;
    /* the first refusal */
    while (write_some(c, &pos, PIECE) > 0)
        ;
    first = pos;
    uint64_t total = first + fill_settled(c, &pos);
    pid_t reader = fork_reader(c, s, total, start[0], 0);
    CHECK(write(start[1], "g", 1) == 1, "start");
    close(c);
    CHECK(child_status(reader) == 0, "%s: the reader failed (%d)", optin ? "loopfast" : "kernel",
          child_status(reader));
    printf("%s, a reader that reads nothing: the first EAGAIN after %lu KiB, %lu KiB once "
           "settled, all read back\n",
           optin ? "loopfast" : "kernel", (unsigned long)(first >> 10),
           (unsigned long)(total >> 10));
    close(start[0]), close(start[1]);
    return total;
}

/* Refused at the window: EPOLLET's EPOLLOUT comes from the growth alone;
 * before that, waits for input only sleep. */
static void edges_and_sleeps(void)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    uint64_t pos = 0;
    while (write_some(c, &pos, PIECE) > 0)
        ;
    CHECK(pos <= 2 * WINDOW, "the first refusal after %lu KiB, not at the window",
          (unsigned long)(pos >> 10));
    double t0 = cpu_ms();
    struct pollfd p = { .fd = c, .events = POLLIN };
    CHECK(poll(&p, 1, 150) == 0, "poll(POLLIN) reported %#x", p.revents);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN }, out;
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "epoll_ctl");
    CHECK(epoll_wait(ep, &out, 1, 150) == 0, "epoll_wait(EPOLLIN) reported %#x", out.events);
    double used = cpu_ms() - t0;
    printf("refused at the window, 300 ms waiting for input: %.1f ms of CPU\n", used);
    CHECK(used < 50, "%.1f ms of CPU in 300 ms of waits for input: the window's clock spins",
          used);
    /* a new refusal, then the edge of the growth */
    while (write_some(c, &pos, PIECE) > 0)
        ;
    ev.events = EPOLLOUT | EPOLLET;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev) == 0, "epoll_ctl MOD");
    CHECK(epoll_wait(ep, &out, 1, 1000) == 1 && (out.events & EPOLLOUT),
          "no EPOLLOUT edge within 1 s of a refusal with nobody reading");
    CHECK(write_some(c, &pos, PIECE) > 0, "EPOLLOUT, then no room: %s", strerror(errno));
    close(ep), close(c), close(s);
}

/* An edge-triggered record that went idle (waits with nothing new) before
 * the writer was refused at the window: the growth's edge still comes (it
 * did not: no look at an idle record without a doorbell).  And the waits
 * with nothing new report nothing, as the kernel's (TCP's own first
 * EPOLLOUT edge was reported as a second one). */
static void idle_record_edge(void)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLET }, out;
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "epoll_ctl");
    CHECK(epoll_wait(ep, &out, 1, 1000) == 1, "the first EPOLLOUT");
    for (int k = 0; k < 20; k++)   /* nothing new: the record goes idle */
        CHECK(epoll_wait(ep, &out, 1, k % 2 ? 0 : 2) == 0, "an edge with nothing new");
    uint64_t pos = 0;
    while (write_some(c, &pos, PIECE) > 0)
        ;
    CHECK(epoll_wait(ep, &out, 1, 1000) == 1 && (out.events & EPOLLOUT),
          "no EPOLLOUT edge within 1 s for an idle record, refused at %lu KiB with nobody reading",
          (unsigned long)(pos >> 10));
    close(ep), close(c), close(s);
}

static ssize_t big_offer(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    static unsigned char b[2u << 20];
    ssize_t n = send(c, b, sizeof b, MSG_DONTWAIT);
    printf("%s: one non-blocking call offering 2 MiB took %zd\n", optin ? "loopfast" : "kernel", n);
    close(c), close(s);
    return n;
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    busy_reader(0);
    int median = busy_reader(1);
    /* (at most 1 MiB: a loaded machine may hold the reader past 5 ms, and
     * the window grows; without it, the median is the 2.8 MB hold) */
    CHECK(median >= 0 && median <= 4 * WINDOW,
          "a busy reader's writer keeps a median %d KiB in flight (window: %d KiB)",
          median >> 10, WINDOW >> 10);
    uint64_t kernel = idle_reader(0), fast = idle_reader(1);
    CHECK(fast >= kernel / 10 * 9, "a reader that reads nothing: loopfast took %lu KiB, the "
          "kernel %lu KiB", (unsigned long)(fast >> 10), (unsigned long)(kernel >> 10));
    edges_and_sleeps();
    idle_record_edge();
    CHECK(big_offer(0) == 2 << 20 && big_offer(1) == 2 << 20, "a big offer was cut short");
    return 0;
}
