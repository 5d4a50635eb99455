/* Writes after the peer closed with our bytes unread: Linux answers that
 * close with a reset at once, so on loopback the first write made after it
 * fails with ECONNRESET, then EPIPE.  A fast writer looked at TCP only now
 * and then (every 16th write at most, while it wrote fast), and took a few
 * writes more into a ring nobody would read: each said it succeeded, and
 * the bytes were lost (found by a helper's sweep with a client that shut
 * its reading side down first; the exit case failed 1 run in 10 under
 * TSan).  The writer first writes a burst, then one message the peer reads a byte of
 * before it closes (or its process exits without a close: the kernel sends
 * a FIN, and its first write after it is accepted); after 10 ms each
 * write's result is noted.  Runs over kernel TCP and over loopfast, with
 * and without SHUT_RD first: the transcripts must be the same. */
#include <time.h>

#include "helpers.h"
#include "transcript.h"

/* The peer closes (or, with `by_exit`, its process exits without a close)
 * after reading one byte of our last message. */
static void writes_after_reset(int optin, int shut_rd, int by_exit)
{
    int a, b;
    char buf[1000] = { 0 };
    fast_pair(AF_INET, optin, &a, &b);
    for (int i = 0; i < 64; i++)   /* a burst: looks at TCP grow rare */
        CHECK(write(a, buf, 64) == 64 && read_full(b, buf, 64) == 64, "burst");
    if (shut_rd)
        CHECK(shutdown(a, SHUT_RD) == 0, "shutdown: %s", strerror(errno));
    fflush(stdout);   /* the child must not write our buffered lines again */
    pid_t child = by_exit ? fork() : -1;
    CHECK(!by_exit || child >= 0, "fork");
    if (child == 0) {   /* the peer's process: it exits without a close */
        close(a);
        _exit(read(b, buf, 1) == 1 ? 0 : 1);
    }
    CHECK(write(a, buf, sizeof buf) == sizeof buf, "write: %s", strerror(errno));
    if (by_exit) {
        close(b);
        CHECK(child_status(child) == 0, "the peer process failed");
    } else {
        CHECK(read(b, buf, 1) == 1, "peer read");
        close(b);   /* 999 bytes unread: a reset */
    }
    for (int i = 0; i < 6; i++) {
        struct timespec t = { 0, 10000000 };
        nanosleep(&t, NULL);
        char what[8];
        snprintf(what, sizeof what, "w%u", (unsigned)i % 10);
        note_result(what, send(a, buf, sizeof buf, MSG_NOSIGNAL));
    }
    note_result("read", read(a, buf, sizeof buf));
    close(a);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int differ = 0;
    for (int shape = 0; shape < 4; shape++) {
        int shut_rd = shape & 1, by_exit = shape >> 1;
        char kernel[sizeof transcript], fast[sizeof transcript], label[48];
        transcript[0] = 0;
        writes_after_reset(0, shut_rd, by_exit);
        snprintf(kernel, sizeof kernel, "%s", transcript);
        transcript[0] = 0;
        writes_after_reset(1, shut_rd, by_exit);
        snprintf(fast, sizeof fast, "%s", transcript);
        snprintf(label, sizeof label, "%s, shut_rd %d", by_exit ? "exit" : "close", shut_rd);
        differ |= transcripts_differ(label, kernel, fast);
    }
    return differ;
}
