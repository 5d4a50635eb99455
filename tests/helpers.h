/*
 * helpers.h - what the tests share: a server process on loopback, whole
 * reads and writes, a stream checksum, the kernel's IP octet counter.
 * Each test exits 0 (pass), 1 (fail) or 77 (skip).
 */
#ifndef LOOPFAST_TEST_HELPERS_H
#define LOOPFAST_TEST_HELPERS_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopfast.h"

#define FAIL(...) do { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)
#define CHECK(cond, ...) do { if (!(cond)) FAIL(__VA_ARGS__); } while (0)
#define SKIP(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(77); } while (0)

/* A ThreadSanitizer build: some tests cannot run under it. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* An AddressSanitizer build: its runtime must come first among the
 * libraries, so its library cannot be preloaded into other programs. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static inline void sleep_ms(int ms)
{
    struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&t, NULL);
}

/* CLOCK_MONOTONIC in seconds: how long a call took. */
static inline double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline int opt_in(int fd)
{
    int on = 1;
    return loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL);
}

static inline ssize_t read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return got ? (ssize_t)got : n;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static inline ssize_t write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return done ? (ssize_t)done : n;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* FNV-1a over a stream, fed in pieces. */
static inline uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* A listening socket on the loopback address of `family`, optionally opted
 * in; its address (with the port) in *addr. */
/* A listener on loopback, on `port` (0: any), with the options flags asks
 * for (a server restarted on its port needs SO_REUSEADDR on both). */
enum { LISTEN_REUSEADDR = 1, LISTEN_REUSEPORT = 2 };
static inline int listen_on_port(int family, int optin, int port, int flags,
                                 struct sockaddr_storage *addr, socklen_t *len)
{
    memset(addr, 0, sizeof *addr);
    int fd = socket(family, SOCK_STREAM, 0), one = 1;
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    }
    if (flags & LISTEN_REUSEADDR)
        CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    if (flags & LISTEN_REUSEPORT)
        CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0, "SO_REUSEPORT");
    if (optin)
        CHECK(opt_in(fd) == 0, "opt in listener: %s", strerror(errno));
    CHECK(bind(fd, (struct sockaddr *)addr, *len) == 0, "bind: %s", strerror(errno));
    CHECK(listen(fd, 64) == 0, "listen: %s", strerror(errno));
    CHECK(getsockname(fd, (struct sockaddr *)addr, len) == 0, "getsockname");
    return fd;
}

static inline int listen_on(int family, int optin, struct sockaddr_storage *addr, socklen_t *len)
{
    return listen_on_port(family, optin, 0, 0, addr, len);
}

/* A loopback listener and a forked child: 0 in the child, which keeps the
 * listener (*l); the child's pid in the parent, whose copy is closed. */
static inline pid_t fork_with_listener(int optin, struct sockaddr_storage *addr, socklen_t *len,
                                       int *l)
{
    *l = listen_on(AF_INET, optin, addr, len);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid > 0)
        close(*l);
    return pid;
}

/* A forked server process running serve(listener) for at most a minute:
 * its pid; the listener's address in *addr. */
static inline pid_t fork_serving(int optin, struct sockaddr_storage *addr, socklen_t *len,
                                 void (*serve)(int listener))
{
    int l;
    pid_t pid = fork_with_listener(optin, addr, len, &l);
    if (pid == 0) {
        alarm(60);
        serve(l);
        _exit(99);
    }
    return pid;
}

static inline int connect_to(const struct sockaddr_storage *addr, socklen_t len, int optin)
{
    int fd = socket(addr->ss_family, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    if (optin)
        CHECK(opt_in(fd) == 0, "opt in client: %s", strerror(errno));
    CHECK(connect(fd, (const struct sockaddr *)addr, len) == 0, "connect: %s", strerror(errno));
    return fd;
}

/* A forked server process running server(listener), which must exit, and
 * a client connected to it from here: the client's descriptor, and in
 * *pid the server's. */
static inline int connect_to_forked(int optin, void (*server)(int listener), pid_t *pid)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    *pid = fork_with_listener(optin, &addr, &len, &l);
    if (*pid == 0) {
        server(l);
        _exit(99);
    }
    return connect_to(&addr, len, optin);
}

/* Echoes everything until EOF; exits with 10 + is_fast (so the parent
 * learns whether the server's end was fast). */
/* Echoes on c until end of stream: 10 + is_fast, or 3 (a write failed), 4
 * (a read failed). */
static inline int echo_until_eof(int c)
{
    static char buf[1 << 18];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        if (write_full(c, buf, (size_t)n) != n)
            return 3;
    return n == 0 ? 10 + loopfast_fd_is_fast(c) : 4;
}

static inline void echo_server(int listener)
{
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        _exit(2);
    int r = echo_until_eof(c);
    close(c);
    _exit(r);
}

/* echo_server's, waiting in epoll_wait as an event loop does */
static inline void epoll_echo_server(int listener)
{
    int c = accept(listener, NULL, NULL), ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    if (c < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
        _exit(2);
    char b[4096];
    for (;;) {
        if (epoll_wait(ep, &ev, 1, -1) != 1)
            _exit(3);
        ssize_t n = read(c, b, sizeof b);
        if (n == 0)
            exit(10 + loopfast_fd_is_fast(c));
        if (n < 0 || write_full(c, b, (size_t)n) != n)
            _exit(4);
    }
}

/* Nanoseconds the process has run (its threads', from the scheduler). */
static inline long long cpu_ns_of(pid_t pid)
{
    char path[64];
    long long ns = -1;
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f && fscanf(f, "%lld", &ns) == 1, "reading %s", path);
    fclose(f);
    return ns;
}

/* A server's first three 1-byte echoes (a fast connection has switched
 * both ways after them); the process exits 2 if they fail. */
static inline void server_switch(int c)
{
    char b;
    for (int i = 0; i < 3; i++)
        if (read_full(c, &b, 1) != 1 || write_full(c, &b, 1) != 1)
            _exit(2);
}

/* A server that reads its one connection to the end and answers with the
 * count of bytes it read (a 64-bit number). */
static inline void counting_reader(int l)
{
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    server_switch(c);
    static char b[128 << 10];
    unsigned long long total = 0;
    ssize_t n;
    while ((n = read(c, b, sizeof b)) > 0)
        total += (unsigned long long)n;
    _exit(n == 0 && write_full(c, &total, sizeof total) == sizeof total ? 0 : 3);
}

/* `rounds` echoes of a 300-byte message, each different; `what` names the
 * run in a failure. */
static inline void client_echo_rounds(int fd, int rounds, const char *what)
{
    char out[300], in[300];
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < sizeof out; i++)
            out[i] = (char)(r * 31 + (int)i);
        CHECK(write_full(fd, out, sizeof out) == sizeof out, "%s: write %d: %s", what, r,
              strerror(errno));
        CHECK(read_full(fd, in, sizeof in) == sizeof in && !memcmp(in, out, sizeof in),
              "%s: echo %d differs or ended", what, r);
    }
}

/* The client's side of server_switch. */
static inline void client_switch(int fd)
{
    char b = 'x';
    for (int i = 0; i < 3; i++)
        CHECK(write_full(fd, &b, 1) == 1 && read_full(fd, &b, 1) == 1, "switching echo %d", i);
}

/* A client connected to a forked server (fork_serving) whose serve()
 * begins with server_switch: the client's descriptor after those echoes,
 * fast when `optin`; the server's pid in *pid. */
static inline int switched_to_forked(int optin, void (*serve)(int listener), pid_t *pid)
{
    struct sockaddr_storage addr;
    socklen_t len;
    *pid = fork_serving(optin, &addr, &len, serve);
    int fd = connect_to(&addr, len, optin);
    client_switch(fd);
    if (optin)
        CHECK(loopfast_fd_is_fast(fd) == 1, "the connection did not go fast");
    return fd;
}

static inline pid_t fork_echo_server(int listener)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(60);
        echo_server(listener);
    }
    return pid;
}

/* A server process running serve(listener, report, arg), with 60 s to live,
 * that tells the parent what it saw on a pipe: the parent gets the pipe's
 * read end in *report, and no longer holds the listener. */
static inline pid_t fork_reporting_server(int listener, int *report,
                                          void (*serve)(int listener, int report, void *arg),
                                          void *arg)
{
    int rep[2];
    CHECK(pipe(rep) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(rep[0]);
        alarm(60);
        serve(listener, rep[1], arg);
        _exit(0);
    }
    close(listener);
    close(rep[1]);
    *report = rep[0];
    return pid;
}

/* The number `format` reads (e.g. "VmSize: %ld kB") from the first line of
 * `path` it matches; -1 when the file or the line is missing. */
static inline long proc_field(const char *path, const char *format)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, format, &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* dir/name written whole with value (a cgroup or sysctl file): 0, or -1.
 * Through stdio: <fcntl.h>'s O_ names would clash with the tests' own. */
static inline int write_text(const char *dir, const char *name, const char *value)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int put = fputs(value, f) >= 0;
    return fclose(f) == 0 && put ? 0 : -1;   /* the kernel's answer comes with the flush */
}

/* dir/name read into buf (size - 1 bytes at most, then a 0): its length,
 * or -1. */
static inline ssize_t read_text(const char *dir, const char *name, char *buf, size_t size)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size - 1, f);
    int failed = ferror(f);
    fclose(f);
    buf[n] = 0;
    return failed && !n ? -1 : (ssize_t)n;
}

/* The voluntary context switches (sleeps) of thread `tid` of process `pid`
 * so far, or of the whole process when tid is 0; -1 when it is gone. */
static inline long voluntary_switches(pid_t pid, pid_t tid)
{
    char path[96];
    if (tid)
        snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)pid, (int)tid);
    else
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    return proc_field(path, "voluntary_ctxt_switches: %ld");
}

/* A connection to a new echo server in a child (its pid in *server), both
 * ends opted in or neither. */
static inline int echo_connection(int optin, pid_t *server)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    *server = fork_echo_server(l);
    close(l);
    return connect_to(&addr, len, optin);
}

static inline int child_status(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The writer's end of a counting_reader: its writing shut down, the count
 * the reader read, the reader reaped. */
static inline unsigned long long counting_reader_total(int fd, pid_t reader, const char *mode)
{
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    unsigned long long got = 0;
    CHECK(read_full(fd, &got, sizeof got) == sizeof got, "%s: the reader's count", mode);
    CHECK(child_status(reader) == 0, "%s: reader", mode);
    return got;
}

/* A reader process running serve(listener) and a writer child running
 * writer(addr, len, optin, ready), which writes "r" on `ready` once it has
 * written enough, then goes on until its peer's death tells it: the
 * reader is killed 200 ms after that word, and the writer's exit status
 * returned (SIGALRM's after 10 s: it never heard). */
static inline int writer_status_after_kill(int optin, void (*serve)(int listener),
                                           void (*writer)(const struct sockaddr_storage *addr,
                                                         socklen_t len, int optin, int ready))
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t reader = fork_serving(optin, &addr, &len, serve);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t w = fork();
    CHECK(w >= 0, "fork");
    if (w == 0) {
        alarm(10);
        close(p[0]);
        writer(&addr, len, optin, p[1]);
        _exit(99);
    }
    close(p[1]);
    char r;
    CHECK(read_full(p[0], &r, 1) == 1, "the writer did not write enough");
    close(p[0]);
    sleep_ms(200);
    kill(reader, SIGKILL);
    child_status(reader);
    return child_status(w);
}

/* IpExt InOctets from /proc/net/netstat, or -1. */
static inline long long ip_in_octets(void)
{
    FILE *f = fopen("/proc/net/netstat", "r");
    if (!f)
        return -1;
    char names[4096], values[4096];
    long long result = -1;
    while (fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "IpExt:", 6))
            continue;
        char *sn, *sv, *n = strtok_r(names, " \n", &sn), *v = strtok_r(values, " \n", &sv);
        while (n && v) {
            if (!strcmp(n, "InOctets"))
                result = atoll(v);
            n = strtok_r(NULL, " \n", &sn);
            v = strtok_r(NULL, " \n", &sv);
        }
    }
    fclose(f);
    return result;
}

/* Entries of /proc/self/fd (with ".", ".." and the listing's own
 * descriptor: compare counts, not absolute numbers). */
static inline int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d, "opendir /proc/self/fd");
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* The loopfast regions (memfds named "loopfast", one per pair of processes)
 * process pid holds, from /proc/PID/fd: how many, -1 when it cannot be
 * read; in *seen (if given) their largest file size, the memory they hold
 * (allocated blocks) and the inode of the last one found.  Each region
 * counts once: a process holding both ends of a connection holds its
 * region's descriptor twice. */
struct regions_seen { off_t largest, bytes; ino_t last_ino; };

static inline int loopfast_regions(pid_t pid, struct regions_seen *seen)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    ino_t counted[256];
    struct regions_seen v = { 0, 0, 0 };
    for (struct dirent *e; (e = readdir(d));) {
        char path[400], target[128];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k <= 0 || (target[k] = 0, !strstr(target, "memfd:loopfast")) || stat(path, &st) < 0)
            continue;
        int again = 0;
        for (int i = 0; i < n && i < 256; i++)
            again |= counted[i] == st.st_ino;
        if (again)
            continue;
        if (n < 256)
            counted[n] = st.st_ino;
        n++;
        v.bytes += (off_t)st.st_blocks * 512;
        v.last_ino = st.st_ino;
        if (st.st_size > v.largest)
            v.largest = st.st_size;
    }
    closedir(d);
    if (seen)
        *seen = v;
    return n;
}

/* loopfast keeps at most a quarter of RLIMIT_NOFILE for itself unless
 * LOOPFAST_MAX_FDS says otherwise (design 3.1), and a fast connection costs
 * about six descriptors an end: a test that needs hundreds of fast
 * connections in one process lifts that cap for itself, running again with
 * the variable set (the library reads it once, at start). */
static inline void lift_fd_cap(char **argv)
{
    if (getenv("LOOPFAST_MAX_FDS"))
        return;
    setenv("LOOPFAST_MAX_FDS", "1048576", 1);
    execv("/proc/self/exe", argv);
    FAIL("re-executing with LOOPFAST_MAX_FDS set: %s", strerror(errno));
}

/* Under valgrind (its preload in LD_PRELOAD): timing bounds do not hold. */
static inline int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload") != NULL;
}

/* Runs this test again with the variable `name` set to `value` unless it
 * already has it: the library reads its variables once, at start. */
static inline void run_with_env(char **argv, const char *name, const char *value)
{
    const char *now = getenv(name);
    if (now && strcmp(now, value) == 0)
        return;
    setenv(name, value, 1);
    execv("/proc/self/exe", argv);
    FAIL("re-executing with %s=%s: %s", name, value, strerror(errno));
}

static inline void run_with_spin_us(char **argv, const char *us)
{
    run_with_env(argv, "LOOPFAST_SPIN_US", us);
}

/* A file of our own in /tmp, already unlinked: its descriptor. */
static inline int temp_file(void)
{
    char path[] = "/tmp/loopfast-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    return fd;
}

/* A client connected to a loopback listener and its accepted end, no byte
 * exchanged yet: the listener, still open. */
static inline int accepted_pair(int family, int optin, int *client, int *server)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(family, optin, &addr, &len);
    *client = connect_to(&addr, len, optin);
    *server = accept(l, NULL, NULL);
    CHECK(*server >= 0, "accept: %s", strerror(errno));
    return l;
}

/* This program's path, for a child to exec it again in another role. */
static inline void self_exe(char *path, size_t room)
{
    ssize_t n = readlink("/proc/self/exe", path, room - 1);
    CHECK(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    path[n] = 0;
}

/* An inetd's child: the accepted connection c on stdin and stdout, then
 * this test's own program `self` exec'd there in `mode`. */
static inline void exec_on_stdio(int c, int listener, const char *self, const char *mode)
{
    if (dup2(c, 0) != 0 || dup2(c, 1) != 1)
        _exit(2);
    close(c);
    close(listener);
    execl(self, self, mode, (char *)NULL);
    _exit(3);
}

/* A request whose server reads it through us, so that its client switches
 * (`optin`) before the server hands the socket on: "POST", the server's
 * "go\n", the answer taken, then "head", which the server reads last.
 * request_served is the server's side: 0 when all went as expected. */
static inline void request_switched(int fd, int optin)
{
    struct timeval tv = { 5, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    char go[3];
    CHECK(write_full(fd, "POST", 4) == 4 && read_full(fd, go, 3) == 3, "request");
    if (optin)   /* the answer taken before the server can hand the socket on */
        CHECK(loopfast_fd_is_fast(fd) == 1, "the client did not switch");
    CHECK(write_full(fd, "head", 4) == 4, "headers");
}

static inline int request_served(int c)
{
    char req[4];
    return c >= 0 && read_full(c, req, 4) == 4 && write_full(c, "go\n", 3) == 3 &&
                   read_full(c, req, 4) == 4 ? 0 : -1;
}

/* `lines` lines "line I of the WHOSE\n" written to fd, each answered
 * "echo " and the line (a service on stdin and stdout) before the next. */
static inline void lines_echoed(int fd, int lines, const char *whose, int optin)
{
    for (int i = 0; i < lines; i++) {
        char req[64], want[80], got[80];
        int n = snprintf(req, sizeof req, "line %d of the %s\n", i, whose);
        snprintf(want, sizeof want, "echo %s", req);
        CHECK(write_full(fd, req, (size_t)n) == n, "write %d: %s", i, strerror(errno));
        size_t w = strlen(want);
        ssize_t r = read_full(fd, got, w);
        CHECK(r == (ssize_t)w && !memcmp(got, want, w), "%s: line %d: got %zd bytes (%s)",
              optin ? "loopfast" : "kernel", i, r, r < 0 ? strerror(errno) : "short or wrong");
    }
}

/* A connected pair in this process, both ends opted in, after one exchange
 * (so both are on the fast path when `optin`). */
static inline void fast_pair(int family, int optin, int *client, int *server)
{
    close(accepted_pair(family, optin, client, server));
    char b;
    CHECK(write_full(*client, "a", 1) == 1 && read_full(*server, &b, 1) == 1, "first exchange c->s");
    CHECK(write_full(*server, "b", 1) == 1 && read_full(*client, &b, 1) == 1, "first exchange s->c");
    if (optin)
        CHECK(loopfast_fd_is_fast(*client) == 1 && loopfast_fd_is_fast(*server) == 1, "pair not fast");
}

/* Writes pieces of `piece` bytes (at most 64 KiB) to a non-blocking fd
 * until it is refused for 10 rounds of 20 ms in a row (kernel TCP moves
 * segments to the reader in the background): the bytes it took. */
static inline long fill_until_refused(int fd, size_t piece)
{
    static char buf[65536];
    long total = 0;
    for (int quiet = 0; quiet < 10;) {
        ssize_t n = write(fd, buf, piece < sizeof buf ? piece : sizeof buf);
        if (n > 0) {
            total += n;
            quiet = 0;
            continue;
        }
        CHECK(n < 0 && errno == EAGAIN, "write: %s", strerror(errno));
        usleep(20000);
        quiet++;
    }
    return total;
}

/* One byte with one descriptor over a unix socket (SCM_RIGHTS). */
struct fd_message {
    char b;
    struct iovec iov;
    struct msghdr m;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
};

static inline void fd_message_init(struct fd_message *r)
{
    memset(r, 0, sizeof *r);
    r->b = 'f';
    r->iov = (struct iovec){ &r->b, 1 };
    r->m = (struct msghdr){ .msg_iov = &r->iov, .msg_iovlen = 1, .msg_control = r->ctl.buf,
                            .msg_controllen = sizeof r->ctl.buf };
}

/* 0 sent, -1 not */
static inline int send_fd(int u, int fd)
{
    struct fd_message r;
    fd_message_init(&r);
    struct cmsghdr *c = CMSG_FIRSTHDR(&r.m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(u, &r.m, 0) == 1 ? 0 : -1;
}

/* The descriptor received, or -1 (end of stream, no descriptor). */
static inline int recv_fd(int u)
{
    struct fd_message r;
    fd_message_init(&r);
    struct cmsghdr *c;
    int fd;
    if (recvmsg(u, &r.m, 0) != 1 || !(c = CMSG_FIRSTHDR(&r.m)) || c->cmsg_type != SCM_RIGHTS)
        return -1;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* The `loopfast` CLI next to this test's build directory, in `cli`; the
 * test is skipped when there is none (sanitizer builds). */
static inline void cli_next_to(const char *argv0, char *cli, size_t size)
{
    char self[4096];
    snprintf(self, sizeof self, "%s", argv0);
    char *slash = strrchr(self, '/');
    snprintf(cli, size, "%.*s/../loopfast", slash ? (int)(slash - self) : 1, slash ? self : ".");
    if (access(cli, X_OK) != 0)
        SKIP("no CLI next to this build (%s)", cli);
}

/* What `CLI stat --json` prints (a buffer of its own, overwritten by the
 * next call). */
static inline char *stat_json(const char *cli)
{
    static char out[1 << 20];
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "%.4300s stat --json", cli);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    CHECK(pclose(p) == 0, "loopfast stat failed: %s", out);
    return out;
}

/* How many connection ends `loopfast stat` lists for `pid`. */
static inline int stat_ends_of(const char *cli, pid_t pid)
{
    char key[32];
    snprintf(key, sizeof key, "\"pid\": %d,", (int)pid);
    int k = 0;
    for (char *at = stat_json(cli); (at = strstr(at, key)); at++)
        k++;
    return k;
}

/* A call another thread makes: it says when it returned, and the test
 * waits for that a bounded time (0: it has not, the call is "hung"). */
struct call_done {
    int done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static inline void call_done_init(struct call_done *d)
{
    d->done = 0;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
}

static inline void call_done_set(struct call_done *d)
{
    pthread_mutex_lock(&d->lock);
    d->done = 1;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static inline int call_done_wait(struct call_done *d, int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000)
        t.tv_sec++, t.tv_nsec -= 1000000000;
    pthread_mutex_lock(&d->lock);
    while (!d->done && pthread_cond_timedwait(&d->cond, &d->lock, &t) == 0)
        ;
    int done = d->done;
    pthread_mutex_unlock(&d->lock);
    return done;
}

/* Rss of a process's loopfast memfd mappings, KiB; -1 without smaps. */
static inline long loopfast_rss_kb(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long total = 0, kb;
    int ours = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
            ours = strstr(line, "/memfd:loopfast") != NULL;
        else if (ours && sscanf(line, "Rss: %ld kB", &kb) == 1)
            total += kb;
    }
    fclose(f);
    return total;
}

#endif
