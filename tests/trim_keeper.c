/* One thread of a process keeps the trim rounds (docs/design.md, 5): while
 * one of its connections streams, so that its ring stays watched, the
 * process's idle threads sleep through, where every sleeper used to be cut
 * short at each round (every 400 ms).  A server process streams on
 * connection 0 (32 KiB every 20 ms, the thread sleeping in usleep, and
 * 1 MiB at once after 200 ms) and runs
 * IDLE more connections each in a thread blocked in read(); after one echo
 * on each, so that each went to sleep while the stream was watched, the
 * idle threads sleep WATCH_MS: at most TAKERS of them may wake more than
 * NOISE times (the keeper, and one more for a race at the lease), the
 * kernel's none.  Then the stream stops, its thread blocks in read(), and
 * the client closes the idle connections, so that the keeper, one of their
 * threads, exits: the stream thread must take the rounds over and give the
 * stream ring's pages back within GIVE_BACK_MS (the lease, 5 s, then two
 * rounds). */
#include <poll.h>
#include <sys/syscall.h>

#include "helpers.h"

#define IDLE 8
#define CHUNK (32 << 10)
#define BURST (1 << 20)   /* a whole default ring */
#define BURST_AT 10       /* chunks before it: 200 ms */
#define STREAM_GAP_US 20000
#define WATCH_MS 3000
#define NOISE 2
#define TAKERS 2
#define GIVE_BACK_MS 12000
#define KEEP_KB 512    /* the region's bytes once the stream ring is trimmed */

static void *stream_out(void *arg)
{
    int c = (int)(intptr_t)arg;
    static char chunk[CHUNK], burst[BURST];
    char b;
    for (int i = 0; recv(c, &b, 1, MSG_DONTWAIT) != 1; i++) {
        /* a drained ring starts again at its first pages (design 5, the
         * ring's origin): one long write, once the stream is on the ring,
         * touches all of it, for the trim to give back */
        if (i == BURST_AT && write_full(c, burst, sizeof burst) != (ssize_t)sizeof burst)
            return NULL;
        if (send(c, chunk, sizeof chunk, MSG_NOSIGNAL) != (ssize_t)sizeof chunk)
            return NULL;
        usleep(STREAM_GAP_US);
    }
    while (read(c, &b, 1) > 0)
        ;
    close(c);
    return NULL;
}

/* echo_until_eof's buffer is static: one per thread here. */
static void *echo_one(void *arg)
{
    int c = (int)(intptr_t)arg;
    char b[4096];
    for (ssize_t n; (n = read(c, b, sizeof b)) > 0;)
        if (write_full(c, b, (size_t)n) != n)
            break;
    close(c);
    return NULL;
}

static void serve(int l)
{
    for (int i = 0; i <= IDLE; i++) {
        int c = accept(l, NULL, NULL), id;
        pthread_t t;
        if (c < 0 || read_full(c, &id, sizeof id) != sizeof id)
            _exit(2);
        void *(*fn)(void *) = id == 0 ? stream_out : echo_one;
        if (pthread_create(&t, NULL, fn, (void *)(intptr_t)c) != 0)
            _exit(2);
    }
    pause();
    _exit(0);
}

static volatile int draining = 1;

static void *drain(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static char buf[CHUNK];
    while (__atomic_load_n(&draining, __ATOMIC_RELAXED)) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) == 1 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 0)
            break;
    }
    return NULL;
}

/* The server's threads other than its main one, from /proc: how many. */
static int server_threads(pid_t srv, pid_t *tids, int most)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)srv);
    DIR *d = opendir(dir);
    CHECK(d, "no tasks for %d", (int)srv);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        pid_t t = (pid_t)atoi(e->d_name);
        if (t > 0 && t != srv && n < most)
            tids[n++] = t;
    }
    closedir(d);
    return n;
}

/* The idle connections' threads in tids: all but the stream's, the one that
 * slept most (every 20 ms), read after it streamed for a while. */
static void idle_threads(pid_t srv, pid_t *tids)
{
    pid_t all[IDLE + 1];
    int n = server_threads(srv, all, IDLE + 1), stream = 0;
    CHECK(n == IDLE + 1, "the server has %d threads", n);
    for (int i = 1; i < n; i++)
        if (voluntary_switches(srv, all[i]) > voluntary_switches(srv, all[stream]))
            stream = i;
    for (int i = 0, k = 0; i < n; i++)
        if (i != stream)
            tids[k++] = all[i];
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct outcome { int woke_many; long most; double give_back_ms; long before_kb, after_kb; };

static struct outcome run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l, fds[IDLE + 1];
    struct outcome o = { 0, 0, -1, 0, 0 };
    pid_t srv = fork_with_listener(optin, &addr, &len, &l);
    if (srv == 0) {
        alarm(60);
        serve(l);
    }
    for (int i = 1; i <= IDLE; i++) {
        fds[i] = connect_to(&addr, len, optin);
        CHECK(write_full(fds[i], &i, sizeof i) == sizeof i, "connection %d", i);
        client_echo_rounds(fds[i], 2, "warm-up");
        CHECK(loopfast_fd_is_fast(fds[i]) == optin, "connection %d: fast %d", i,
              loopfast_fd_is_fast(fds[i]));
    }
    int zero = 0;
    fds[0] = connect_to(&addr, len, optin);
    CHECK(write_full(fds[0], &zero, sizeof zero) == sizeof zero, "stream connection");
    pthread_t drainer;
    draining = 1;
    CHECK(pthread_create(&drainer, NULL, drain, (void *)(intptr_t)fds[0]) == 0, "thread");
    usleep(800000);   /* the stream's ring written past 24 KiB: watched */
    pid_t tids[IDLE];
    idle_threads(srv, tids);
    for (int i = 1; i <= IDLE; i++)
        client_echo_rounds(fds[i], 1, "idle connection");
    usleep(100000);
    long before[IDLE];
    for (int i = 0; i < IDLE; i++)
        CHECK((before[i] = voluntary_switches(srv, tids[i])) >= 0, "thread %d", tids[i]);
    usleep(WATCH_MS * 1000);
    for (int i = 0; i < IDLE; i++) {
        long d = voluntary_switches(srv, tids[i]) - before[i];
        o.woke_many += d > NOISE;
        o.most = d > o.most ? d : o.most;
    }
    CHECK(send(fds[0], "s", 1, 0) == 1, "stop the stream");
    usleep(300000);
    struct regions_seen seen;
    if (loopfast_regions(srv, &seen) > 0)
        o.before_kb = (long)(seen.bytes >> 10);
    for (int i = 1; i <= IDLE; i++)
        close(fds[i]);   /* the keeper's thread among those that exit */
    double start = now_ms();
    while (optin && now_ms() - start < GIVE_BACK_MS + 3000) {
        CHECK(loopfast_regions(srv, &seen) > 0, "the server's region");
        o.after_kb = (long)(seen.bytes >> 10);
        if (o.after_kb <= KEEP_KB) {
            o.give_back_ms = now_ms() - start;
            break;
        }
        usleep(50000);
    }
    __atomic_store_n(&draining, 0, __ATOMIC_RELAXED);
    pthread_join(drainer, NULL);
    close(fds[0]);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    return o;
}

int main(void)
{
    alarm(90);
    struct outcome kernel = run(0), fast = run(1);
    printf("idle threads (of %d) woken more than %d times in %d ms while another connection "
           "streamed: kernel %d (most %ld), loopfast %d (most %ld); stream ring given back "
           "%.0f ms after its keeper left (region %ld -> %ld KiB)\n", IDLE, NOISE, WATCH_MS,
           kernel.woke_many, kernel.most, fast.woke_many, fast.most, fast.give_back_ms,
           fast.before_kb, fast.after_kb);
    CHECK(fast.woke_many <= kernel.woke_many + TAKERS,
          "%d idle threads woke at the trim rounds (kernel %d)", fast.woke_many,
          kernel.woke_many);
    CHECK(fast.before_kb > KEEP_KB, "the stream ring held only %ld KiB", fast.before_kb);
    CHECK(fast.give_back_ms >= 0 && fast.give_back_ms <= GIVE_BACK_MS,
          "the stream ring was not given back once its keeper left: %ld KiB after %d ms",
          fast.after_kb, GIVE_BACK_MS + 3000);
    return 0;
}
