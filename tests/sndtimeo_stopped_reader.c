/* A blocking writer with a send timeout (SO_SNDTIMEO) whose reader is
 * stopped (SIGSTOP) for longer than it: each write returns when its timeout
 * runs out, with what it moved (a short count) or, having moved nothing,
 * EAGAIN, and the stream is whole once the reader goes on.  The ring's
 * write was done, when short, as the rest of a blocking send, which waited
 * for a second timeout (a helper's sweep: 2 s in a call with 1.5 s).
 * Here both ways: no call lasts 1.6 timeouts (it was 2), one at least is
 * cut short by it, and every byte sent is read. */
#include "helpers.h"

#define PIECE (1u << 20)
#define TIMEOUT_MS 1000
#define STOP_AFTER_MS 300
#define STOPPED_MS 2600
#define WRITING_MS 3600

/* Stops the reader for STOPPED_MS, a little after the writer began. */
static pid_t fork_stopper(pid_t reader_pid)
{
    pid_t pid = fork();
    if (pid == 0) {
        sleep_ms(STOP_AFTER_MS);
        kill(reader_pid, SIGSTOP);
        sleep_ms(STOPPED_MS);
        kill(reader_pid, SIGCONT);
        _exit(0);
    }
    return pid;
}

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    pid_t pid;
    int fd = connect_to_forked(optin, counting_reader, &pid);
    struct timeval tv = { TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    client_switch(fd);
    CHECK(loopfast_fd_is_fast(fd) == optin, "%s: fast %d", mode, loopfast_fd_is_fast(fd));
    static char buf[PIECE];
    memset(buf, 'z', sizeof buf);
    unsigned long long sent = 0;
    int cut = 0;
    double longest = 0, t0 = seconds_now();
    pid_t stopper = fork_stopper(pid);
    CHECK(stopper > 0, "fork");
    while (seconds_now() - t0 < WRITING_MS / 1000.0) {
        double t = seconds_now();
        ssize_t n = write(fd, buf, sizeof buf);
        CHECK(n > 0 || errno == EAGAIN, "%s: write: %s", mode, strerror(errno));
        if (seconds_now() - t > longest)
            longest = seconds_now() - t;
        cut += n < (ssize_t)sizeof buf;
        sent += n > 0 ? (unsigned long long)n : 0;
    }
    CHECK(child_status(stopper) == 0, "stopper");
    unsigned long long got = counting_reader_total(fd, pid, mode);
    printf("%s: %llu bytes, %d calls cut short, longest call %.3f s (timeout %.1f s)\n", mode,
           sent, cut, longest, TIMEOUT_MS / 1000.0);
    CHECK(got == sent, "%s: %llu bytes sent, %llu read", mode, sent, got);
    CHECK(cut >= 1, "%s: no call was cut short by its timeout", mode);
    CHECK(longest < 1.6 * TIMEOUT_MS / 1000.0, "%s: a call lasted %.3f s with a %d ms timeout",
          mode, longest, TIMEOUT_MS);
    close(fd);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    return 0;
}
