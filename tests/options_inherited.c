/* SO_RCVTIMEO and SO_LINGER a connection was born with.  loopfast answers
 * them from memory on a socket no other process holds (no system call per
 * connection): an accepted connection has its listener's, as the kernel
 * copies them, and a socket made with socket() has the ones set on it before
 * it opted in.  Each case runs over kernel TCP and over loopfast, and again
 * with LOOPFAST_MODE=all (the program runs itself again), and must give the
 * same result: a read that times out with EAGAIN, a close that resets.
 *   - the listener's timeout and SO_LINGER 0, set before listen();
 *   - the listener's timeout set between two accepts, then taken off;
 *   - the listener's timeout set by another process holding it (fork);
 *   - a client's timeout and SO_LINGER 0 set before it opted in. */
#include <pthread.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

static int optin;

static const char *how(void)
{
    return optin ? "loopfast" : "kernel";
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void set_timeout(int fd, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
}

static void set_reset_on_close(int fd)
{
    struct linger l = { 1, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0, "SO_LINGER");
}

/* Two exchanges, so that both ends of a loopfast pair are on their rings. */
static void exchange(int client, int server)
{
    char b;
    for (int i = 0; i < 2; i++) {
        CHECK(write_full(client, "q", 1) == 1 && read_full(server, &b, 1) == 1, "%s: c->s", how());
        CHECK(write_full(server, "a", 1) == 1 && read_full(client, &b, 1) == 1, "%s: s->c", how());
    }
    CHECK(loopfast_fd_is_fast(client) == optin && loopfast_fd_is_fast(server) == optin,
          "%s: fast %d/%d", how(), loopfast_fd_is_fast(client), loopfast_fd_is_fast(server));
}

/* A read of fd, on which nothing comes, times out (the timeout ~150 ms). */
static void times_out(int fd, const char *what)
{
    char b;
    uint64_t t0 = now_ms();
    alarm(10);   /* a read that waits for good fails the test */
    ssize_t n = read(fd, &b, 1);
    alarm(0);
    uint64_t spent = now_ms() - t0;
    CHECK(n < 0 && errno == EAGAIN, "%s: %s: read %zd (%s), EAGAIN expected", how(), what, n,
          n < 0 ? strerror(errno) : "data");
    CHECK(spent >= 100, "%s: %s: timed out after %llu ms, set 150", how(), what,
          (unsigned long long)spent);
}

/* fd's peer closed with SO_LINGER 0: a read gets ECONNRESET. */
static void was_reset(int fd, const char *what)
{
    char b;
    alarm(10);
    ssize_t n = read(fd, &b, 1);
    alarm(0);
    CHECK(n < 0 && errno == ECONNRESET, "%s: %s: read %zd (%s), ECONNRESET expected", how(),
          what, n, n < 0 ? strerror(errno) : "EOF or data");
}

static int accept_one(int l, int *client, const struct sockaddr_storage *addr, socklen_t len)
{
    *client = connect_to(addr, len, optin);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept: %s", strerror(errno));
    exchange(*client, s);
    return s;
}

static void listener_options(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l >= 0, "socket");
    set_timeout(l, 150);
    set_reset_on_close(l);
    struct sockaddr_in *in = (struct sockaddr_in *)&addr;
    memset(&addr, 0, sizeof addr);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *in;
    if (optin)
        CHECK(opt_in(l) == 0, "opt in");
    CHECK(bind(l, (struct sockaddr *)&addr, len) == 0 && listen(l, 8) == 0, "listen");
    CHECK(getsockname(l, (struct sockaddr *)&addr, &len) == 0, "getsockname");
    for (int i = 0; i < 2; i++) {   /* the second from what the first learnt */
        int c, s = accept_one(l, &c, &addr, len);
        times_out(s, "listener's SO_RCVTIMEO");
        close(s);
        was_reset(c, "listener's SO_LINGER 0");
        close(c);
    }
    close(l);
}

struct late_byte {
    int fd;
    int ms;
};

static void *write_late(void *arg)
{
    struct late_byte *w = arg;
    sleep_ms(w->ms);
    CHECK(write_full(w->fd, "z", 1) == 1, "late write");
    return NULL;
}

static void listener_changed(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int c, s = accept_one(l, &c, &addr, len);   /* learnt: no timeout */
    close(s);
    close(c);
    set_timeout(l, 150);
    s = accept_one(l, &c, &addr, len);
    times_out(s, "SO_RCVTIMEO set on the listener after an accept");
    close(s);
    close(c);
    set_timeout(l, 0);   /* off again: a read waits for a byte 400 ms late */
    s = accept_one(l, &c, &addr, len);
    struct late_byte w = { c, 400 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, write_late, &w) == 0, "thread");
    char b = 0;
    alarm(10);
    ssize_t n = read(s, &b, 1);
    alarm(0);
    CHECK(n == 1 && b == 'z', "%s: timeout taken off the listener: read %zd (%s)", how(), n,
          n < 0 ? strerror(errno) : "EOF");
    pthread_join(t, NULL);
    close(s);
    close(c);
    close(l);
}

static void listener_shared(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int c, s = accept_one(l, &c, &addr, len);
    close(s);
    close(c);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {   /* another holder of the listener sets its timeout */
        set_timeout(l, 150);
        _exit(0);
    }
    CHECK(child_status(pid) == 0, "child");
    s = accept_one(l, &c, &addr, len);
    times_out(s, "SO_RCVTIMEO set by another process on the listener");
    close(s);
    close(c);
    close(l);
}

static void client_options(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "socket");
    set_timeout(c, 150);
    set_reset_on_close(c);
    if (optin)
        CHECK(opt_in(c) == 0, "opt in");
    CHECK(connect(c, (struct sockaddr *)&addr, len) == 0, "connect: %s", strerror(errno));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    exchange(c, s);
    times_out(c, "client's SO_RCVTIMEO set before opting in");
    close(c);
    was_reset(s, "client's SO_LINGER 0 set before opting in");
    close(s);
    close(l);
}

int main(int argc, char **argv)
{
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    const char *mode = getenv("LOOPFAST_MODE");
    int all = mode && !strcmp(mode, "all");
    for (optin = all; optin < 2; optin++) {
        listener_options();
        listener_changed();
        listener_shared();
        client_options();
    }
    if (all)
        return 0;
    setenv("LOOPFAST_MODE", "all", 1);   /* every TCP socket ours from socket() on */
    execv("/proc/self/exe", argv);
    FAIL("execv: %s", strerror(errno));
}
