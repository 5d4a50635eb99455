/* Signals during a blocking call on a fast socket: with SA_RESTART the read
 * goes on and returns the data; without it the read fails with EINTR; and
 * sigaction() reports the program's own handler back. */
#include <sys/time.h>

#include "helpers.h"

static volatile sig_atomic_t hits;
static void on_alarm(int sig) { (void)sig; hits++; }

static void arm_timer(void)
{
    struct itimerval it = { { 0, 0 }, { 0, 100000 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(void)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
    CHECK(sigaction(SIGALRM, NULL, &old) == 0 && old.sa_handler == on_alarm &&
          (old.sa_flags & SA_RESTART), "sigaction must report the program's handler");
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300000);
        write_full(c, "late", 4);
        _exit(0);
    }
    arm_timer();
    char buf[8];
    ssize_t n = read(s, buf, 4);
    CHECK(hits == 1, "the handler ran %d times", (int)hits);
    CHECK(n == 4 && !memcmp(buf, "late", 4), "SA_RESTART: read gave %zd (%s)", n, strerror(errno));
    child_status(pid);

    sa.sa_flags = 0;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction without SA_RESTART");
    arm_timer();
    n = read(s, buf, 4);
    CHECK(n == -1 && errno == EINTR, "no SA_RESTART: read gave %zd (%s)", n, strerror(errno));
    CHECK(hits == 2, "handler");
    return 0;
}
