/* A cancellation already pending when a data call starts acts before the
 * call does anything, as libc's read() and write() act on it: the bytes a
 * read would have taken stay for the other threads, and a write sends
 * nothing.  loopfast's calls take bytes from the ring without entering the
 * kernel, so they must look first.  The thread disables cancellation, is
 * cancelled, enables it again (no cancellation point) and calls read() on
 * a socket holding bytes, or write() with room.  Kernel TCP first, loopfast
 * then. */
#include <poll.h>

#include "helpers.h"

struct call { int fd, is_write, returned, ready[2], go[2]; };

static void *cancelled_call(void *arg)
{
    struct call *c = arg;
    char b[64], go;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    if (write(c->ready[1], "r", 1) != 1 || read(c->go[0], &go, 1) != 1)
        return NULL;   /* (both ran with cancellation off) */
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    ssize_t n = c->is_write ? write(c->fd, "later", 5) : read(c->fd, b, sizeof b);
    __atomic_store_n(&c->returned, n > 0 ? (int)n : -1, __ATOMIC_RELEASE);
    return NULL;
}

/* Bytes readable on fd within ms, taken. */
static ssize_t take_within(int fd, char *b, size_t len, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) != 1)
        return 0;
    return read(fd, b, len);
}

static void run(int optin, int is_write)
{
    const char *how = is_write ? "write" : "read";
    int client, server;
    fast_pair(AF_INET, optin, &client, &server);
    /* a second exchange: both directions on the ring, the client's read of it settled */
    char x;
    CHECK(write_full(client, "c", 1) == 1 && read_full(server, &x, 1) == 1 &&
          write_full(server, "d", 1) == 1 && read_full(client, &x, 1) == 1, "second exchange");
    if (!is_write)
        CHECK(write_full(server, "bytes", 5) == 5, "the server's bytes");
    usleep(20000);
    struct call c = { .fd = client, .is_write = is_write };
    CHECK(pipe(c.ready) == 0 && pipe(c.go) == 0, "pipe");
    char r;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancelled_call, &c) == 0, "thread");
    CHECK(read(c.ready[0], &r, 1) == 1, "the thread is ready");
    CHECK(pthread_cancel(t) == 0, "pthread_cancel");
    CHECK(write(c.go[1], "g", 1) == 1, "go");
    void *res;
    CHECK(pthread_join(t, &res) == 0, "join");
    CHECK(res == PTHREAD_CANCELED, "%s (%s): the thread was not cancelled", how,
          optin ? "loopfast" : "kernel");
    int returned = __atomic_load_n(&c.returned, __ATOMIC_ACQUIRE);
    CHECK(!returned, "%s (%s): the cancelled call returned %d before acting on it", how,
          optin ? "loopfast" : "kernel", returned);
    char b[64] = { 0 };
    if (is_write) {
        ssize_t n = take_within(server, b, sizeof b, 100);
        CHECK(n == 0, "%s (%s): the cancelled write sent %zd bytes (%.*s)", how,
              optin ? "loopfast" : "kernel", n, (int)(n > 0 ? n : 0), b);
    } else {
        ssize_t n = take_within(client, b, sizeof b, 1000);
        CHECK(n == 5 && !memcmp(b, "bytes", 5), "%s (%s): the bytes are gone (%zd left)", how,
              optin ? "loopfast" : "kernel", n);
    }
    for (int i = 0; i < 2; i++)
        close(c.ready[i]), close(c.go[i]);
    close(client);
    close(server);
}

int main(void)
{
    alarm(20);
    for (int optin = 0; optin <= 1; optin++)
        for (int is_write = 0; is_write <= 1; is_write++)
            run(optin, is_write);
    return 0;
}
