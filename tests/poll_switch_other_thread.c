/* A thread waits in select() or poll() for the reply on a client socket
 * that has not switched yet (one exchange done), while another thread
 * writes the next request: that write is where the connection switches,
 * and the reply comes on the ring.  The waiting thread slept on the TCP
 * socket alone and was never woken: its poll() returned at its timeout
 * and a select() without one hung for good (a Python client with a reader
 * thread, found by the proxy sweep).  Both ways; the alarm is the judge. */
#include "helpers.h"
#include <poll.h>
#include <sys/select.h>

struct waiter {
    int fd, use_select;
    int ready;
};

static void *wait_for_reply(void *arg)
{
    struct waiter *w = arg;
    if (w->use_select) {
        fd_set r;
        FD_ZERO(&r);
        FD_SET(w->fd, &r);
        w->ready = select(w->fd + 1, &r, NULL, NULL, NULL) == 1 && FD_ISSET(w->fd, &r);
    } else {
        struct pollfd p = { .fd = w->fd, .events = POLLIN };
        w->ready = poll(&p, 1, -1) == 1 && (p.revents & POLLIN);
    }
    return NULL;
}

static void run(int optin, int use_select)
{
    pid_t server;
    int fd = echo_connection(optin, &server);
    const char *mode = optin ? "loopfast" : "kernel";
    char out[100], in[100];
    memset(out, 'a', sizeof out);
    CHECK(write_full(fd, out, sizeof out) == sizeof out && read_full(fd, in, sizeof in) == sizeof in,
          "%s: first exchange", mode);
    struct waiter w = { fd, use_select, 0 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_for_reply, &w) == 0, "pthread_create");
    sleep_ms(50);   /* the waiter asleep on the socket as it is */
    memset(out, 'b', sizeof out);
    CHECK(write_full(fd, out, sizeof out) == sizeof out, "%s: second request", mode);
    pthread_join(t, NULL);
    CHECK(w.ready, "%s: %s did not report the reply", mode, use_select ? "select" : "poll");
    CHECK(read_full(fd, in, sizeof in) == sizeof in && !memcmp(in, out, sizeof in),
          "%s: the reply", mode);
    close(fd);
    child_status(server);
}

int main(void)
{
    alarm(20);   /* a waiter never woken hangs: the alarm ends the test as failed */
    for (int use_select = 0; use_select < 2; use_select++) {
        run(0, use_select);
        run(1, use_select);
    }
    return 0;
}
