/* The answer a server makes ready before accept() (a spare memfd and
 * doorbells) is not inherited as usable: two workers forked after their
 * parent's accept() each answer with rings of their own.  Two connections
 * open at once, one per worker, carry different streams; sharing a ring
 * would mix them or hang. */
#include <fcntl.h>
#include <poll.h>

#include "helpers.h"

#define BYTES (256 * 1024)

/* Accepts one connection (polling: the listener is non-blocking), echoes it
 * to the end. */
static void worker(int l)
{
    int c;
    for (;;) {
        struct pollfd p = { .fd = l, .events = POLLIN };
        poll(&p, 1, -1);
        if ((c = accept(l, NULL, NULL)) >= 0 || errno != EAGAIN)
            break;
    }
    if (c < 0)
        _exit(1);
    fcntl(c, F_SETFL, 0);
    char buf[8192];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        if (write_full(c, buf, (size_t)n) != n)
            _exit(1);
    _exit(n == 0 ? 0 : 1);
}

static void fill(char *buf, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(seed * 131 + i * 7 + i / 4093);
}

int main(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    alarm(30);
    int l = listen_on(AF_INET, 1, &addr, &len);
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    CHECK(accept(l, NULL, NULL) < 0 && errno == EAGAIN, "accept on an empty listener");
    pid_t w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = fork();
        CHECK(w[i] >= 0, "fork");
        if (w[i] == 0)
            worker(l);
    }
    close(l);
    int fd[2];
    static char out[2][BYTES], back[2][BYTES];
    for (int i = 0; i < 2; i++) {
        fd[i] = connect_to(&addr, len, 1);
        fill(out[i], BYTES, i + 1);
    }
    /* Interleaved, in pieces smaller than a ring, so both are in flight. */
    for (size_t off = 0; off < BYTES; off += 16384)
        for (int i = 0; i < 2; i++) {
            CHECK(write_full(fd[i], out[i] + off, 16384) == 16384, "write %d", i);
            CHECK(read_full(fd[i], back[i] + off, 16384) == 16384, "read %d", i);
        }
    for (int i = 0; i < 2; i++) {
        CHECK(!memcmp(out[i], back[i], BYTES), "connection %d carried the other's bytes", i);
        CHECK(loopfast_fd_is_fast(fd[i]) == 1, "connection %d is not fast", i);
        close(fd[i]);
    }
    for (int i = 0; i < 2; i++)
        CHECK(child_status(w[i]) == 0, "worker %d failed", i);
    return 0;
}
