/* A server that accepts each connection in a short-lived thread keeps a
 * constant number of descriptors: 300 such threads later, /proc/self/fd
 * counts what it counted before (loopfast's per-process state, its spare
 * answer and its netlink socket, was made by the first connection). */
#include <poll.h>
#include <pthread.h>

#include "helpers.h"

#define THREADS 300

static int listener;
static int fast_count;

static int count_fds(void)
{
    poll(NULL, 0, 1);   /* a wait: closed connections' leftovers are released first */
    return count_open_fds();
}

static void *serve_one(void *arg)
{
    (void)arg;
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        return (void *)1;
    char b;
    /* the client closes first, so its answer is not revoked under it
     * (a server that closed first left every connection plain in rare runs) */
    int ok = read_full(c, &b, 1) == 1 && write_full(c, &b, 1) == 1 && read(c, &b, 1) == 0;
    close(c);
    return ok ? NULL : (void *)1;
}

static void one_connection(const struct sockaddr_storage *addr, socklen_t len, int optin)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, serve_one, NULL) == 0, "pthread_create");
    int fd = connect_to(addr, len, optin);
    char b = 'x';
    CHECK(write_full(fd, &b, 1) == 1 && read_full(fd, &b, 1) == 1 && b == 'x', "echo");
    int fast = loopfast_fd_is_fast(fd);
    CHECK(fast <= optin, "fast: %d", fast);
    fast_count += fast;
    close(fd);
    void *res;
    CHECK(pthread_join(t, &res) == 0 && res == NULL, "server thread failed");
}

static int run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    listener = listen_on(AF_INET, optin, &addr, &len);
    one_connection(&addr, len, optin);
    int before = count_fds();
    for (int i = 0; i < THREADS; i++)
        one_connection(&addr, len, optin);
    int after = count_fds();
    close(listener);
    printf("%s: %d descriptors before, %d after %d accepting threads, %d fast\n",
           optin ? "loopfast" : "kernel", before, after, THREADS, fast_count);
    return after - before;
}

int main(void)
{
    alarm(25);
    CHECK(run(0) == 0, "kernel TCP: descriptors grew");
    int grown = run(1);
    CHECK(fast_count > 0, "loopfast: no connection was fast");
    /* at most the main thread's wait epoll, made the first time it sleeps
     * on a fast connection (design 6), and the regions kept with no
     * connection for the next one (at most 4, each its memfd and two
     * doorbells, design 11); the accepting threads' own go with them */
    CHECK(grown <= 1 + 4 * 3, "loopfast: %d descriptors more after %d threads", grown, THREADS);
    return 0;
}
