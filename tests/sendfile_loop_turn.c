/* A non-blocking sendfile() onto a fast socket takes 256 KiB a turn of its
 * thread's event loop (between two of its epoll_wait/poll/select calls),
 * then says EAGAIN once though the ring has room, and the next wait says
 * writable at once, to EPOLLET too: an event loop that sends until EAGAIN
 * (nginx) then looks at its other clients, and a new one is not left in
 * the accept queue for seconds.  A program that calls again without a wait
 * is served.  Then an edge-triggered loop sends 8 MiB on each of 4
 * connections to a slow reader, over kernel TCP and over loopfast: every
 * byte arrives, and the loop never waits for an edge that does not come.
 * On 1 MiB rings, which do not pace: there a non-blocking writer keeps no
 * window (docs/design.md, 5), whose own refusals tests/nb_window.c tests. */
#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>

#include "helpers.h"

#define TURN (256u << 10)
#define FILE_SIZE (8u << 20)
#define CONNS 4

static int make_file(uint64_t *sum)
{
    int fd = temp_file();
    static unsigned char block[1 << 16];
    *sum = FNV_INIT;
    for (size_t at = 0; at < FILE_SIZE; at += sizeof block) {
        for (size_t k = 0; k < sizeof block; k++)
            block[k] = (unsigned char)((at + k) * 7 >> 5);
        CHECK(write_full(fd, block, sizeof block) == sizeof block, "write file");
        *sum = fnv(*sum, block, sizeof block);
    }
    return fd;
}

static void one_turn(int file)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLET, .data.fd = c }, out[2];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "epoll_ctl");
    CHECK(epoll_wait(ep, out, 2, 1000) == 1 && (out[0].events & EPOLLOUT), "first EPOLLOUT");
    off_t off = 0;
    CHECK(sendfile(c, file, &off, 1u << 20) == TURN, "a turn's first call: %s", strerror(errno));
    errno = 0;
    CHECK(sendfile(c, file, &off, 1u << 20) == -1 && errno == EAGAIN,
          "the turn did not end in EAGAIN (%s)", strerror(errno));
    CHECK(sendfile(c, file, &off, 1u << 20) == TURN, "a call right after EAGAIN, no wait: %s",
          strerror(errno));
    /* nobody reads: the edge is the turn's */
    CHECK(epoll_wait(ep, out, 2, 2000) == 1 && (out[0].events & EPOLLOUT),
          "no EPOLLOUT after the turn's EAGAIN: the loop would wait for ever");
    CHECK(sendfile(c, file, &off, 1u << 20) == TURN, "the next turn: %s", strerror(errno));
    CHECK(off == 3 * TURN, "offset %lld", (long long)off);
    close(ep), close(c), close(s);
}

/* The reader: all connections with poll, slowly (a pause every 1 MiB). */
static void read_all(int *fds, uint64_t want)
{
    static unsigned char buf[1 << 16];
    uint64_t sum[CONNS];
    size_t got[CONNS] = { 0 };
    for (int i = 0; i < CONNS; i++)
        sum[i] = FNV_INIT;
    for (int open = CONNS; open > 0;) {
        struct pollfd p[CONNS];
        for (int i = 0; i < CONNS; i++)
            p[i] = (struct pollfd){ .fd = fds[i] >= 0 ? fds[i] : -1, .events = POLLIN };
        if (poll(p, CONNS, 10000) <= 0)
            _exit(2);
        for (int i = 0; i < CONNS; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n < 0)
                _exit(3);
            if (n == 0) {
                close(fds[i]), fds[i] = -1, open--;
                if (got[i] != FILE_SIZE || sum[i] != want)
                    _exit(4);
                continue;
            }
            sum[i] = fnv(sum[i], buf, (size_t)n);
            if ((got[i] + (size_t)n) >> 20 != got[i] >> 20)
                sleep_ms(2);
            got[i] += (size_t)n;
        }
    }
    _exit(0);
}

static void edge_loop(int optin, int file, uint64_t want)
{
    int c[CONNS], s[CONNS];
    for (int i = 0; i < CONNS; i++)
        fast_pair(AF_INET, optin, &c[i], &s[i]);
    pid_t reader = fork();
    CHECK(reader >= 0, "fork");
    if (reader == 0) {
        for (int i = 0; i < CONNS; i++)
            close(c[i]);
        read_all(s, want);
    }
    int ep = epoll_create1(0);
    off_t off[CONNS] = { 0 };
    for (int i = 0; i < CONNS; i++) {
        close(s[i]);
        CHECK(fcntl(c[i], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
        struct epoll_event ev = { .events = EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c[i], &ev) == 0, "epoll_ctl");
    }
    long loops = 0, eagains = 0;
    for (int left = CONNS; left > 0; loops++) {
        struct epoll_event out[CONNS];
        int n = epoll_wait(ep, out, CONNS, 10000);
        CHECK(n > 0, "%s: no edge in 10 s, %d connections unfinished after %ld loops",
              optin ? "loopfast" : "kernel", left, loops);
        for (int k = 0; k < n; k++) {
            int i = (int)out[k].data.u32;
            while (off[i] < (off_t)FILE_SIZE) {   /* until EAGAIN, as nginx */
                ssize_t w = sendfile(c[i], file, &off[i], FILE_SIZE - (size_t)off[i]);
                if (w < 0 && errno == EAGAIN) {
                    eagains++;
                    break;
                }
                CHECK(w > 0, "sendfile: %s", strerror(errno));
            }
            if (off[i] == (off_t)FILE_SIZE && c[i] >= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c[i], NULL);
                close(c[i]), c[i] = -1, left--;
            }
        }
    }
    CHECK(child_status(reader) == 0, "%s: the reader's bytes differ (%d)",
          optin ? "loopfast" : "kernel", child_status(reader));
    printf("%s: %d x %u MiB in %ld loops, %ld EAGAIN\n", optin ? "loopfast" : "kernel", CONNS,
           FILE_SIZE >> 20, loops, eagains);
    close(ep);
}

int main(int argc, char **argv)
{
    (void)argc;
    run_with_env(argv, "LOOPFAST_RING_KB", "1024");
    alarm(120);
    uint64_t want;
    int file = make_file(&want);
    one_turn(file);
    edge_loop(0, file, want);
    edge_loop(1, file, want);
    close(file);
    return 0;
}
