/* poll, ppoll, select and a blocking read on a connection while
 * RLIMIT_NOFILE is as low as the program's own descriptors allow (OpenSSH's
 * sandboxed child sets it to 1 and polls its one socket): each waits for
 * data the peer sends later and gets it, as over kernel TCP.  loopfast's
 * doorbells never make such a call fail; a poll() of more entries than the
 * limit still fails with EINVAL, as the kernel says. */
#include <dirent.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/select.h>

#include "helpers.h"

enum { C_POLL, C_PPOLL, C_SELECT, C_PSELECT, C_READ, POLL_WR, POLL_PAIR, NCALLS };
static const char *names[] = { "poll", "ppoll", "select", "pselect", "read", "poll-out", "poll-two" };

static int highest_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d, "opendir");
    int high = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d) && atoi(e->d_name) > high)
            high = atoi(e->d_name);
    closedir(d);
    return high;
}

static rlim_t normal_limit;

static void set_nofile(rlim_t n)
{
    struct rlimit r;
    CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0, "getrlimit");
    r.rlim_cur = n;
    CHECK(setrlimit(RLIMIT_NOFILE, &r) == 0, "setrlimit %llu: %s", (unsigned long long)n, strerror(errno));
}

/* The peer: on each byte from `go`, waits a little and sends a message. */
static void peer(int sock, int go)
{
    char b;
    int round = 0;
    while (read(go, &b, 1) == 1) {
        usleep(30000);   /* the other side is asleep in its call by now (usually) */
        char msg[32];
        int n = snprintf(msg, sizeof msg, "round %d", round++);
        if (write_full(sock, msg, (size_t)n) != n)
            _exit(2);
    }
    _exit(0);
}

/* One blocking wait under the limit; returns a description of what it saw. */
static void wait_once(int call, int s, int go, char *out, size_t outlen)
{
    struct pollfd p[2] = { { .fd = s, .events = POLLIN }, { .fd = go, .events = POLLIN } };
    fd_set r;
    FD_ZERO(&r);
    FD_SET(s, &r);
    struct timespec ts = { 10, 0 };
    struct timeval tv = { 10, 0 };
    int rc;
    errno = 0;
    switch (call) {
    case C_POLL: rc = poll(p, 1, 10000); break;
    case C_PPOLL: rc = ppoll(p, 1, &ts, NULL); break;
    case C_SELECT: rc = select(s + 1, &r, NULL, NULL, &tv); break;
    case C_PSELECT: rc = pselect(s + 1, &r, NULL, NULL, &ts, NULL); break;
    case C_READ: rc = 1; break;   /* a blocking read, below */
    case POLL_WR: p[0].events = POLLOUT; rc = poll(p, 1, 10000); break;
    default: rc = poll(p, 2, 0); break;   /* two entries: more than the limit of 1 */
    }
    int e = errno;
    if (call == POLL_WR || call == POLL_PAIR) {
        snprintf(out, outlen, "rc=%d errno=%d revents=%x", rc, rc < 0 ? e : 0, rc > 0 ? p[0].revents : 0);
        return;
    }
    char buf[64] = "";
    ssize_t n = rc > 0 ? read(s, buf, sizeof buf - 1) : -1;
    snprintf(out, outlen, "rc=%d errno=%d data=%s", rc, rc < 0 ? e : 0, n > 0 ? buf : "-");
}

/* Runs every call under limits 1, 0 (not for poll: the kernel refuses a
 * poll of one entry then) and highest fd + 1; appends what each saw.
 * Returns the peer's exit status. */
static int run(int optin, char *log, size_t loglen)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        close(go[1]);
        int a = accept(l, NULL, NULL);
        char b;
        if (a < 0 || write_full(a, "hello", 5) != 5 || read_full(a, &b, 1) != 1)
            _exit(3);
        peer(a, go[0]);
    }
    close(l);
    close(go[0]);
    int s = connect_to(&addr, len, optin);
    char hello[5];
    CHECK(read_full(s, hello, 5) == 5 && write_full(s, "k", 1) == 1, "first exchange");
    CHECK(loopfast_fd_is_fast(s) == optin, "fast: %d, expected %d", loopfast_fd_is_fast(s), optin);
    rlim_t limits[3] = { 0, 1, (rlim_t)highest_fd() + 1 };
    size_t used = strlen(log);
    for (int li = 0; li < 3; li++) {
        for (int call = 0; call < NCALLS; call++) {
            if (limits[li] == 0 && (call == C_POLL || call == C_PPOLL || call == POLL_WR))
                continue;   /* the kernel's poll of one entry fails then; that is no test */
            if (call == POLL_PAIR && limits[li] != 1)
                continue;
            int sends = call != POLL_WR && call != POLL_PAIR;
            if (sends)
                CHECK(write(go[1], "g", 1) == 1, "go");
            char seen[128];
            set_nofile(limits[li]);
            wait_once(call, s, go[1], seen, sizeof seen);
            set_nofile(normal_limit);
            used += (size_t)snprintf(log + used, loglen - used, "limit %s %s: %s\n",
                                     li == 2 ? "high" : li ? "1" : "0", names[call], seen);
        }
    }
    close(go[1]);
    close(s);
    return child_status(child);
}

int main(void)
{
    alarm(25);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit r;
    CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0, "getrlimit");
    normal_limit = r.rlim_cur;
    static char fast[8192], kernel[8192];
    int peer_kernel = run(0, kernel, sizeof kernel);
    int peer_fast = run(1, fast, sizeof fast);
    if (strcmp(fast, kernel)) {
        fprintf(stderr, "kernel TCP:\n%s\nloopfast:\n%s", kernel, fast);
        FAIL("loopfast differs from kernel TCP under a low RLIMIT_NOFILE");
    }
    /* What the kernel said must also be what a program expects. */
    CHECK(strstr(kernel, "limit 1 poll: rc=1 errno=0 data=round "), "kernel poll: %s", kernel);
    CHECK(strstr(kernel, "limit 1 poll-two: rc=-1 errno=22"), "kernel poll of two: %s", kernel);
    CHECK(strstr(kernel, "limit 0 select: rc=1 errno=0 data=round"), "kernel select: %s", kernel);
    CHECK(peer_kernel == 0 && peer_fast == 0, "peer failed: %d %d", peer_kernel, peer_fast);
    printf("%s", fast);
    return 0;
}
