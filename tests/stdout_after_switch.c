/* A socket whose writes are on the ring comes onto stdout, and stdio writes
 * it past us (libc's internal write(), which no interposition sees): bash's
 * `printf ... >&3` on a /dev/tcp connection a child had switched, an exec
 * of bash onto a switched socket.  Those bytes went to TCP while the peer
 * read the ring, and it waited for them for ever.  Now the writes go back
 * to TCP for good, after the ring's bytes, and every byte arrives in order,
 * as over kernel TCP.  Each shape runs both ways:
 *   same     - dup2() onto stdout, printf, dup2() back, then write()
 *   forked   - a child forked after the switch writes after the parent's
 *              stdio bytes (the state is the end's, shared)
 *   spawned  - posix_spawn() of bash with the socket on stdout (dup2 done
 *              past us: the new image finds it there at start)
 *   server   - the server goes back; the client reads with an edge-
 *              triggered epoll and non-blocking reads, then EOF
 *   threaded - another thread's write waits for room on the ring when the
 *              stdio bytes come: its rest goes to TCP, after the ring's
 *              bytes, its stream whole around them. */
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>

#include "helpers.h"

extern char **environ;

enum shape { SAME, FORKED, SPAWNED, SERVER, THREADED };
static const char *const names[] = { "same", "forked", "spawned", "server", "threaded" };

#define RING_PART "ring bytes:"
#define STDIO_PART "stdio bytes:"
#define AFTER_PART "after"
#define EXPECTED RING_PART STDIO_PART AFTER_PART
#define BIG (16 << 20)   /* the threaded writer's: more than a ring holds */
#define MARK "<STDIO>"

static char pattern_at(size_t i)
{
    return (char)('a' + i % 26);
}

/* What the server got in the threaded shape: the other thread's stream
 * whole, with the stdio bytes once, somewhere in it. */
static int threaded_whole(const char *got, ssize_t n)
{
    if (n != BIG + (ssize_t)strlen(MARK))
        return 0;
    const char *m = memmem(got, (size_t)n, MARK, strlen(MARK));
    if (!m)
        return 0;
    size_t at = (size_t)(m - got);
    for (size_t i = 0, j = 0; i < (size_t)n; i++) {
        if (i == at) {
            i += strlen(MARK) - 1;
            continue;
        }
        if (got[i] != pattern_at(j++))
            return 0;
    }
    return 1;
}

/* stdio's bytes onto fd by way of stdout, as bash's printf >&fd does. */
static void stdio_write(int fd, const char *text)
{
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(fd, STDOUT_FILENO) != STDOUT_FILENO)
        _exit(20);
    fputs(text, stdout);
    fflush(stdout);
    if (dup2(saved, STDOUT_FILENO) != STDOUT_FILENO)
        _exit(21);
    close(saved);
}

/* Everything until EOF, at most size - 1 bytes, NUL-terminated. */
static ssize_t read_all(int fd, char *buf, size_t size)
{
    ssize_t n = read_full(fd, buf, size - 1);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

static enum shape shape_now;

static void server(int l)
{
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    server_switch(c);
    if (shape_now == SERVER) {
        sleep_ms(20);   /* the client waits in epoll_wait first */
        if (write_full(c, RING_PART, strlen(RING_PART)) < 0)
            _exit(3);
        stdio_write(c, STDIO_PART);
        _exit(write_full(c, AFTER_PART, strlen(AFTER_PART)) < 0 ? 4 : 0);
    }
    static char got[BIG + 1024];
    sleep_ms(20);   /* the ring's bytes still unread when the client goes back */
    ssize_t n = read_all(c, got, sizeof got);
    if (n < 0)
        _exit(5);
    if (shape_now == THREADED ? !threaded_whole(got, n) : strcmp(got, EXPECTED) != 0) {
        fprintf(stderr, "server got %zd bytes: \"%.64s\"\n", n, got);
        _exit(6);
    }
    _exit(write_full(c, "ok", 2) == 2 ? 0 : 7);
}

/* bash with loopfast preloaded (as under `loopfast run`) running `script`,
 * fd on its stdout (-1: none); its exit status. */
static int spawn_bash(int fd, const char *script)
{
    Dl_info lib;
    CHECK(dladdr((void *)loopfast_ioctl, &lib) && lib.dli_fname, "dladdr");
    setenv("LD_PRELOAD", lib.dli_fname, 1);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, fd, STDOUT_FILENO);
    char *argv[] = { "bash", "-c", (char *)script, NULL };
    pid_t pid;
    fflush(stdout);
    CHECK(posix_spawnp(&pid, "bash", &fa, NULL, argv, environ) == 0, "posix_spawn bash");
    posix_spawn_file_actions_destroy(&fa);
    unsetenv("LD_PRELOAD");
    return child_status(pid);
}

static void *big_writer(void *arg)
{
    int fd = *(int *)arg;
    static char big[BIG];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = pattern_at(i);
    return (void *)(intptr_t)(write_full(fd, big, sizeof big) == sizeof big);
}

/* Another thread's write of BIG waits for room when stdio's bytes come. */
static void client_threaded(int fd)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, big_writer, &fd) == 0, "pthread_create");
    sleep_ms(10);   /* the ring full, the writer waiting for room */
    stdio_write(fd, MARK);
    void *ok;
    CHECK(pthread_join(t, &ok) == 0 && ok, "the big write failed: %s", strerror(errno));
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    char reply[16];
    CHECK(read_all(fd, reply, sizeof reply) == 2 && !strcmp(reply, "ok"), "reply \"%s\"", reply);
}

/* The client's writes for the shapes where it goes back. */
static void client_writes(int fd, enum shape shape)
{
    CHECK(write_full(fd, RING_PART, strlen(RING_PART)) > 0, "ring write: %s", strerror(errno));
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t child = -1;
    if (shape == FORKED) {
        child = fork();
        CHECK(child >= 0, "fork");
        if (child == 0) {
            char b;
            _exit(read(go[0], &b, 1) == 1 &&
                  write_full(fd, AFTER_PART, strlen(AFTER_PART)) == (ssize_t)strlen(AFTER_PART) ? 0 : 9);
        }
    }
    if (shape == SPAWNED)
        CHECK(spawn_bash(fd, "printf '" STDIO_PART "'") == 0, "bash failed");
    else
        stdio_write(fd, STDIO_PART);
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLOUT), "not writable after stdio");
    if (shape == FORKED) {
        CHECK(write(go[1], "g", 1) == 1, "pipe write");
        CHECK(child_status(child) == 0, "the forked writer failed");
    } else {
        CHECK(write_full(fd, AFTER_PART, strlen(AFTER_PART)) > 0, "write after: %s", strerror(errno));
    }
    close(go[0]);
    close(go[1]);
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    char reply[16];
    CHECK(read_all(fd, reply, sizeof reply) == 2 && !strcmp(reply, "ok"), "reply \"%s\"", reply);
}

/* The server went back: an edge-triggered epoll and non-blocking reads
 * take every byte, in order, then EOF. */
static void client_reads(int fd)
{
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll");
    CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    char got[256];
    size_t have = 0;
    for (int rounds = 0; rounds < 100; rounds++) {
        int n = epoll_wait(ep, &ev, 1, 2000);
        CHECK(n == 1, "epoll_wait: %d after \"%.*s\"", n, (int)have, got);
        for (;;) {
            ssize_t r = read(fd, got + have, sizeof got - 1 - have);
            if (r > 0) {
                have += (size_t)r;
                continue;
            }
            if (r == 0) {
                got[have] = 0;
                CHECK(!strcmp(got, EXPECTED), "client got \"%s\"", got);
                close(ep);
                return;
            }
            CHECK(errno == EAGAIN, "read: %s", strerror(errno));
            break;
        }
    }
    FAIL("no EOF after \"%.*s\"", (int)have, got);
}

static void run(enum shape shape, int optin)
{
    pid_t srv;
    shape_now = shape;
    int fd = switched_to_forked(optin, server, &srv);
    if (shape == SERVER)
        client_reads(fd);
    else if (shape == THREADED)
        client_threaded(fd);
    else
        client_writes(fd, shape);
    close(fd);
    int st = child_status(srv);
    CHECK(st == 0, "%s, %s: server exit %d", names[shape], optin ? "loopfast" : "kernel", st);
}

int main(void)
{
    alarm(60);
    /* a sanitizer's build of loopfast needs its runtime, which bash lacks */
    int bash_loads = spawn_bash(-1, "exit 0") == 0;
    if (!bash_loads)
        fprintf(stderr, "bash cannot load this build of loopfast: the spawned shape is left out\n");
    for (int rep = 0; rep < 3; rep++)
        for (enum shape s = SAME; s <= THREADED; s++) {
            if (s == SPAWNED && !bash_loads)
                continue;
            run(s, 0);
            run(s, 1);
        }
    return 0;
}
