/* shutdown() acts on the socket, whichever process holds it: a forked child
 * blocked in recv() on the connection wakes with EOF when its parent shuts
 * reading down (SHUT_RD or SHUT_RDWR), and a later read of its says EOF at
 * once.  loopfast noted SHUT_RD in the calling process alone, and the child
 * slept until the peer wrote.  Kernel TCP and loopfast (both ends opted
 * in): the transcripts must be the same; a child still blocked after
 * WAKE_MS notes "hung" (the peer's byte then releases it). */
#include <sys/wait.h>

#include "helpers.h"
#include "transcript.h"

#define WAKE_MS 2000

static void run(int optin, int how, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s, report[2];
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(pipe(report) == 0, "pipe");
    fflush(stdout);   /* a child's exit must not print our lines again */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {   /* the child: blocks on the shared end, says what it got */
        close(report[0]);
        char buf[16], line[64];
        ssize_t n = recv(c, buf, sizeof buf, 0);
        int e = errno;
        ssize_t again = recv(c, buf, sizeof buf, MSG_DONTWAIT);
        snprintf(line, sizeof line, "child-recv:%zd%s child-again:%zd", n, n < 0 ? strerror(e) : "",
                 again);
        write_full(report[1], line, strlen(line));
        _exit(0);
    }
    close(report[1]);
    usleep(100000);   /* the child sleeps in recv() now */
    CHECK(shutdown(c, how) == 0, "shutdown: %s", strerror(errno));
    struct pollfd p = { .fd = report[0], .events = POLLIN };
    if (poll(&p, 1, WAKE_MS) != 1) {
        note(" hung");
        CHECK(write_full(s, "x", 1) == 1, "release");
    }
    char line[64] = "";
    ssize_t n = read_full(report[0], line, sizeof line - 1);
    note(" %.*s", (int)(n > 0 ? n : 0), line);
    child_status(pid);
    char b;
    note_result("parent-recv", recv(c, &b, 1, MSG_DONTWAIT));
    close(report[0]);
    case_end(c, s, out, size);
}

int main(void)
{
    alarm(30);
    static char kernel[4096], fast[4096];
    int bad = 0;
    run(0, SHUT_RD, kernel, sizeof kernel);
    run(1, SHUT_RD, fast, sizeof fast);
    bad += transcripts_differ("the parent's SHUT_RD, the child in recv", kernel, fast);
    run(0, SHUT_RDWR, kernel, sizeof kernel);
    run(1, SHUT_RDWR, fast, sizeof fast);
    bad += transcripts_differ("the parent's SHUT_RDWR, the child in recv", kernel, fast);
    return bad ? 1 : 0;
}
