/* The sleeper pays for the store-load barrier (docs/design.md 6): with
 * spinning short (LOOPFAST_SPIN_US=1), both ends sleep in most waits while
 * their peers publish with no fence of their own.  A wake-up lost between a
 * publisher's index store and a sleeper's arming would leave a side asleep
 * with news for it: every round trip and every byte of a one-way stream
 * must still come, within the alarm.  Run with membarrier available; the
 * plain-fence protocol is what every other test runs where it is not. */
#include <linux/membarrier.h>
#include <sys/syscall.h>

#include "helpers.h"

#define ROUNDS 100000
#define STREAM (64u << 20)

int main(int argc, char **argv)
{
    (void)argc;
    run_with_spin_us(argv, "1");   /* read by the library at start-up */
    int q = (int)syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q < 0 || !(q & MEMBARRIER_CMD_GLOBAL_EXPEDITED))
        SKIP("no membarrier(GLOBAL_EXPEDITED) here: the fences are used");
    alarm(60);
    pid_t pid;
    int fd = echo_connection(1, &pid);
    for (int i = 0; i < ROUNDS; i++) {
        char b = (char)i;
        CHECK(write_full(fd, &b, 1) == 1 && read_full(fd, &b, 1) == 1 && b == (char)i,
              "round trip %d", i);
    }
    CHECK(loopfast_fd_is_fast(fd) == 1, "not on the fast path");
    /* one way, in odd sizes, the echo coming back checked as it goes */
    static char out[65536], in[65536];
    uint64_t sent_sum = FNV_INIT, got_sum = FNV_INIT;
    size_t sent = 0, got = 0;
    unsigned seed = 7;
    while (got < STREAM) {
        if (sent < STREAM && sent - got < (512u << 10)) {   /* both rings never fill */
            size_t n = 1 + rand_r(&seed) % sizeof out;
            if (n > STREAM - sent)
                n = STREAM - sent;
            for (size_t k = 0; k < n; k++)
                out[k] = (char)(sent + k);
            CHECK(write_full(fd, out, n) == (ssize_t)n, "write");
            sent_sum = fnv(sent_sum, out, n);
            sent += n;
        }
        size_t want = sent - got < sizeof in ? sent - got : sizeof in;
        ssize_t r = read(fd, in, want);
        CHECK(r > 0, "read: %zd %s", r, strerror(errno));
        got_sum = fnv(got_sum, in, (size_t)r);
        got += (size_t)r;
    }
    CHECK(got_sum == sent_sum, "the echoed stream differs");
    close(fd);
    CHECK(child_status(pid) == 11, "echo server failed");
    printf("%d round trips and %u bytes echoed with spinning at 1 us\n", ROUNDS, STREAM);
    return 0;
}
