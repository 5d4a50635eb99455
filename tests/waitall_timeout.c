/* A MSG_WAITALL read with SO_RCVTIMEO whose peer sends a byte now and then:
 * the timeout bounds the whole call, which returns what came (a short
 * count), as a server's defence against slow clients expects.  The read
 * was done in pieces, each with a timeout of its own, and it waited as long
 * as the bytes kept coming (here 40 of them, 8 s).  Both ways: the call
 * returns a short count, well before the peer's last byte. */
#include "helpers.h"

#define WANT 40
#define TRICKLE_MS 200
#define TIMEOUT_MS 1000

/* Sends a byte every TRICKLE_MS until the reader's verdict comes. */
static void trickler(int l)
{
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    server_switch(c);
    for (int i = 0; i < WANT; i++) {
        sleep_ms(TRICKLE_MS);
        if (send(c, "t", 1, MSG_NOSIGNAL) != 1)
            _exit(0);   /* the reader is done */
    }
    _exit(0);
}

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    pid_t pid;
    int fd = connect_to_forked(optin, trickler, &pid);
    client_switch(fd);
    CHECK(loopfast_fd_is_fast(fd) == optin, "%s: fast %d", mode, loopfast_fd_is_fast(fd));
    struct timeval tv = { TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    char buf[WANT];
    double t = seconds_now();
    ssize_t n = recv(fd, buf, sizeof buf, MSG_WAITALL);
    double took = seconds_now() - t;
    printf("%s: MSG_WAITALL of %d returned %zd after %.3f s (timeout %.1f s)\n", mode, WANT, n,
           took, TIMEOUT_MS / 1000.0);
    CHECK(n > 0 && n < WANT, "%s: MSG_WAITALL returned %zd (%s)", mode, n,
          n < 0 ? strerror(errno) : "");
    CHECK(took < 3.0 * TIMEOUT_MS / 1000.0, "%s: the call lasted %.3f s", mode, took);
    for (ssize_t i = 0; i < n; i++)
        CHECK(buf[i] == 't', "%s: byte %zd", mode, i);
    close(fd);
    CHECK(child_status(pid) == 0, "%s: trickler", mode);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    return 0;
}
