/* A busy connection whose bytes are read as they come holds a few of its
 * rings' pages, not all of them (docs/design.md, 5: the ring's origin).
 * Requests and replies of 1 KiB every 2 ms, 400 KiB each way through 256 KiB
 * rings (LOOPFAST_RING_KB=256): with the origin fixed, the writers walked
 * both rings whole and the connection held them (512 KiB) for as long as it
 * stayed busy, where kernel TCP holds a few KiB.  The connection never idles
 * long enough to be trimmed (400 ms), so what it holds is what it touched.
 * The same exchange runs over kernel TCP first; both must move every byte. */
#include "helpers.h"

#define RING_KB 256
#define MSG 1024
#define EXCHANGES 400
#define GAP_US 2000
#define HELD_MAX_KB (RING_KB * 3 / 4)   /* 3/8 of the two rings: without the moves, all */

static void exchange(int c, int s)
{
    static unsigned char out[MSG], in[MSG];
    for (int i = 0; i < EXCHANGES; i++) {
        for (int k = 0; k < MSG; k++)
            out[k] = (unsigned char)(i * 31 + k);
        CHECK(write_full(c, out, MSG) == MSG && read_full(s, in, MSG) == MSG &&
                  !memcmp(in, out, MSG), "request %d", i);
        out[0] ^= 0xff;
        CHECK(write_full(s, out, MSG) == MSG && read_full(c, in, MSG) == MSG &&
                  !memcmp(in, out, MSG), "reply %d", i);
        usleep(GAP_US);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *kb = getenv("LOOPFAST_RING_KB");
    if (!kb || atoi(kb) != RING_KB) {
        setenv("LOOPFAST_RING_KB", "256", 1);
        execv("/proc/self/exe", argv);
        FAIL("re-executing with LOOPFAST_RING_KB=%d: %s", RING_KB, strerror(errno));
    }
    alarm(60);
    int c, s;
    fast_pair(AF_INET, 0, &c, &s);
    exchange(c, s);
    CHECK(loopfast_regions(getpid(), NULL) == 0, "kernel TCP used shared memory");
    close(c);
    close(s);

    fast_pair(AF_INET, 1, &c, &s);
    exchange(c, s);
    struct regions_seen seen;
    CHECK(loopfast_regions(getpid(), &seen) == 1, "not one region of loopfast's");
    long held_kb = (long)(seen.bytes >> 10);   /* both ends are ours: the region once */
    printf("%d exchanges of %d B each way through %d KiB rings: the region holds %ld KiB "
           "(both rings whole: %d KiB)\n", EXCHANGES, MSG, RING_KB, held_kb, 2 * RING_KB);
    CHECK(held_kb <= HELD_MAX_KB, "a busy connection held %ld KiB of its rings' %d", held_kb,
          2 * RING_KB);
    CHECK(loopfast_fd_is_fast(c) == 1, "the connection left the fast path");
    close(c);
    close(s);
    return 0;
}
