/* A blocking socket that poll() said was writable takes the next write at
 * once, as the kernel's does.  A blocking writer keeps 1 MiB in flight
 * (pacing, docs/design.md 5) and past it waited for its reader up to 2 ms
 * before using the rest of the room: socat polls its blocking socket before
 * each 8 KiB, and through tcpserver's `cat`, whose own writes waited on
 * socat's reading, each 8 KiB cost 2 ms (10 echoes of 50 MB: 13 s against
 * the kernel's 2.7).  Here nobody reads: poll, then an 8 KiB write, while
 * poll says writable, up to 3 MiB.  Both ways: the writes poll allowed must
 * all be taken, and with loopfast within 250 ms in all (the pace's waits
 * alone were 2 ms for each of the ~250 writes past 1 MiB). */
#include <poll.h>
#include <time.h>

#include "helpers.h"

#define PIECE 8192
#define MOST (3u << 20)

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Bytes written while poll said writable; *ms: the time they took. */
static size_t fill_after_polls(int optin, double *ms)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    static char piece[PIECE];
    size_t done = 0;
    double t0 = now_ms();
    while (done < MOST) {
        struct pollfd p = { .fd = c, .events = POLLOUT };
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
            break;
        ssize_t w = write(c, piece, sizeof piece);
        CHECK(w == (ssize_t)sizeof piece, "%s: a write after POLLOUT: %zd (%s)",
              optin ? "loopfast" : "kernel", w, w < 0 ? strerror(errno) : "short");
        done += (size_t)w;
    }
    *ms = now_ms() - t0;
    close(c);
    close(s);
    return done;
}

int main(void)
{
    alarm(30);
    double kms, fms;
    size_t kernel = fill_after_polls(0, &kms), fast = fill_after_polls(1, &fms);
    printf("written while poll said writable: kernel %zu bytes in %.1f ms, loopfast %zu in %.1f ms\n",
           kernel, kms, fast, fms);
    CHECK(fast > (1u << 20) + 64 * PIECE, "loopfast: only %zu bytes before poll said full", fast);
    CHECK(fms < 250, "loopfast: %.1f ms for %zu bytes: writes after POLLOUT waited", fms, fast);
    return 0;
}
