/* Threads' data calls without locked instructions (src/quick.c): a thread
 * that keeps using a direction owns it and enters it without the mutex,
 * and its calls hold a hazard instead of a reference.  Each shape runs over
 * kernel TCP first, then over loopfast, and must end the same way:
 *  (a) turns: two threads write 64 B records to one socket by turns of 32
 *      (each turn takes the direction from the other's ownership), then at
 *      once; two threads of the peer read them by turns: every record
 *      whole, each writer's in order, then EOF;
 *  (b) close under a writer: a thread writes records in a loop while
 *      another closes the socket: the writer ends with EBADF, the peer
 *      reads whole records and EOF, 20 times;
 *  (c) fork: a threaded writer that owns its direction forks, and parent
 *      and child write records at once: every record whole;
 *  (d) seccomp: a threaded process whose threads own directions confines
 *      itself with a filter that kills it on membarrier, then its threads
 *      take the directions from each other and it closes both ends;
 *  (e) idle (loopfast only): the ring a threaded writer owned gives its
 *      pages back once idle;
 *  (f) a close while one thread's send blocks on TCP (the server's bytes
 *      before its client took the answer; the client reads after 3 s) and
 *      another thread's quick write waits behind it: close() returns at
 *      once, as over the kernel, and the client reads on to EOF. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "helpers.h"

#ifdef UNDER_TSAN
/* Servers fork and then start threads, which it supports only so. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif

#ifdef UNDER_TSAN
static const int under_tsan = 1;
#else
static const int under_tsan = 0;
#endif

#define REC 64
#define TURNS 200
#define TURN_RECS 32
#define TOGETHER 20000u

struct record {
    uint32_t magic, writer;
    uint64_t seq;
    unsigned char fill[REC - 16];
};

static void record_make(struct record *r, uint32_t writer, uint64_t seq)
{
    r->magic = 0x71c4u;
    r->writer = writer;
    r->seq = seq;
    for (size_t i = 0; i < sizeof r->fill; i++)
        r->fill[i] = (unsigned char)(seq * 7 + writer * 13 + i);
}

static int record_whole(const struct record *r)
{
    struct record want;
    if (r->magic != 0x71c4u || r->writer > 1)
        return 0;
    record_make(&want, r->writer, r->seq);
    return memcmp(r, &want, REC) == 0;
}

static void *idle_thread(void *arg)
{
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();
    return NULL;
}

/* A second thread: the process counts as threaded from now on.  Waited
 * for until it runs: a fork while it starts copies its runtime's locks
 * (ASan's allocator) held. */
static void become_threaded(void)
{
    static int running;
    pthread_t t;
    __atomic_store_n(&running, 0, __ATOMIC_RELAXED);
    CHECK(pthread_create(&t, NULL, idle_thread, &running) == 0, "pthread_create");
    while (!__atomic_load_n(&running, __ATOMIC_ACQUIRE))
        sched_yield();
}

/* ---- readers of records: every record whole, each writer's in order ---- */

struct tally {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd, turn, bad, ended;
    uint64_t next[2], records;
};

struct turn_arg {
    void *shared;
    int me;
};

/* Reads records until EOF; 0 when all were whole and in order. */
static int read_records(int fd, uint64_t *records)
{
    struct record r;
    uint64_t next[2] = { 0, 0 };
    ssize_t n;
    *records = 0;
    while ((n = read_full(fd, &r, REC)) == REC) {
        if (!record_whole(&r) || r.seq != next[r.writer])
            return 1;
        next[r.writer]++;
        (*records)++;
    }
    return n == 0 ? 0 : 2;
}

/* One of two reader threads: 16 records a turn. */
static void *turn_reader(void *arg)
{
    struct tally *t = ((struct turn_arg *)arg)->shared;
    int me = ((struct turn_arg *)arg)->me;
    pthread_mutex_lock(&t->lock);
    while (!t->ended) {
        while (t->turn % 2 != me && !t->ended)
            pthread_cond_wait(&t->cond, &t->lock);
        if (t->ended)
            break;
        pthread_mutex_unlock(&t->lock);
        struct record r[16];
        ssize_t n = read_full(t->fd, r, sizeof r);
        pthread_mutex_lock(&t->lock);
        for (ssize_t i = 0; i < n / REC; i++) {
            if (!record_whole(&r[i]) || r[i].seq != t->next[r[i].writer])
                t->bad = 1;
            else
                t->next[r[i].writer]++;
            t->records++;
        }
        if (n != (ssize_t)sizeof r) {
            t->bad |= n % REC != 0 || n < 0;
            t->ended = 1;
        }
        t->turn++;
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* The peer of (a): exit status 0 when `want` records came whole, then EOF. */
static void turn_server(int listener, uint64_t want)
{
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        _exit(10);
    close(listener);
    struct tally t = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                       .fd = c, .turn = 0 };
    pthread_t th[2];
    struct turn_arg a[2] = { { &t, 0 }, { &t, 1 } };
    pthread_create(&th[0], NULL, turn_reader, &a[0]);
    pthread_create(&th[1], NULL, turn_reader, &a[1]);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    if (t.bad)
        _exit(11);
    _exit(t.records == want ? 0 : 12);
}

/* ---- (a) turns ---- */

struct writers {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd, turn, failed;
};

static void *turn_writer(void *arg)
{
    struct writers *w = ((struct turn_arg *)arg)->shared;
    uint32_t id = (uint32_t)((struct turn_arg *)arg)->me;
    pthread_mutex_lock(&w->lock);
    uint64_t seq = 0;
    struct record r;
    for (int k = 0; k < TURNS / 2; k++) {
        while (w->turn % 2 != (int)id)
            pthread_cond_wait(&w->cond, &w->lock);
        pthread_mutex_unlock(&w->lock);
        for (int i = 0; i < TURN_RECS; i++) {
            record_make(&r, id, seq++);
            if (write_full(w->fd, &r, REC) != REC)
                __atomic_store_n(&w->failed, 1, __ATOMIC_RELAXED);
        }
        pthread_mutex_lock(&w->lock);
        w->turn++;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    for (uint32_t i = 0; i < TOGETHER; i++) {   /* now both at once */
        record_make(&r, id, seq++);
        if (write_full(w->fd, &r, REC) != REC)
            __atomic_store_n(&w->failed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void shape_turns(int optin)
{
    pid_t server;
    struct sockaddr_storage addr;
    socklen_t len;
    uint64_t want = (uint64_t)TURNS * TURN_RECS + 2 * TOGETHER;
    int l = listen_on(AF_INET, optin, &addr, &len);
    server = fork();
    CHECK(server >= 0, "fork");
    if (server == 0)
        turn_server(l, want);
    close(l);
    struct writers w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
                         .fd = connect_to(&addr, len, optin) };
    pthread_t th[2];
    struct turn_arg a[2] = { { &w, 0 }, { &w, 1 } };
    pthread_create(&th[0], NULL, turn_writer, &a[0]);
    pthread_create(&th[1], NULL, turn_writer, &a[1]);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CHECK(!w.failed, "(a) a write failed");
    if (optin)
        CHECK(loopfast_fd_is_fast(w.fd) == 1, "(a) not fast");
    close(w.fd);
    CHECK(child_status(server) == 0, "(a) %s: records lost, torn or out of order (reader: %d)",
          optin ? "loopfast" : "kernel TCP", child_status(server));
}

/* ---- (b) close under a writer ---- */

struct closing {
    int fd, err;
    uint64_t written;
};

static void *closing_writer(void *arg)
{
    struct closing *c = arg;
    struct record r;
    for (;;) {
        record_make(&r, 0, c->written);
        ssize_t n = write(c->fd, &r, REC);
        if (n != REC) {
            c->err = n < 0 ? errno : -1;
            return NULL;
        }
        c->written++;
    }
}

static void records_server(int listener)
{
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        _exit(10);
    close(listener);
    uint64_t n;
    _exit(read_records(c, &n) == 0 ? 0 : 11);
}

static void shape_close(int optin)
{
    for (int round = 0; round < 20; round++) {
        pid_t server;
        int fd = connect_to_forked(optin, records_server, &server);
        struct closing c = { .fd = fd };
        pthread_t th;
        pthread_create(&th, NULL, closing_writer, &c);
        struct timespec t = { 0, 5000000 + round * 1000000 };
        nanosleep(&t, NULL);
        close(fd);
        pthread_join(th, NULL);
        int st = child_status(server);
        CHECK(st == 0, "(b) %s round %d: the reader saw a torn record (%d)",
              optin ? "loopfast" : "kernel TCP", round, st);
        CHECK(c.err == EBADF, "(b) %s round %d: the writer ended with %d (%s), not EBADF",
              optin ? "loopfast" : "kernel TCP", round, c.err, strerror(c.err > 0 ? c.err : 0));
    }
}

/* ---- (c) fork ---- */

static void write_records(int fd, uint32_t writer, uint64_t from, uint64_t count)
{
    struct record r;
    for (uint64_t s = from; s < from + count; s++) {
        record_make(&r, writer, s);
        CHECK(write_full(fd, &r, REC) == REC, "(c) write: %s", strerror(errno));
    }
}

static void shape_fork(int optin)
{
    pid_t server;
    int fd = connect_to_forked(optin, records_server, &server);
    write_records(fd, 0, 0, 100);   /* this thread owns the direction now */
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        write_records(fd, 1, 0, 5000);
        _exit(0);
    }
    write_records(fd, 0, 100, 5000);
    CHECK(child_status(child) == 0, "(c) the child's writes failed");
    close(fd);
    CHECK(child_status(server) == 0, "(c) %s: records torn or out of order",
          optin ? "loopfast" : "kernel TCP");
}

/* ---- (d) seccomp ---- */

struct pair {
    int tx, rx;
    uint64_t seq;
};

static void *pair_writer(void *arg)
{
    struct pair *p = arg;
    write_records(p->tx, 0, p->seq, 50);
    p->seq += 50;
    return NULL;
}

static void read_checked(int fd, uint64_t from, uint64_t count)
{
    struct record r;
    for (uint64_t s = from; s < from + count; s++)
        if (read_full(fd, &r, REC) != REC || !record_whole(&r) || r.seq != s)
            _exit(20);
}

static int confine_without_membarrier(void)
{
#if defined(__x86_64__)
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD + BPF_W + BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD + BPF_W + BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, __NR_membarrier, 0, 1),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof insns / sizeof insns[0], .filter = insns };
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
    return 0;
#endif
}

static void shape_seccomp(int optin)
{
#if defined(__x86_64__)
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        become_threaded();
        int c, s;
        fast_pair(AF_INET, optin, &c, &s);
        struct pair p = { .tx = c, .rx = s };
        pthread_t th;
        pthread_create(&th, NULL, pair_writer, &p);   /* owns c's sending */
        pthread_join(th, NULL);
        read_checked(s, 0, 50);                       /* we own s's receiving */
        if (!confine_without_membarrier())
            _exit(21);
        write_records(c, 0, 50, 50);                  /* taken back from the dead thread */
        pthread_create(&th, NULL, pair_writer, &(struct pair){ .tx = c, .seq = 100 });
        pthread_join(th, NULL);
        read_checked(s, 50, 100);
        close(c);
        char b;
        if (read(s, &b, 1) != 0)
            _exit(22);
        close(s);
        _exit(0);
    }
    int st = child_status(pid);
    CHECK(st == 0, "(d) %s: the confined process ended with %d (a signal: -%d)",
          optin ? "loopfast" : "kernel TCP", st, -st);
#else
    (void)optin;
#endif
}

/* ---- (e) idle ---- */

#define IDLE_BULK (8u << 16)   /* below the pace: all of it in the ring at once */

static void *bulk_writer(void *arg)
{
    static char buf[1024];   /* small: copies the owner makes without the mutex */
    int fd = *(int *)arg;
    for (unsigned i = 0; i < IDLE_BULK / sizeof buf; i++)
        CHECK(write_full(fd, buf, sizeof buf) == (ssize_t)sizeof buf, "(e) write");
    return NULL;
}

static int go[2];

/* Reads nothing until told, then all of it, says so with a byte, and
 * waits for EOF. */
static void sink_server(int listener)
{
    alarm(60);
    int c = accept(listener, NULL, NULL);
    static char buf[65536];
    char b;
    if (c < 0 || read(c, &b, 1) != 1 || write(c, &b, 1) != 1 || read(go[0], &b, 1) != 1)
        _exit(10);   /* the first exchange switches both directions */
    for (size_t got = 0; got < IDLE_BULK;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0)
            _exit(11);
        got += (size_t)n;
    }
    if (write(c, "d", 1) != 1 || read(c, buf, 1) != 0)
        _exit(12);
    _exit(0);
}

/* In a process of its own: no other connection's pages are counted. */
static void shape_idle(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid != 0) {
        CHECK(child_status(pid) == 0, "(e) failed");
        return;
    }
    become_threaded();
    CHECK(pipe(go) == 0, "pipe");
    pid_t server;
    int fd = connect_to_forked(1, sink_server, &server);
    char b;
    CHECK(write(fd, "a", 1) == 1 && read(fd, &b, 1) == 1, "(e) first exchange");
    pthread_t th;
    pthread_create(&th, NULL, bulk_writer, &fd);
    pthread_join(th, NULL);
    CHECK(loopfast_fd_is_fast(fd) == 1, "(e) not fast");
    long busy = loopfast_rss_kb(getpid());
    CHECK(busy >= (long)(IDLE_BULK >> 10), "(e) the ring held only %ld KiB of %u", busy,
          IDLE_BULK >> 10);
    CHECK(write(go[1], "g", 1) == 1 && read(fd, &b, 1) == 1, "(e) the sink did not drain");
    /* idle: this thread sleeps in loopfast (a poll that sees nothing) */
    long idle = busy;
    for (int i = 0; i < 30 && idle > 128; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        poll(&p, 1, 200);
        idle = loopfast_rss_kb(getpid());
    }
    CHECK(idle >= 0 && idle <= 128, "(e) the idle ring kept %ld KiB (%ld KiB busy)", idle, busy);
    close(fd);
    CHECK(child_status(server) == 0, "(e) sink");
    _exit(0);
}

/* ---- (f) a close while another thread's send blocks on TCP ---- */

struct sender {
    int fd, warm_c, warm_s;
};

static void *big_sender(void *arg)
{
    static char buf[8 << 20];
    (void)!write(((struct sender *)arg)->fd, buf, sizeof buf);   /* blocks: nobody reads yet */
    return NULL;
}

/* A thread that makes quick calls (its record warmed on another
 * connection), then writes behind the big sender. */
static void *small_sender(void *arg)
{
    struct sender *t = arg;
    char b[64] = { 0 };
    for (int i = 0; i < 16; i++)
        if (write(t->warm_c, b, sizeof b) != (ssize_t)sizeof b ||
            read_full(t->warm_s, b, sizeof b) != (ssize_t)sizeof b)
            return (void *)1;
    while (write(t->fd, b, sizeof b) == (ssize_t)sizeof b)
        ;
    return NULL;
}

static void shape_close_blocked(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t client = fork();
    CHECK(client >= 0, "fork");
    if (client == 0) {
        alarm(30);
        int c = connect_to(&addr, len, optin);
        sleep(3);
        static char buf[65536];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            ;
        _exit(n == 0 ? 0 : 1);
    }
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    close(l);
    struct sender t = { .fd = s };
    fast_pair(AF_INET, 1, &t.warm_c, &t.warm_s);
    pthread_t big, small;
    pthread_create(&big, NULL, big_sender, &t);
    struct timespec pause = { 0, 200000000 };
    nanosleep(&pause, NULL);   /* the big send fills the buffers and blocks */
    pthread_create(&small, NULL, small_sender, &t);
    nanosleep(&pause, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    close(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(ms < 1000, "(f) %s: close() took %.0f ms behind a send blocked on TCP (the client reads "
          "after 3 s)", optin ? "loopfast" : "kernel TCP", ms);
    pthread_join(big, NULL);
    pthread_join(small, NULL);
    int st = child_status(client);
    CHECK(st == 0, "(f) %s: the client ended with %d", optin ? "loopfast" : "kernel TCP", st);
    close(t.warm_c);
    close(t.warm_s);
}

int main(void)
{
    alarm(120);
    signal(SIGPIPE, SIG_IGN);
    become_threaded();
    for (int optin = 0; optin <= 1; optin++) {
        shape_turns(optin);
        if (!under_tsan)   /* it reports the race (b) and (f) are made of: a close under a write */
            shape_close(optin);
        shape_fork(optin);
        shape_seccomp(optin);
        if (!under_tsan)
            shape_close_blocked(optin);
    }
    shape_idle();
    return 0;
}
