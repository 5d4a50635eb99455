/* A client near its descriptor limit gets the connections it would get
 * over kernel TCP, though each of its connections is still pending.  Each
 * connection makes one exchange (a byte each way) and then sits idle, like
 * a pool warmed up: a pending client holds its offer's descriptor until its
 * next call, which never comes.  Those offers took loopfast's share of the
 * table (a quarter), and socket() failed with EMFILE at about 3/4 of the
 * connections the kernel allowed.  Now EMFILE makes every pending client
 * settle (take its answer or stay plain) and the call is tried again.  With
 * RLIMIT_NOFILE at LIMIT, the client opens all but MARGIN of the numbers it
 * has free: over kernel TCP and with loopfast, every connect and byte must
 * succeed.  MARGIN is loopfast's own per-process descriptors (the region's
 * memory, doorbells, the wait epoll), which a fast connection needs. */
#include <sys/resource.h>

#include "helpers.h"

#define LIMIT 256
#define MARGIN 16

static void server(int l, int n)
{
    int c[LIMIT];
    for (int i = 0; i < n; i++) {
        char b;
        CHECK((c[i] = accept(l, NULL, NULL)) >= 0, "server: accept %d: %s", i, strerror(errno));
        CHECK(read_full(c[i], &b, 1) == 1 && write_full(c[i], &b, 1) == 1, "server: echo %d", i);
    }
    for (int i = 0; i < n; i++) {   /* the client's close: EOF on each */
        char b;
        CHECK(read(c[i], &b, 1) == 0, "server: connection %d did not end", i);
    }
    exit(0);
}

/* How many of n connections the client made, with their exchange. */
static int connect_many(int optin, int n)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t srv = fork_with_listener(optin, &addr, &len, &l);
    if (srv == 0)
        server(l, n);
    struct rlimit r = { LIMIT, LIMIT };
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0, "setrlimit: %s", strerror(errno));
    int c[LIMIT], made = 0;
    for (; made < n; made++) {
        char b = (char)made;
        c[made] = socket(AF_INET, SOCK_STREAM, 0);
        if (c[made] < 0) {
            fprintf(stderr, "%s: socket %d: %s\n", optin ? "loopfast" : "kernel", made,
                    strerror(errno));
            break;
        }
        if (optin)
            CHECK(opt_in(c[made]) == 0, "opt in: %s", strerror(errno));
        CHECK(connect(c[made], (const struct sockaddr *)&addr, len) == 0, "connect %d: %s", made,
              strerror(errno));
        CHECK(write_full(c[made], &b, 1) == 1, "write %d", made);
        char back;
        CHECK(read_full(c[made], &back, 1) == 1 && back == b, "read %d", made);
    }
    for (int i = 0; i < made; i++)
        close(c[i]);
    if (made < n)
        kill(srv, SIGKILL);
    int st = child_status(srv);
    CHECK(made < n || st == 0, "server ended with %d", st);
    r.rlim_cur = r.rlim_max = 4096;
    setrlimit(RLIMIT_NOFILE, &r);   /* the next run's server */
    return made;
}

int main(void)
{
    alarm(60);
    int open_now = count_open_fds(), n = LIMIT - open_now - MARGIN;
    int kernel = connect_many(0, n), fast = connect_many(1, n);
    printf("connections made with their first exchange, of %d (limit %d): kernel %d, "
           "loopfast %d\n", n, LIMIT, kernel, fast);
    CHECK(kernel == n, "kernel TCP made only %d of %d connections", kernel, n);
    CHECK(fast == n, "loopfast made only %d of the %d connections the kernel made", fast, n);
    return 0;
}
