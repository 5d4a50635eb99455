/* Under a memory cgroup's limit, rings that fill up do not get the program
 * OOM-killed (docs/design.md, 5: under a memory limit).  A client and its
 * server run in a cgroup limited to LIMIT_MB; the client fills CONNS
 * connections, which the server does not read yet, with non-blocking writes
 * until EAGAIN, shuts them down, and the server then reads every byte.
 * Over kernel TCP the socket buffers take it (cgroup v1 does not charge
 * them; v2 does and TCP shrinks its windows); over loopfast each ring's
 * pages were charged as written, and the cgroup's OOM killer ended the
 * client at about 45 MiB of rings.  Now the writers keep to the pages their
 * budget pays for: where the kernel's run ends normally, with every byte
 * read back as written and no OOM kill in the cgroup, loopfast's must too.
 * Three shapes of the limit: on the program's own cgroup; on its parent
 * only (systemd's scopes under a limited slice); and set on its own after
 * its first fast connection (it counts for those made a second later).
 * Needs root and a memory controller it can make a cgroup in (v1 or v2);
 * skipped (77) otherwise, and under ThreadSanitizer, whose shadow of each
 * page counts too. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "helpers.h"

#define LIMIT_MB 48
#define CONNS 64

enum shape { OWN, PARENT, LATER };
static const char *const shape_name[] = { "its own cgroup's", "its parent's", "a later" };

static char cg[256], join[300];   /* the limited cgroup; the one the program runs in */
static int cg_v2;
static pid_t maker;

/* At exit, also after a failed check: what is left in it (a server whose
 * client was killed) is killed first. */
static void remove_one(const char *dir)
{
    for (int tries = 0; rmdir(dir) != 0 && errno != ENOENT && tries < 100; tries++) {
        char buf[4096];
        if (read_text(dir, "cgroup.procs", buf, sizeof buf) > 0)
            for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n"))
                kill((pid_t)atoi(p), SIGKILL);
        usleep(10000);
    }
}

static void remove_cgroup(void)
{
    if (getpid() != maker || !cg[0])
        return;
    if (strcmp(join, cg) != 0)
        remove_one(join);
    remove_one(cg);
    cg[0] = 0;
}

static int set_limit(void)
{
    char limit[32];
    snprintf(limit, sizeof limit, "%d", LIMIT_MB << 20);
    if (write_text(cg, cg_v2 ? "memory.max" : "memory.limit_in_bytes", limit) != 0)
        return -1;
    if (cg_v2)
        write_text(cg, "memory.swap.max", "0");   /* where swap is accounted */
    return 0;
}

/* A cgroup of our own, v1's memory controller or v2's, limited unless the
 * limit comes LATER; the program runs in it, or for PARENT in a child of
 * it without a limit. */
static int make_cgroup(enum shape shape)
{
    const char *v1 = "/sys/fs/cgroup/memory", *v2 = "/sys/fs/cgroup";
    char ctl[256];
    cg_v2 = 0;
    snprintf(cg, sizeof cg, "%s/loopfast-test-%d", v1, (int)getpid());
    if (mkdir(cg, 0755) != 0) {
        if (read_text(v2, "cgroup.subtree_control", ctl, sizeof ctl) <= 0 || !strstr(ctl, "memory"))
            return -1;
        snprintf(cg, sizeof cg, "%s/loopfast-test-%d", v2, (int)getpid());
        cg_v2 = 1;
        if (mkdir(cg, 0755) != 0)
            return -1;
    }
    snprintf(join, sizeof join, "%s", cg);
    if (shape == PARENT) {
        snprintf(join, sizeof join, "%s/inner", cg);
        if ((cg_v2 && write_text(cg, "cgroup.subtree_control", "+memory") != 0) ||
            mkdir(join, 0755) != 0)
            return remove_cgroup(), -1;
    }
    if (shape != LATER && set_limit() != 0)
        return remove_cgroup(), -1;
    return 0;
}

static long oom_kills_in(const char *dir)
{
    char buf[1024];
    if (read_text(dir, cg_v2 ? "memory.events" : "memory.oom_control", buf, sizeof buf) <= 0)
        return -1;
    char *at = strstr(buf, "oom_kill ");
    return at ? atol(at + strlen("oom_kill ")) : -1;
}

/* Where the kill is counted differs between v1 and v2: both levels. */
static long oom_kills(void)
{
    return oom_kills_in(cg) + (strcmp(join, cg) ? oom_kills_in(join) : 0);
}

static unsigned char pattern(int conn, uint64_t at)
{
    return (unsigned char)(conn * 131 + at * 7 + (at >> 12));
}

/* The server: CONNS connections, read only once `go` says so, each until
 * EOF, checked against the pattern; exits 0 when all match. */
static void server(int listener, int go, uint64_t *expected)
{
    int c[CONNS];
    for (int i = 0; i < CONNS; i++)
        if ((c[i] = accept(listener, NULL, NULL)) < 0 || write(c[i], "x", 1) != 1)
            _exit(2);
    char b;
    if (read(go, &b, 1) != 1)
        _exit(3);
    static unsigned char buf[1 << 16];
    for (int i = 0; i < CONNS; i++) {
        uint64_t got = 0;
        ssize_t n;
        while ((n = read(c[i], buf, sizeof buf)) > 0)
            for (ssize_t k = 0; k < n; k++, got++)
                if (buf[k] != pattern(i, got))
                    _exit(4);
        if (n < 0 || got != expected[i])
            _exit(5);
    }
    _exit(0);
}

/* A fast connection in this process, then the limit, which the next
 * connections must see: memlimit.c looks again after a second. */
static void limit_later(int optin)
{
    int a, b;
    fast_pair(AF_INET, optin, &a, &b);
    if (set_limit() != 0)
        _exit(15);
    close(a);
    close(b);
    usleep(1100 * 1000);
}

/* In the cgroup: fills the connections; exits 0 when the server read all. */
static void client(int optin, enum shape shape, uint64_t *queued)
{
    if (shape == LATER)
        limit_later(optin);
    int go[2];
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    if (l < 0 || pipe(go) < 0)
        _exit(10);
    pid_t srv = fork();
    if (srv == 0) {
        close(go[1]);
        server(l, go[0], queued);
    }
    close(l);
    int c[CONNS];
    char x;
    for (int i = 0; i < CONNS; i++)
        if ((c[i] = connect_to(&addr, len, optin)) < 0)
            _exit(11);
    for (int i = 0; i < CONNS; i++)   /* answered: the rings are there */
        if (read(c[i], &x, 1) != 1)
            _exit(11);
    static unsigned char buf[1 << 16];
    for (int i = 0; i < CONNS; i++) {
        fcntl(c[i], F_SETFL, O_NONBLOCK);
        uint64_t sent = 0;
        for (;;) {
            for (size_t k = 0; k < sizeof buf; k++)
                buf[k] = pattern(i, sent + k);
            ssize_t n = write(c[i], buf, sizeof buf);
            if (n < 0 && errno == EAGAIN)
                break;
            if (n <= 0)
                _exit(12);
            sent += (uint64_t)n;
        }
        queued[i] = sent;
        queued[CONNS] += sent;
        fcntl(c[i], F_SETFL, 0);
        shutdown(c[i], SHUT_WR);
    }
    queued[CONNS + 1] = loopfast_fd_is_fast(c[CONNS - 1]) == 1;
    if (write(go[1], "g", 1) != 1)
        _exit(13);
    int st;
    _exit(waitpid(srv, &st, 0) == srv && WIFEXITED(st) ? WEXITSTATUS(st) : 14);
}

/* 1 when the client ended normally, every byte read back, and the cgroup
 * saw no OOM kill. */
static int run(int optin, enum shape shape)
{
    uint64_t *queued = mmap(NULL, (CONNS + 2) * sizeof *queued, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(queued != MAP_FAILED, "mmap");
    long kills = oom_kills();
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        char me[32];
        snprintf(me, sizeof me, "%d", (int)getpid());
        if (write_text(join, "cgroup.procs", me) != 0)
            _exit(20);
        client(optin, shape, queued);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    printf("%s, %d connections under %s %d MiB limit: %.1f MB queued, %s; OOM kills %ld\n",
           optin ? "loopfast" : "kernel TCP", CONNS, shape_name[shape], LIMIT_MB, queued[CONNS] / 1e6,
           WIFEXITED(st) ? "all read back" : "killed", oom_kills() - kills);
    fflush(stdout);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && oom_kills() == kills;
    if (!ok)
        fprintf(stderr, "%s: the client ended with status %#x (signal %d), OOM kills %ld\n",
                optin ? "loopfast" : "kernel TCP", st, WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                oom_kills() - kills);
    CHECK(!optin || !ok || queued[CONNS + 1], "loopfast: the connections were not fast");
    munmap(queued, (CONNS + 2) * sizeof *queued);
    return ok;
}

int main(void)
{
#ifdef UNDER_TSAN
    SKIP("ThreadSanitizer's shadow of every ring page is charged to the cgroup too");
#endif
    if (geteuid() != 0)
        SKIP("needs root to make a memory cgroup");
    maker = getpid();
    atexit(remove_cgroup);
    alarm(120);
    for (enum shape shape = OWN; shape <= LATER; shape++) {
        if (make_cgroup(shape) != 0) {
            if (shape == OWN)
                SKIP("no memory cgroup could be made here");
            printf("%s limit: no such cgroup could be made here\n", shape_name[shape]);
            continue;
        }
        /* Over kernel TCP the program is the reference: where it ends
         * well (always under v1, which does not charge socket buffers),
         * so must it over loopfast.  A fresh cgroup for each run: a LATER
         * limit is not there yet when its run begins. */
        int kernel_ok = run(0, shape);
        remove_cgroup();
        CHECK(make_cgroup(shape) == 0, "the cgroup could not be made again");
        int fast_ok = run(1, shape);
        remove_cgroup();
        CHECK(fast_ok || !kernel_ok,
              "loopfast under %s limit: not every byte came back, or the OOM killer ran, "
              "where kernel TCP was fine", shape_name[shape]);
    }
    return 0;
}
