/* With spinning off (LOOPFAST_SPIN_US=0) a blocked reader sleeps.
 * Bug fixed: a waiter that armed and then found news left a token in its
 * doorbell; read one at a time (semaphore eventfds) such tokens piled up,
 * every poll() returned at once and "no spinning" became a busy loop of
 * system calls with no sleep at all.  Now a wake-up takes every token, so
 * the client sleeps (a voluntary context switch) in a good part of its
 * 20 000 round trips with an echo server. */
#include <sys/resource.h>

#include "helpers.h"

#define ROUNDS 20000

static long sleeps(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw;
}

int main(int argc, char **argv)
{
    (void)argc;
    run_with_spin_us(argv, "0");   /* read by the library at start-up */
    alarm(60);
    pid_t pid;
    int fd = echo_connection(1, &pid);
    long before = sleeps();
    for (int i = 0; i < ROUNDS; i++) {
        char b = (char)i;
        CHECK(write_full(fd, &b, 1) == 1 && read_full(fd, &b, 1) == 1 && b == (char)i,
              "round trip %d", i);
    }
    long slept = sleeps() - before;
    CHECK(loopfast_fd_is_fast(fd) == 1, "not on the fast path");
    close(fd);
    CHECK(child_status(pid) == 11, "echo server failed");
    printf("the client slept %ld times in %d round trips\n", slept, ROUNDS);
    /* With the bug it slept next to never; how often a reply arrives before
     * the client gets to sleep depends on the machine (a quarter to a half
     * of the round trips here, a sixth on a quieter host), so the bound is a
     * twentieth. */
    CHECK(slept >= ROUNDS / 20, "only %ld sleeps in %d round trips: a busy loop", slept, ROUNDS);
    return 0;
}
