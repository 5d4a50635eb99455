/* Faults: the peer is killed with SIGKILL at random moments (during set-up,
 * mid-stream, while we are blocked writing to a full ring, while we sleep in
 * read).  The survivor sees EOF, ECONNRESET or EPIPE within a second, never
 * hangs, and afterwards holds no more descriptors or mappings than before. */
#include <fcntl.h>
#include <poll.h>
#include <sys/time.h>

#include "helpers.h"


static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

/* The peer: connects, then streams or sits idle, depending on `mode`. */
static void peer(const struct sockaddr_storage *addr, socklen_t len, int mode)
{
    int fd = connect_to(addr, len, 1);
    static char buf[1 << 16];
    if (mode == 0)          /* stream as fast as possible */
        for (;;)
            write(fd, buf, sizeof buf);
    if (mode == 1)          /* echo one byte, then idle: the survivor sleeps in read */
        for (;;) {
            if (read(fd, buf, 1) == 1)
                write(fd, buf, 1);
        }
    pause();                /* never read: the survivor fills the ring and blocks */
    _exit(0);
}

static void survive(int s, int mode)
{
    struct timeval tv = { 2, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static char buf[1 << 16];
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    ssize_t n;
    if (mode == 2) {
        while ((n = write(s, buf, sizeof buf)) > 0)
            ;
        CHECK(errno == EPIPE || errno == ECONNRESET, "writer saw %s, not EPIPE/ECONNRESET", strerror(errno));
    } else {
        if (mode == 1)
            write(s, "x", 1);
        while ((n = read(s, buf, sizeof buf)) > 0)
            ;
        CHECK(n == 0 || errno == ECONNRESET, "reader saw %s, not EOF/ECONNRESET", strerror(errno));
    }
    gettimeofday(&t1, NULL);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_usec - t0.tv_usec) / 1e6;
    CHECK(secs < 1.9, "the end took %.2f s (a timeout, not the peer's death)", secs);
}

/* What loopfast holds besides live connections varies: leftovers of closed
 * ones wait for the next blocking call, a spare answer exists after an
 * opted-in accept() began.  An accept() on an empty opted-in listener
 * releases the first and makes the second, so two counts compare alike. */
static void settle(int idle)
{
    CHECK(accept(idle, NULL, NULL) < 0 && errno == EAGAIN, "accept on the idle listener");
}

int main(void)
{
    alarm(120);
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    struct sockaddr_storage idle_addr;
    socklen_t idle_len;
    int idle = listen_on(AF_INET, 1, &idle_addr, &idle_len);
    CHECK(fcntl(idle, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    srand(5);
    int fds0 = -1, maps0 = -1;
    for (int i = 0; i < 40; i++) {
        int mode = i % 3;
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0)
            peer(&addr, len, mode);
        /* a kill during set-up, for some: before we even accept */
        int early = i % 5 == 4;
        if (early) {
            usleep((useconds_t)(rand() % 2000));
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            struct pollfd p = { .fd = l, .events = POLLIN };
            if (poll(&p, 1, 100) == 0)
                continue;   /* it died before it connected */
        }
        int s = accept(l, NULL, NULL);
        CHECK(s >= 0, "accept");
        if (!early) {
            pid_t killer = fork();
            if (killer == 0) {
                usleep((useconds_t)(1000 + rand() % 20000));
                kill(pid, SIGKILL);
                _exit(0);
            }
            survive(s, mode);
            waitpid(killer, NULL, 0);
        } else {
            survive(s, 0);   /* whatever it sent before it died, then the end */
        }
        close(s);
        waitpid(pid, NULL, 0);
        if (fds0 < 0 && i >= 4) {   /* after the first round of each kind: the baseline */
            settle(idle);
            fds0 = count_open_fds();
            maps0 = count_maps();
        }
    }
    settle(idle);
    int fds1 = count_open_fds(), maps1 = count_maps();
    printf("descriptors %d -> %d, mappings %d -> %d\n", fds0, fds1, maps0, maps1);
    CHECK(fds1 == fds0, "descriptors leaked: %d -> %d", fds0, fds1);
    CHECK(maps1 == maps0, "mappings leaked: %d -> %d", maps0, maps1);
    return 0;
}
