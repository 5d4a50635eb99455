/* A blocking writer with a send timeout (SO_SNDTIMEO, as iperf2's client
 * sets it) streaming 128 KiB writes to a reader that reads 128 KiB: such a
 * writer does not pace, and it stopped for 0.4-12 s at a time, 2 runs in 4
 * (a helper's sweep; iperf2 showed seconds without a byte): its write took
 * an old look at the reader's index for "bytes unread far past the
 * origin: no room" where its waiter's fresh look saw room, and it spun
 * between the two while its reader slept on an empty ring (ring.c,
 * placed_room; tests/unit_ring's stale_tail_paced holds the case exactly).
 * Here: SECONDS of it both ways, every byte counted by the reader, and no
 * write waiting a whole second (over the kernel: milliseconds). */
#include <sys/time.h>

#include "helpers.h"

#define PIECE (128u << 10)
#define SECONDS 2.0

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    pid_t pid;
    int fd = connect_to_forked(optin, counting_reader, &pid);
    struct timeval tv = { 10, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    client_switch(fd);
    static char buf[PIECE];
    memset(buf, 'y', sizeof buf);
    unsigned long long sent = 0;
    double t0 = seconds_now(), last = t0, longest = 0;
    while (last - t0 < SECONDS) {
        ssize_t n = write(fd, buf, sizeof buf);
        CHECK(n > 0, "%s: write: %s", mode, strerror(errno));
        double t = seconds_now();
        if (t - last > longest)
            longest = t - last;
        last = t;
        sent += (unsigned long long)n;
    }
    CHECK(loopfast_fd_is_fast(fd) == optin, "%s: fast %d", mode, loopfast_fd_is_fast(fd));
    unsigned long long got = counting_reader_total(fd, pid, mode);
    printf("%s: %.1f GB in %.1f s, longest write %.3f s\n", mode, (double)sent / 1e9, last - t0,
           longest);
    CHECK(got == sent, "%s: %llu bytes sent, %llu read", mode, sent, got);
    CHECK(longest < 1.0, "%s: a write waited %.3f s for a reader that reads", mode, longest);
    close(fd);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    return 0;
}
