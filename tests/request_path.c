/* Later connections between two processes that already share a region are
 * asked for in it, with no offer (docs/design.md, 4.8), when the server's
 * listener is its process's alone; a listener made before a fork or with
 * SO_REUSEPORT keeps offers, and a server that restarted costs one plain
 * connection.  Every shape runs over kernel TCP too, every byte is echoed
 * and checked, and whether a connection offered is read from the kernel's
 * list of unix sockets (/proc/net/unix), not from loopfast.
 *
 * Each connection: connect; one exchange (a short connection closes here);
 * then two more, after which a long one must be fast. */
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

#define CONNS 12

enum shape { ALONE, FORKED_LISTENER, REUSEPORT };
static const char *const shape_name[] = { "listener alone", "listener made before fork",
                                          "SO_REUSEPORT listener" };

static void *echo_thread(void *arg)
{
    int c = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        if (write_full(c, buf, (size_t)n) != n)
            _exit(1);
    close(c);
    return NULL;
}

/* Echoes every connection in a thread of its own, forever. */
static void serve(int l)
{
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(1);
        pthread_t t;
        if (pthread_create(&t, NULL, echo_thread, (void *)(intptr_t)c) != 0)
            _exit(1);
        pthread_detach(t);
    }
}

/* Set: a server process runs as nobody, not dumpable (other_uid_client). */
static int server_undumpable;

/* A server process.  listener >= 0: it serves that one (made before the
 * fork); else it makes its own on `port` (0: any) and tells the address. */
static pid_t start_server(int optin, int listener, int reuseport, int port,
                          struct sockaddr_storage *addr, socklen_t *len)
{
    int tell[2];
    CHECK(pipe(tell) == 0, "pipe");
    fflush(stdout);   /* not printed again by the child */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(60);
        close(tell[0]);
        if (server_undumpable &&
            (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0 ||
             prctl(PR_SET_DUMPABLE, 0) != 0))
            _exit(1);
        if (listener < 0)
            listener = listen_on_port(AF_INET, optin, port,
                                      LISTEN_REUSEADDR | (reuseport ? LISTEN_REUSEPORT : 0), addr,
                                      len);
        if (write(tell[1], addr, sizeof *addr) != sizeof *addr)
            _exit(1);
        close(tell[1]);
        serve(listener);
    }
    close(tell[1]);
    CHECK(read(tell[0], addr, sizeof *addr) == sizeof *addr, "server did not start");
    close(tell[0]);
    *len = sizeof(struct sockaddr_in);
    return pid;
}

/* Whether a unix socket named after fd's inode (an offer) exists now. */
static int offered(int fd)
{
    struct stat st;
    char want[64], line[512];
    CHECK(fstat(fd, &st) == 0, "fstat");
    snprintf(want, sizeof want, "@loopfast-offer-%llu\n", (unsigned long long)st.st_ino);
    FILE *f = fopen("/proc/net/unix", "r");
    CHECK(f, "/proc/net/unix: %s", strerror(errno));
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        size_t n = strlen(line), w = strlen(want);
        found = n >= w && strcmp(line + n - w, want) == 0;
    }
    fclose(f);
    return found;
}

static void exchange(int fd, unsigned seed)
{
    char out[700], in[700];
    for (size_t k = 0; k < sizeof out; k++)
        out[k] = (char)(seed * 31 + k * 7);
    CHECK(write_full(fd, out, sizeof out) == sizeof out, "write: %s", strerror(errno));
    CHECK(read_full(fd, in, sizeof in) == sizeof in, "read: %s", strerror(errno));
    CHECK(memcmp(in, out, sizeof in) == 0, "echo differs");
}

struct tally { int offers, fast, long_ones; };

/* One connection: short ones close after their first exchange. */
static void one_connection(const struct sockaddr_storage *addr, socklen_t len, int optin,
                           int is_short, unsigned seed, struct tally *t)
{
    int fd = connect_to(addr, len, optin);
    t->offers += offered(fd);
    exchange(fd, seed);
    if (!is_short) {
        exchange(fd, seed + 1);
        exchange(fd, seed + 2);
        t->fast += loopfast_fd_is_fast(fd) == 1;
        t->long_ones++;
    }
    close(fd);
}

static struct tally run_shape(enum shape sh, int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = sh == FORKED_LISTENER ? listen_on_port(AF_INET, optin, 0, LISTEN_REUSEADDR, &addr, &len)
                                  : -1;
    pid_t server = start_server(optin, l, sh == REUSEPORT, 0, &addr, &len);
    if (l >= 0)
        close(l);
    struct tally t = { 0, 0, 0 };
    for (int i = 0; i < CONNS; i++)
        one_connection(&addr, len, optin, i % 2 == 0, (unsigned)i * 3, &t);
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    printf("%s, %s: %d of %d connections offered, %d of %d long ones fast\n",
           optin ? "loopfast" : "kernel", shape_name[sh], t.offers, CONNS, t.fast, t.long_ones);
    return t;
}

/* The server process dies and another one listens on the same port: the
 * client's region is the dead one's.  Its first request is answered by
 * nobody (plain, correct), the next connection offers, later ones ask. */
static void restart(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t server = start_server(optin, -1, 0, 0, &addr, &len);
    int port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    struct tally before = { 0, 0, 0 }, after = { 0, 0, 0 };
    for (int i = 0; i < 4; i++)
        one_connection(&addr, len, optin, 0, (unsigned)i, &before);
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    server = start_server(optin, -1, 0, port, &addr, &len);
    int fast[6];
    for (int i = 0; i < 6; i++) {
        struct tally one = { 0, 0, 0 };
        one_connection(&addr, len, optin, 0, 100u + (unsigned)i, &one);
        fast[i] = one.fast;
        after.fast += one.fast;
        after.offers += one.offers;
    }
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    printf("%s, server restarted: before %d of 4 fast; after %d of 6 fast (%d offered)\n",
           optin ? "loopfast" : "kernel", before.fast, after.fast, after.offers);
    if (optin) {
        CHECK(before.fast == 4, "before the restart %d of 4 fast", before.fast);
        CHECK(!fast[0] && after.offers >= 1, "the first connection after a restart");
        CHECK(fast[2] && fast[3] && fast[4] && fast[5], "after a restart the pair is fast again");
    }
}

/* A client of another uid cannot read the server's /proc/<pid>/fd, the
 * proof a requested connection's server gives by default, nor (undumpable)
 * one of its own uid whose server made itself not dumpable: it sees so
 * before its first request and tells the server, which then proves each
 * one with an epoll on the region's channel (design 4.8).  Its first
 * requested connection used to find out with its own readlink and stay
 * plain: squid's workers (uid proxy) sent the first CONNECT tunnel to a
 * root backend they already had a connection with over kernel TCP. */
static void other_uid_client(int optin, int undumpable)
{
    if (geteuid() != 0) {
        printf("not root: the other-uid client is not tried\n");
        return;
    }
    struct sockaddr_storage addr;
    socklen_t len;
    server_undumpable = undumpable;
    pid_t server = start_server(optin, -1, 0, 0, &addr, &len);
    server_undumpable = 0;
    fflush(stdout);
    pid_t client = fork();
    CHECK(client >= 0, "fork");
    if (client == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
            _exit(2);
        int fast[CONNS] = { 0 };
        struct tally t = { 0, 0, 0 };
        for (int i = 0; i < CONNS; i++) {
            struct tally one = { 0, 0, 0 };
            one_connection(&addr, len, optin, i == 0, 200u + (unsigned)i, &one);
            fast[i] = one.fast;
            t.fast += one.fast;
            t.offers += one.offers;
        }
        printf("%s, client of %s: %d of %d offered, %d of %d long ones fast\n",
               optin ? "loopfast" : "kernel",
               undumpable ? "the same uid, server not dumpable" : "another uid", t.offers, CONNS,
               t.fast, CONNS - 1);
        fflush(stdout);
        if (optin && (t.offers != 1 || !fast[1] || t.fast != CONNS - 1))
            _exit(1);   /* the first offers (short: plain); every one asked for after it fast */
        _exit(optin || (!t.offers && !t.fast) ? 0 : 1);
    }
    CHECK(child_status(client) == 0, "the other uid's client");
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
}

/* More client processes than a server lets ask at once (64: each accept()
 * looks at their request words): the least recently used regions stop
 * taking requests, and their clients offer again, every byte right and
 * every long connection fast. */
#define CLIENT_PROCS 70

struct round_report { int offers, fast; };

static struct round_report client_round(const struct sockaddr_storage *addr, socklen_t len,
                                        int optin, int with_short, unsigned seed)
{
    struct tally t = { 0, 0, 0 };
    if (with_short)
        one_connection(addr, len, optin, 1, seed, &t);
    one_connection(addr, len, optin, 0, seed + 10, &t);
    one_connection(addr, len, optin, 0, seed + 20, &t);
    return (struct round_report){ t.offers, t.fast };
}

static void many_client_processes(int optin)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    if (rl.rlim_max < 4096) {
        printf("RLIMIT_NOFILE's hard limit is below 4096: 70 client processes not tried\n");
        return;
    }
    rl.rlim_cur = 4096;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit");   /* inherited by the server */
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t server = start_server(optin, -1, 0, 0, &addr, &len);
    int go[CLIENT_PROCS], rep[CLIENT_PROCS];
    pid_t kids[CLIENT_PROCS];
    int fast = 0, offers_first = 0;
    for (int i = 0; i < CLIENT_PROCS; i++) {
        int g[2], r[2];
        CHECK(pipe(g) == 0 && pipe(r) == 0, "pipe");
        fflush(stdout);
        kids[i] = fork();
        CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0) {
            close(g[1]);
            close(r[0]);
            struct round_report one = client_round(&addr, len, optin, 1, (unsigned)i * 100);
            char b;
            if (write(r[1], &one, sizeof one) != sizeof one || read(g[0], &b, 1) != 1)
                _exit(1);
            struct round_report two = client_round(&addr, len, optin, 0, (unsigned)i * 100 + 50);
            _exit(write(r[1], &two, sizeof two) == sizeof two ? 0 : 1);
        }
        close(g[0]);
        close(r[1]);
        go[i] = g[1];
        rep[i] = r[0];
        struct round_report one;
        CHECK(read(rep[i], &one, sizeof one) == sizeof one, "client %d, round 1", i);
        fast += one.fast;
    }
    for (int i = 0; i < CLIENT_PROCS; i++) {
        struct round_report two;
        CHECK(write(go[i], "g", 1) == 1, "go");
        CHECK(read(rep[i], &two, sizeof two) == sizeof two, "client %d, round 2", i);
        CHECK(child_status(kids[i]) == 0, "client %d", i);
        fast += two.fast;
        if (i == 0)
            offers_first = two.offers;
        close(go[i]);
        close(rep[i]);
    }
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    printf("%s, %d client processes: %d of %d long connections fast; the first client's second "
           "round offered %d times\n", optin ? "loopfast" : "kernel", CLIENT_PROCS, fast,
           4 * CLIENT_PROCS, offers_first);
    if (optin)
        CHECK(fast == 4 * CLIENT_PROCS && offers_first >= 1,
              "%d of %d fast, the oldest client offered %d times", fast, 4 * CLIENT_PROCS,
              offers_first);
    else
        CHECK(fast == 0, "kernel TCP: nothing fast");
}

/* Client threads asking at once: the region's 16 request words are
 * shared, and so is reading the server's proofs off the channel. */
#define THREADS 6
#define PER_THREAD 40
struct crowd { struct sockaddr_storage addr; socklen_t len; int optin, id; struct tally t; };

static void *crowd_thread(void *arg)
{
    struct crowd *c = arg;
    for (int i = 0; i < PER_THREAD; i++)
        one_connection(&c->addr, c->len, c->optin, i % 3 == 0,
                       (unsigned)(c->id * 1000 + i), &c->t);
    return NULL;
}

static void crowd(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t server = start_server(optin, -1, 0, 0, &addr, &len);
    struct tally warm = { 0, 0, 0 };
    one_connection(&addr, len, optin, 1, 7, &warm);   /* the first contact */
    struct crowd c[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i] = (struct crowd){ addr, len, optin, i, { 0, 0, 0 } };
        CHECK(pthread_create(&t[i], NULL, crowd_thread, &c[i]) == 0, "pthread_create");
    }
    struct tally all = { 0, 0, 0 };
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        all.offers += c[i].t.offers;
        all.fast += c[i].t.fast;
        all.long_ones += c[i].t.long_ones;
    }
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    printf("%s, %d threads: %d of %d connections offered, %d of %d long ones fast\n",
           optin ? "loopfast" : "kernel", THREADS, all.offers, THREADS * PER_THREAD, all.fast,
           all.long_ones);
    if (optin)
        CHECK(all.fast == all.long_ones, "%d of %d long connections fast", all.fast,
              all.long_ones);
    else
        CHECK(!all.offers && !all.fast, "kernel TCP: nothing offered, nothing fast");
}

int main(void)
{
    alarm(120);
    for (int optin = 0; optin <= 1; optin++) {
        struct tally alone = run_shape(ALONE, optin);
        struct tally forked = run_shape(FORKED_LISTENER, optin);
        struct tally shared = run_shape(REUSEPORT, optin);
        if (!optin) {
            CHECK(!alone.offers && !alone.fast && !forked.fast && !shared.fast,
                  "kernel TCP: nothing offered, nothing fast");
            continue;
        }
        /* the first contact offers; its short connection leaves the client
         * the region, where every later connection asks */
        CHECK(alone.offers == 1, "listener alone: %d connections offered, want 1", alone.offers);
        CHECK(forked.offers == CONNS, "listener from before a fork: %d of %d offered",
              forked.offers, CONNS);
        CHECK(shared.offers == CONNS, "SO_REUSEPORT: %d of %d offered", shared.offers, CONNS);
        CHECK(alone.fast == alone.long_ones && forked.fast == forked.long_ones &&
                  shared.fast == shared.long_ones,
              "long connections not all fast: %d, %d, %d of %d", alone.fast, forked.fast,
              shared.fast, alone.long_ones);
    }
    restart(0);
    restart(1);
    crowd(0);
    crowd(1);
    for (int undumpable = 0; undumpable <= 1; undumpable++) {
        other_uid_client(0, undumpable);
        other_uid_client(1, undumpable);
    }
    many_client_processes(0);
    many_client_processes(1);
    return 0;
}
