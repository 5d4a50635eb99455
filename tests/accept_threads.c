/* Four threads accept on one opted-in listener at once (each may take or
 * make the process's spare answer) and echo; 200 short connections from a
 * client process come out intact and fast, and closes in every thread feed
 * the shared queue of leftovers. */
#include <pthread.h>

#include "helpers.h"

#define THREADS 4
#define CONNS 200

static int listener;

static void *acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            return NULL;   /* the listener was shut down */
        char buf[512];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write_full(c, buf, (size_t)n) != n)
                break;
        close(c);
    }
}

/* In a child: CONNS connections, each echoing 300 bytes of its own. */
static int client(const struct sockaddr_storage *addr, socklen_t len)
{
    int fast = 0;
    for (int i = 0; i < CONNS; i++) {
        int fd = connect_to(addr, len, 1);
        char msg[300], back[300];
        for (size_t k = 0; k < sizeof msg; k++)
            msg[k] = (char)(i * 13 + k);
        if (write_full(fd, msg, sizeof msg) != sizeof msg ||
            read_full(fd, back, sizeof back) != sizeof back || memcmp(msg, back, sizeof msg))
            return 1;
        fast += loopfast_fd_is_fast(fd) == 1;
        close(fd);
    }
    return fast == CONNS ? 0 : 2;
}

int main(int argc, char **argv)
{
    (void)argc;
    lift_fd_cap(argv);
    alarm(60);
    struct sockaddr_storage addr;
    socklen_t len;
    listener = listen_on(AF_INET, 1, &addr, &len);
    /* The client is forked before the threads exist: a child forked from a
     * threaded process may only call async-signal-safe functions. */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        _exit(client(&addr, len));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, acceptor, NULL) == 0, "pthread_create");
    int st = child_status(pid);
    CHECK(st != 1, "a connection was corrupted or failed");
    CHECK(st == 0, "not every connection was fast (status %d)", st);
    shutdown(listener, SHUT_RDWR);   /* wakes the acceptors */
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    return 0;
}
