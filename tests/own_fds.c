/* The program's calls on numbers that are loopfast's own act as on numbers
 * the program does not hold, and never break loopfast: an old-style daemon
 * closes 3..63 one by one and dup2()s onto each, close_range(3, ~0U) runs
 * with live fast connections, and afterwards no file of the program is ever
 * closed or replaced while fast connections keep exchanging data; close() of
 * a loopfast number gives EBADF and leaves it open; epoll_ctl(ADD) of a fast
 * socket succeeds when the program has used up RLIMIT_NOFILE; sshd's re-exec
 * (dup2 onto 4 and 5, exec, closefrom) keeps its fast connection. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "helpers.h"

#define LOW 64
#define PAIRS 2

static int prog[1024];   /* numbers the program holds itself */

static void set_limit(rlim_t n)
{
    struct rlimit r;
    CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0, "getrlimit");
    if (r.rlim_max < n)
        SKIP("hard RLIMIT_NOFILE %llu < %llu", (unsigned long long)r.rlim_max, (unsigned long long)n);
    r.rlim_cur = n;
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0, "setrlimit: %s", strerror(errno));
}

static void exchange(int a, int b, char tag)
{
    char x = 0;
    CHECK(write_full(a, &tag, 1) == 1 && read_full(b, &x, 1) == 1 && x == tag, "a -> b (%d)", tag);
    CHECK(write_full(b, &tag, 1) == 1 && read_full(a, &x, 1) == 1 && x == tag, "b -> a (%d)", tag);
}

/* Open descriptors the program did not open itself: loopfast's. */
static int theirs(int *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d, "opendir");
    int n = 0, self = dirfd(d);
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != self && fd < 1024 && !prog[fd] && n < max)
            out[n++] = fd;
    }
    closedir(d);
    return n;
}

static dev_t null_rdev(void)
{
    struct stat st;
    CHECK(stat("/dev/null", &st) == 0, "stat");
    return st.st_rdev;
}

static int is_null(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == null_rdev();
}

/* Closing loopfast's numbers gives EBADF and closes nothing. */
static void close_theirs_fails(void)
{
    int f[256], n = theirs(f, 256);
    CHECK(n > 0, "loopfast holds no descriptor: nothing tested");
    for (int i = 0; i < n; i++) {
        errno = 0;
        CHECK(close(f[i]) < 0 && errno == EBADF, "close(%d) of loopfast's: %s", f[i], strerror(errno));
        CHECK(fcntl(f[i], F_GETFD) >= 0, "close(%d) closed loopfast's descriptor", f[i]);
    }
}

/* The daemon's loop: close what it did not open, then dup2 onto each. */
static void daemon_loop(int *c, int *s)
{
    for (int fd = 3; fd < LOW; fd++)
        if (!prog[fd])
            close(fd);
    for (int i = 0; i < PAIRS; i++)
        exchange(c[i], s[i], (char)(10 + i));
    set_limit(256);   /* room elsewhere for what the dup2s displace */
    int null = open("/dev/null", O_RDONLY);
    CHECK(null >= 0, "open");
    prog[null] = 1;
    for (int fd = 3; fd < LOW; fd++)
        if (!prog[fd]) {
            CHECK(dup2(null, fd) == fd, "dup2(%d): %s", fd, strerror(errno));
            prog[fd] = 1;
        }
    for (int i = 0; i < PAIRS; i++)
        exchange(c[i], s[i], (char)(20 + i));
    for (int fd = 3; fd < LOW; fd++)
        CHECK(prog[fd] && (is_null(fd) || fd == null || fd == c[0] || fd == c[1] || fd == s[0] ||
                           fd == s[1]), "descriptor %d is not the program's", fd);
    close_theirs_fails();
    for (int fd = 3; fd < LOW; fd++)   /* the daemon's files go again */
        if (is_null(fd)) {
            CHECK(close(fd) == 0, "close(%d): %s", fd, strerror(errno));
            prog[fd] = 0;
        }
}

static int fill_table(int *fill, int max)
{
    int n = 0, fd;
    while (n < max && (fd = open("/dev/null", O_RDONLY)) >= 0)
        fill[n++] = fd;
    CHECK(n < max && errno == EMFILE, "filling the table: %s", strerror(errno));
    return n;
}

/* epoll_ctl(ADD) of a fast socket needs no descriptor of the program's: twice,
 * the table refilled between (the second finds no reserve of loopfast's to
 * release). */
static void add_when_exhausted(int *c, int *s)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1");
    int fill[512], n = 0;
    for (int i = 0; i < PAIRS; i++) {
        n += fill_table(fill + n, 512 - n);
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 77 + (unsigned)i };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s[i], &ev) == 0,
              "epoll_ctl ADD %d with no descriptor left: %s", i, strerror(errno));
    }
    for (int i = 0; i < PAIRS; i++) {
        CHECK(write_full(c[i], "e", 1) == 1, "write");
        struct epoll_event got;
        CHECK(epoll_wait(ep, &got, 1, 10000) == 1 && got.data.u64 == 77 + (unsigned)i, "epoll_wait");
        char x;
        CHECK(read_full(s[i], &x, 1) == 1 && x == 'e', "read");
    }
    for (int i = 0; i < n; i++)
        close(fill[i]);
    close(ep);
}

static void same_files(const int *f, const struct stat *want, int n)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        CHECK(fstat(f[i], &st) == 0 && st.st_ino == want[i].st_ino && st.st_dev == want[i].st_dev,
              "the program's file at %d was closed or replaced", f[i]);
        CHECK(st.st_size == 0, "the program's file at %d was written to", f[i]);
    }
}

static int open_temp(struct stat *st)
{
    char name[] = "/tmp/loopfast-own-fds-XXXXXX";
    int fd = mkstemp(name);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(name);
    CHECK(fstat(fd, st) == 0, "fstat");
    return fd;
}

/* A child keeps the two client ends as 0 and 1, closes everything else with
 * close_range(3, ~0U), opens files and talks to the parent, closes one
 * connection: loopfast's descriptors of both (the closed one's are released
 * later) must never hit its files. */
static void child(void)
{
    CHECK(close_range(3, ~0U, 0) == 0, "close_range: %s", strerror(errno));
    struct stat want[16];
    int f[16], n = 0;
    for (; n < 8; n++) {
        f[n] = open_temp(&want[n]);
        CHECK(f[n] == 3 + n, "open gave %d, not %d", f[n], 3 + n);
    }
    char x;
    CHECK(write_full(0, "x", 1) == 1 && read_full(0, &x, 1) == 1 && x == 'y', "exchange on 0");
    CHECK(write_full(1, "z", 1) == 1 && close(1) == 0, "write and close 1");
    for (; n < 16; n++)
        f[n] = open_temp(&want[n]);
    CHECK(f[8] == 1, "open after close(1) gave %d", f[8]);
    CHECK(read_full(0, &x, 1) == 1 && x == 'w', "exchange on 0 after close(1)");
    poll(NULL, 0, 1);   /* a wait: loopfast releases its leftovers */
    same_files(f, want, n);
    CHECK(write_full(0, "v", 1) == 1, "last write");
    _exit(0);
}

static void close_range_child(int *c, int *s)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        CHECK(dup2(c[0], 0) == 0 && dup2(c[1], 1) == 1, "dup2 onto 0, 1");
        child();
    }
    for (int i = 0; i < PAIRS; i++)
        close(c[i]);   /* the child holds the client ends alone */
    char x;
    CHECK(read_full(s[0], &x, 1) == 1 && x == 'x' && write_full(s[0], "y", 1) == 1, "parent 0");
    CHECK(read_full(s[1], &x, 1) == 1 && x == 'z', "parent 1");
    CHECK(read(s[1], &x, 1) == 0, "no EOF after the child's close(1)");
    CHECK(write_full(s[0], "w", 1) == 1, "parent 0 again");
    CHECK(read_full(s[0], &x, 1) == 1 && x == 'v', "parent 0 last");
    CHECK(child_status(pid) == 0, "the child failed");
}

/* sshd's re-exec: the child puts the connection at 3 and files at 4 and 5,
 * re-executes itself, and the new image runs closefrom(4): the connection,
 * picked up again from loopfast's exec copies, keeps working, and the new
 * image's files get the kernel's numbers. */
static int reexec_image(void)
{
    closefrom(4);
    CHECK(loopfast_fd_is_fast(3) == 1, "the connection is not fast after exec");
    struct stat want[64];
    int f[64];
    for (int i = 0; i < 64; i++) {
        f[i] = open_temp(&want[i]);
        CHECK(f[i] == 4 + i, "open in the new image gave %d, not %d", f[i], 4 + i);
    }
    char x;
    CHECK(read_full(3, &x, 1) == 1 && x == 'p' && write_full(3, "q", 1) == 1, "exchange after exec");
    poll(NULL, 0, 1);
    same_files(f, want, 64);
    return 0;
}

static void reexec(const char *self)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int sk = fcntl(s, F_DUPFD, 12), null = fcntl(open("/dev/null", O_RDONLY), F_DUPFD, 12);
        if (dup2(null, 4) != 4 || dup2(null, 5) != 5 || dup2(sk, 3) != 3)
            _exit(90);
        close(sk);   /* one descriptor of the connection, as sshd has */
        close(s);
        close(null);
        execl(self, self, "reexec", (char *)NULL);
        _exit(91);
    }
    close(s);
    char x;
    CHECK(write_full(c, "p", 1) == 1, "write to the new image: %s", strerror(errno));
    CHECK(read_full(c, &x, 1) == 1 && x == 'q', "read from the new image");
    CHECK(child_status(pid) == 0, "the re-executed child failed");
    close(c);
}

int main(int argc, char **argv)
{
    lift_fd_cap(argv);   /* fast pairs at a tiny limit, beyond the default share */
    if (argc == 2 && !strcmp(argv[1], "reexec"))
        return reexec_image();
    alarm(25);
    signal(SIGPIPE, SIG_IGN);
    close_range(3, ~0U, 0);   /* whatever the test runner left open: not loopfast's */
    set_limit(LOW);
    int c[PAIRS], s[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        fast_pair(AF_INET, 1, &c[i], &s[i]);
        prog[c[i]] = prog[s[i]] = 1;
    }
    close_theirs_fails();
    daemon_loop(c, s);
    add_when_exhausted(c, s);
    close_range_child(c, s);
    reexec(argv[0]);
    printf("close, dup2, close_range over loopfast's descriptors as the kernel's; "
           "epoll_ctl ADD with the table full\n");
    return 0;
}
