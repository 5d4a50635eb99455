/* MSG_PEEK|MSG_WAITALL that cannot be satisfied returns what it saw once
 * SO_RCVTIMEO runs out, as the kernel's does, even while another connection
 * of the same region keeps ringing the doorbell both share (docs/design.md
 * 11): each ring used to wake the peek and start its timeout again, so it
 * never returned while the other connection was busy.  Spinning off, so
 * that every message of the busy connection rings. */
#include <pthread.h>
#include <sys/time.h>

#include "helpers.h"

static int busy_client, busy_server;
static int stop;   /* atomic: the main thread tells the pinger */

/* The busy connection's server end: echoes until EOF. */
static void *echo(void *arg)
{
    (void)arg;
    char b;
    while (read(busy_server, &b, 1) == 1)
        if (write_full(busy_server, &b, 1) != 1)
            break;
    return NULL;
}

/* Its client end: one-byte round trips until told to stop. */
static void *ping(void *arg)
{
    (void)arg;
    char b = 'p';
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        if (write_full(busy_client, &b, 1) != 1 || read_full(busy_client, &b, 1) != 1)
            break;
    shutdown(busy_client, SHUT_WR);
    return NULL;
}

/* The peek's result with `optin`: bytes seen (4 of the 8 asked). */
static ssize_t peek_with_busy_neighbour(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    fast_pair(AF_INET, optin, &busy_client, &busy_server);
    __atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, echo, NULL) == 0 && pthread_create(&t2, NULL, ping, NULL) == 0,
          "threads");
    struct timeval tv = { .tv_sec = 0, .tv_usec = 300 * 1000 };
    CHECK(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    CHECK(write_full(s, "abcd", 4) == 4, "write");
    char buf[8];
    ssize_t n = recv(c, buf, sizeof buf, MSG_PEEK | MSG_WAITALL);
    int err = errno;
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(t2, NULL);
    pthread_join(t1, NULL);
    CHECK(n < 0 || memcmp(buf, "abcd", (size_t)n) == 0, "peeked bytes differ");
    char again[4];
    CHECK(read_full(c, again, 4) == 4 && memcmp(again, "abcd", 4) == 0, "peeked bytes not kept");
    printf("%s: MSG_PEEK|MSG_WAITALL of 8 with 4 queued, SO_RCVTIMEO 300 ms: %zd%s%s\n",
           optin ? "loopfast" : "kernel", n, n < 0 ? " " : "", n < 0 ? strerror(err) : "");
    close(c);
    close(s);
    close(busy_client);
    close(busy_server);
    return n;
}

int main(int argc, char **argv)
{
    (void)argc;
    run_with_spin_us(argv, "0");   /* read by the library at start-up */
    alarm(20);   /* the bug: the peek never returned */
    ssize_t kernel = peek_with_busy_neighbour(0);
    ssize_t fast = peek_with_busy_neighbour(1);
    CHECK(fast == kernel, "loopfast's peek returned %zd, the kernel's %zd", fast, kernel);
    printf("ok: the peek timed out as over kernel TCP\n");
    return 0;
}
