/* Connections between one client process and one server process share one
 * region of shared memory (docs/design.md, 11): 48 concurrent connections
 * cost each process one memfd and two doorbells, not 48 and 96: the TCP
 * socket alone per connection, and every byte is echoed as over
 * kernel TCP.  Connections closed give their slots back: as many new ones
 * take them again without the region growing, and the region's memory goes
 * back once they close on both ends.  Twenty connections one at a time
 * all take slots of the same region (both ends keep it between them).  An exec'd client image that
 * does not hold the region any more is told of it by id, answers "no link",
 * and its connections stay correct (the next one fast again, in a new
 * region).  Run both ways; the kernel run holds no memfd at all. */
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "helpers.h"

#define N 48

extern char **environ;
#define MSG 4096

/* Echo server for every connection it accepts; tells `report` one byte per
 * connection it closed after EOF, and '0' + fast per connection accepted. */
static void serve(int l, int report, void *arg)
{
    (void)arg;
    struct pollfd p[2 * N + 2];
    int n = 1;
    p[0] = (struct pollfd){ .fd = l, .events = POLLIN };
    static char buf[1 << 16];
    for (;;) {
        CHECK(poll(p, (nfds_t)n, -1) > 0, "server poll: %s", strerror(errno));
        if ((p[0].revents & POLLIN) && n < 2 * N + 2) {
            int c = accept(l, NULL, NULL);
            CHECK(c >= 0, "accept: %s", strerror(errno));
            p[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
        }
        for (int i = 1; i < n; i++) {
            if (!p[i].revents)
                continue;
            ssize_t k = read(p[i].fd, buf, sizeof buf);
            if (k > 0) {
                CHECK(write_full(p[i].fd, buf, (size_t)k) == k, "echo");
                continue;
            }
            if (k < 0 && errno == EAGAIN)
                continue;
            close(p[i].fd);
            p[i--] = p[--n];
            CHECK(write(report, "c", 1) == 1, "report");
        }
    }
}

static void round_trip(int fd, unsigned seed)
{
    char out[MSG], in[MSG];
    for (int i = 0; i < MSG; i++)
        out[i] = (char)(seed * 31u + (unsigned)i * 7u);
    CHECK(write_full(fd, out, MSG) == MSG, "write: %s", strerror(errno));
    CHECK(read_full(fd, in, MSG) == MSG, "read: %s", strerror(errno));
    CHECK(!memcmp(in, out, MSG), "echo %u differs", seed);
}

static void await_closes(int report, int k)
{
    char b;
    for (int i = 0; i < k; i++)
        CHECK(read(report, &b, 1) == 1, "server reports");
}

/* The exec'd image does not hold the region (its connection was
 * close-on-exec; a forked holder keeps the connection open).  Through
 * loopfast's execve the server is told at once: every connection is fast.
 * Through a raw system call it is not: the server names the region by id,
 * the first connection stays plain ("no link") and, once the server has
 * seen that, the next ones are fast again, in a new region. */
static int after_exec(int port, int optin, int hold, int raw)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fast_seen = 0;
    for (int i = 0; i < 40 && !(fast_seen && i >= 3); i++) {
        int fd = connect_to((struct sockaddr_storage *)&a, sizeof a, optin);
        round_trip(fd, 1000u + (unsigned)i);
        int fast = loopfast_fd_is_fast(fd);
        close(fd);
        if (optin && !raw)
            CHECK(fast == 1, "after exec: connection %d is not fast", i);
        if (optin && raw && i == 0)
            CHECK(fast == 0, "after a raw exec: the first connection took a region we lack");
        fast_seen |= fast;
        if (!fast)
            usleep(50000);   /* the server sees "no link" as it closes its end */
    }
    CHECK(fast_seen == optin, "after exec: fast %d", fast_seen);
    close(hold);
    return 0;
}

/* A client process that makes a fast connection, leaves it to a forked
 * holder and execs itself (raw: by the system call, past loopfast). */
static void exec_client(const struct sockaddr_storage *addr, socklen_t len, int optin, char *self,
                        int raw)
{
    pid_t client = fork();
    CHECK(client >= 0, "fork");
    if (client > 0) {
        CHECK(child_status(client) == 0, "the exec'd client failed (raw %d)", raw);
        return;
    }
    int a = connect_to(addr, len, optin);
    round_trip(a, 5);
    int hold[2];
    CHECK(pipe(hold) == 0, "pipe");
    pid_t holder = fork();
    CHECK(holder >= 0, "fork");
    if (holder == 0) {
        close(hold[1]);
        char b;
        (void)!read(hold[0], &b, 1);   /* until the exec'd image is done */
        _exit(0);
    }
    close(hold[0]);
    fcntl(a, F_SETFD, FD_CLOEXEC);
    char port[16], mode[4], fd[16], how[4];
    snprintf(port, sizeof port, "%d", ntohs(((const struct sockaddr_in *)addr)->sin_port));
    snprintf(mode, sizeof mode, "%d", optin);
    snprintf(fd, sizeof fd, "%d", hold[1]);
    snprintf(how, sizeof how, "%d", raw);
    char *args[] = { self, "--after-exec", port, mode, fd, how, NULL };
    if (raw)
        syscall(SYS_execve, self, args, environ);
    else
        execv(self, args);
    _exit(9);
}

static int run(int optin, char *self)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), report;
    pid_t server = fork_reporting_server(l, &report, serve, NULL);
    int fds[N];
    int before = count_open_fds();
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(&addr, len, optin);
        round_trip(fds[i], (unsigned)i);
        CHECK(loopfast_fd_is_fast(fds[i]) == optin, "connection %d: fast %d", i,
              loopfast_fd_is_fast(fds[i]));
    }
    int per_conn10 = (count_open_fds() - before) * 10 / N;
    struct regions_seen at0, seen;
    int mine = loopfast_regions(getpid(), &at0), theirs = loopfast_regions(server, NULL);
    printf("%s: %d connections, %d.%d descriptors each, regions: client %d, server %d\n",
           optin ? "loopfast" : "kernel", N, per_conn10 / 10, per_conn10 % 10, mine, theirs);
    /* the server also keeps its spare's new region for the next first contact */
    CHECK(mine == optin && theirs <= 2 * optin, "regions: client %d, server %d", mine, theirs);
    /* The TCP socket each; once: the region, its two doorbells and its
     * channel, a wait epoll, the sock_diag socket, a reserve epoll, the last
     * answer's spent socket until the next wait (docs/design.md, 4.6). */
    if (optin)
        CHECK(count_open_fds() - before <= N + 9, "%d descriptors for %d connections",
              count_open_fds() - before, N);

    for (int i = 0; i < N; i += 2)
        close(fds[i]);
    await_closes(report, N / 2);
    for (int i = 0; i < N; i += 2) {
        fds[i] = connect_to(&addr, len, optin);
        round_trip(fds[i], 100u + (unsigned)i);
    }
    for (int i = 0; i < N; i++)
        round_trip(fds[i], 200u + (unsigned)i);
    mine = loopfast_regions(getpid(), &seen);
    printf("region: %lld bytes, then %lld after %d connections closed and opened\n",
           (long long)at0.largest, (long long)seen.largest, N / 2);
    CHECK(mine == optin && seen.largest == at0.largest,
          "slots were not reused: %d regions, %lld -> %lld bytes", mine, (long long)at0.largest,
          (long long)seen.largest);

    off_t held = seen.bytes;   /* with every connection open */
    for (int i = 0; i < N; i++)
        close(fds[i]);
    await_closes(report, N);
    /* Closed on both ends, each slot is given back by the last to let go:
     * the region kept for the next connection holds its first page, and
     * its first 8 slots, which carried a few bytes each, a few pages each
     * (header, ring pages) for the next connections (docs/design.md, 11);
     * the other 40 nothing once they stayed free for half a second (warm
     * until then, for a next connection).  Waits, here in poll and in the
     * server's, are cut short to punch them: within 3 s. */
    off_t closed_at = 0;
    int waited = 0;
    do {
        poll(NULL, 0, 100);
        waited += 100;
        loopfast_regions(getpid(), &seen);
        closed_at = closed_at ? closed_at : seen.bytes;
    } while (optin && seen.bytes > (16 + 8 * 24) * 1024 && waited < 3000);
    mine = loopfast_regions(getpid(), &seen);
    printf("region memory: %lld KiB with %d connections open, %lld KiB after they closed, "
           "%lld KiB %d ms later\n", (long long)held / 1024, N, (long long)closed_at / 1024,
           (long long)seen.bytes / 1024, waited);
    if (optin)
        CHECK(held >= N * 8 * 1024 && seen.bytes <= (16 + 8 * 24) * 1024,
              "region memory not given back: %lld KiB open, %lld KiB closed", (long long)held / 1024,
              (long long)seen.bytes / 1024);

    /* One connection at a time, each closed on both ends before the next:
     * both ends keep the region meanwhile, so every one takes a slot of the
     * same region instead of a new one. */
    ino_t first = 0;
    for (int i = 0; i < 20; i++) {
        int fd = connect_to(&addr, len, optin);
        round_trip(fd, 300u + (unsigned)i);
        CHECK(loopfast_fd_is_fast(fd) == optin, "sequential connection %d: fast %d", i,
              loopfast_fd_is_fast(fd));
        close(fd);
        await_closes(report, 1);
        mine = loopfast_regions(getpid(), &seen);
        if (i == 0)
            first = seen.last_ino;
        CHECK(mine == optin && (!optin || seen.last_ino == first),
              "sequential connection %d: %d regions, the first one kept: %d", i, mine,
              seen.last_ino == first);
    }
    exec_client(&addr, len, optin, self, 0);
    exec_client(&addr, len, optin, self, 1);
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    close(report);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "--after-exec"))
        return after_exec(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    alarm(60);
    run(0, argv[0]);
    run(1, argv[0]);
    return 0;
}
