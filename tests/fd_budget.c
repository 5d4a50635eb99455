/* loopfast's descriptors come out of the program's budget, and only up to
 * its share (a quarter of RLIMIT_NOFILE by default): a server at half its
 * limit accepts every connection and echoes every byte as over kernel TCP,
 * and the files it can open after that are at most that share fewer (the
 * connections beyond what the share holds stay plain TCP).  At
 * limits 256, 1024 and 4096, client in a separate process and in the same
 * one.  Before the share, fast connections took the table and accept()
 * failed with EMFILE at a fraction of the connections. */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "helpers.h"

struct outcome {
    int accepted, fast, files, err;
};

static void set_limit(rlim_t n)
{
    struct rlimit r = { n, n };
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0, "setrlimit %llu: %s", (unsigned long long)n,
          strerror(errno));
}

/* Opens /dev/null until the table is full; how many opened. */
static int files_until_emfile(void)
{
    int n = 0, fd;
    while ((fd = open("/dev/null", O_RDONLY)) >= 0)
        n++;
    CHECK(errno == EMFILE, "open stopped with %s, not EMFILE", strerror(errno));
    return n;
}

/* Accepts and echoes one byte on each of n connections; clients come from
 * `dial` (a separate process: NULL). */
static struct outcome serve(int l, int n, const struct sockaddr_storage *addr, socklen_t len,
                            int optin, int same_process)
{
    struct outcome o = { 0, 0, 0, 0 };
    int *clients = calloc((size_t)n, sizeof *clients), *servers = calloc((size_t)n, sizeof *servers);
    for (int i = 0; i < n; i++) {
        if (same_process)
            clients[i] = connect_to(addr, len, optin);
        if (same_process && clients[i] < 0) {
            o.err = errno;
            break;
        }
        if (same_process)
            CHECK(write_full(clients[i], "q", 1) == 1, "client write %d", i);
        int s = accept(l, NULL, NULL);
        if (s < 0) {
            o.err = errno;
            break;
        }
        char b;
        CHECK(read_full(s, &b, 1) == 1 && b == 'q', "connection %d: byte lost", i);
        CHECK(write_full(s, "r", 1) == 1, "connection %d: echo", i);
        if (same_process)
            CHECK(read_full(clients[i], &b, 1) == 1 && b == 'r', "connection %d: echo lost", i);
        /* a second exchange: the client takes the answer at its write after a read */
        if (same_process)
            CHECK(write_full(clients[i], "s", 1) == 1, "client write %d", i);
        CHECK(read_full(s, &b, 1) == 1 && b == 's', "connection %d: second byte lost", i);
        servers[o.accepted++] = s;
    }
    usleep(100 * 1000);   /* the last clients' proofs arrive */
    for (int i = 0; i < o.accepted; i++)
        o.fast += loopfast_fd_is_fast(servers[i]) == 1;
    o.files = files_until_emfile();
    return o;   /* the process exits: everything closes */
}

/* The client process: n connections, one byte each way, held until the
 * server is done (it closes `hold`). */
static void client(const struct sockaddr_storage *addr, socklen_t len, int n, int optin, int hold)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    for (int i = 0; i < n; i++) {
        int c = connect_to(addr, len, optin);
        char b;
        if (c < 0 || write_full(c, "q", 1) != 1 || read_full(c, &b, 1) != 1 || b != 'r' ||
            write_full(c, "s", 1) != 1)
            break;   /* the server ran out: its report says so */
    }
    char b;
    (void)!read(hold, &b, 1);
    _exit(0);
}

static struct outcome run(rlim_t limit, int optin, int same_process)
{
    int rep[2], hold[2];
    CHECK(pipe(rep) == 0 && pipe(hold) == 0, "pipe");
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int n = (int)limit / (same_process ? 4 : 2);   /* the program's own half of its table */
    pid_t c = -1;
    if (!same_process && (c = fork()) == 0) {
        close(l);
        close(hold[1]);
        client(&addr, len, n, optin, hold[0]);
    }
    pid_t s = fork();
    if (s == 0) {
        close(hold[0]);
        /* the pipes and the listener count against the limit, as the
         * program's own descriptors */
        set_limit(limit);
        struct outcome o = serve(l, n, &addr, len, optin, same_process);
        CHECK(write(rep[1], &o, sizeof o) == sizeof o, "report");
        _exit(0);
    }
    close(l);
    close(hold[0]);
    close(rep[1]);
    struct outcome o;
    CHECK(read(rep[0], &o, sizeof o) == sizeof o, "the server failed (limit %llu, %s, %s)",
          (unsigned long long)limit, optin ? "loopfast" : "kernel", same_process ? "same process" : "two processes");
    close(hold[1]);
    close(rep[0]);
    CHECK(child_status(s) == 0, "server exit");
    if (c > 0)
        CHECK(child_status(c) == 0, "client exit");
    return o;
}

int main(void)
{
    alarm(120);
    static const rlim_t limits[] = { 256, 1024, 4096 };
    for (int same = 0; same <= 1; same++)
        for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
            rlim_t lim = limits[i];
            struct outcome k = run(lim, 0, same), f = run(lim, 1, same);
            const char *shape = same ? "same process" : "client apart";
            printf("limit %4llu, %s: kernel accepted %d then %d files; loopfast accepted %d (%d fast) "
                   "then %d files\n",
                   (unsigned long long)lim, shape, k.accepted, k.files, f.accepted, f.fast, f.files);
            CHECK(k.accepted == (int)lim / (same ? 4 : 2) && !k.err, "kernel TCP itself failed: %s", strerror(k.err));
            CHECK(f.accepted == k.accepted, "limit %llu, %s: loopfast accepted %d of %d (%s)",
                  (unsigned long long)lim, shape, f.accepted, k.accepted, strerror(f.err));
            CHECK(f.files >= k.files - (int)lim / 4, "limit %llu, %s: %d files, kernel %d: more "
                  "than a quarter of the table taken", (unsigned long long)lim, shape, f.files, k.files);
            CHECK(f.fast > 0, "limit %llu, %s: no connection was fast", (unsigned long long)lim, shape);
        }
    printf("ok: loopfast kept to its share of the descriptor table\n");
    return 0;
}
