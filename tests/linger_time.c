/* close() with SO_LINGER on and a time, our bytes unread: Linux waits until
 * the peer's kernel has taken them (the ACK of its FIN) or the time is up;
 * loopfast returned at once (Java's setSoLinger(true, 3): 44 ms where the
 * kernel's close took the 1.5 s its reader slept; a helper's sweep).  Two
 * cases both ways, each with 1 MB written and a reader that sleeps first:
 * one that reads after 0.6 s within a 3 s linger (close waits for it), and
 * one that sleeps past a 1 s linger (close returns at its end).  Only the
 * waits' lower bounds are checked (a loaded machine only lengthens them),
 * and every byte must still arrive. */
#include <sys/time.h>

#include "helpers.h"

#define BYTES (1 << 20)

static int reader_sleep_ms;

static void server(int l)
{
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    server_switch(c);
    sleep_ms(reader_sleep_ms);
    static char buf[BYTES + 1];
    _exit(read_full(c, buf, sizeof buf) == BYTES ? 0 : 3);
}

static double close_ms(int optin, int linger_s, int sleep)
{
    pid_t srv;
    reader_sleep_ms = sleep;
    int fd = switched_to_forked(optin, server, &srv);
    struct linger lg = { 1, linger_s };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "SO_LINGER");
    static char buf[BYTES];
    memset(buf, 'l', sizeof buf);
    CHECK(write_full(fd, buf, sizeof buf) == BYTES, "write: %s", strerror(errno));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int st = child_status(srv);
    CHECK(st == 0, "%s: the reader exited %d (3: not every byte came)", optin ? "loopfast" : "kernel", st);
    return (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
}

int main(void)
{
    alarm(60);
    for (int optin = 0; optin < 2; optin++) {
        const char *mode = optin ? "loopfast" : "kernel";
        double waited = close_ms(optin, 3, 600), timed_out = close_ms(optin, 1, 1500);
        printf("%s: close with a 3 s linger, reader after 0.6 s: %.0f ms; "
               "a 1 s linger, reader after 1.5 s: %.0f ms\n", mode, waited, timed_out);
        CHECK(waited >= 300, "%s: close returned after %.0f ms, before its reader read", mode, waited);
        CHECK(timed_out >= 800, "%s: close returned after %.0f ms, before its 1 s linger", mode,
              timed_out);
    }
    return 0;
}
