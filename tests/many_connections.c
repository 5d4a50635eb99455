/* Limits: 10 000 concurrent fast connections work (RLIMIT_NOFILE raised);
 * and when descriptors run out, new connections fall back to the kernel path
 * instead of failing. */
#include <sys/resource.h>

#include "helpers.h"

#define PROCS 5          /* the hard descriptor limit may stay low: spread the load */
#define PER 2000
#define N (PROCS * PER)

/* A fast connection costs each end 3 descriptors (TCP, 2 doorbells; the region is per process pair). */
static int raise_limit(rlim_t want)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_max < want)
        r.rlim_max = want;   /* works with CAP_SYS_RESOURCE only */
    r.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &r) == 0)
        return 0;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    return r.rlim_cur >= want ? 0 : -1;
}

/* Server worker: accepts `n` connections, echoes one byte on each, then
 * holds them until `hold` closes. */
static void server(int l, int n, int hold)
{
    for (int i = 0; i < n; i++) {
        int c = accept(l, NULL, NULL);
        char b;
        if (c < 0 || read(c, &b, 1) != 1 || write(c, &b, 1) != 1)
            _exit(1);
    }
    char b;
    read(hold, &b, 1);
    _exit(0);
}

/* Client: opens `n` connections, reports how many are fast, holds them. */
static void client(const struct sockaddr_storage *addr, socklen_t len, int n, int report, int hold)
{
    static int fds[PER];
    int fast = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = connect_to(addr, len, 1);
        char b = (char)i;
        if (write_full(fds[i], &b, 1) != 1 || read_full(fds[i], &b, 1) != 1 || b != (char)i)
            _exit(1);
        fast += loopfast_fd_is_fast(fds[i]) == 1;
    }
    write(report, &fast, sizeof fast);
    char b;
    read(hold, &b, 1);
    _exit(0);
}

static long vm_size_kb(void)
{
    return proc_field("/proc/self/status", "VmSize: %ld kB");
}

/* A server limited by setrlimit(resource) echoes `n` short connections from
 * opted-in clients; returns how many stayed plain, or -1 if one failed.  For
 * RLIMIT_AS the limit is what the server already uses plus 256 KiB, so the
 * rings cannot be mapped. */
static int plain_under_limit(int resource, rlim_t limit, int n)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    pid_t pid = fork();
    if (pid == 0) {
        if (resource == RLIMIT_AS)
            limit = (rlim_t)(vm_size_kb() + 256) << 10;
        struct rlimit r = { limit, limit };
        setrlimit(resource, &r);
        for (int i = 0; i < n; i++) {
            int c = accept(l, NULL, NULL);
            char b;
            if (c < 0 || read(c, &b, 1) != 1 || write(c, &b, 1) != 1 || read(c, &b, 1) != 0)
                _exit(1);
            close(c);
        }
        _exit(0);
    }
    close(l);
    int plain = 0, failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        int fd = connect_to(&addr, len, 1);
        char b = 'q';
        failed = write_full(fd, &b, 1) != 1 || read_full(fd, &b, 1) != 1 || b != 'q';
        plain += loopfast_fd_is_fast(fd) != 1;
        close(fd);
    }
    if (failed)
        kill(pid, SIGKILL);
    return child_status(pid) == 0 && !failed ? plain : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    lift_fd_cap(argv);
    alarm(120);
    if (raise_limit(6 * PER + 500) < 0)
        SKIP("cannot raise RLIMIT_NOFILE to %d", 6 * PER + 500);
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    int hold[2], rep[2];
    CHECK(pipe(hold) == 0 && pipe(rep) == 0, "pipe");
    pid_t pids[2 * PROCS];
    for (int i = 0; i < 2 * PROCS; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0, "fork");
        if (pids[i] == 0) {
            close(hold[1]);
            if (i < PROCS)
                server(l, PER, hold[0]);
            close(l);
            client(&addr, len, PER, rep[1], hold[0]);
        }
    }
    close(l);
    close(hold[0]);
    int fast = 0;
    for (int i = 0; i < PROCS; i++) {
        int f = 0;
        CHECK(read(rep[0], &f, sizeof f) == sizeof f, "a client failed");
        fast += f;
    }
    /* all PROCS clients hold their connections now: N are open at once */
    printf("%d concurrent connections in %d client and %d server processes, %d on the fast path\n", N,
           PROCS, PROCS, fast);
    close(hold[1]);
    for (int i = 0; i < 2 * PROCS; i++)
        CHECK(child_status(pids[i]) == 0, "process %d failed", i);
    /* A handful may stay plain since the proofs (docs/design.md 4.7): seen
     * 1-2 in 10 000 under load, not yet explained (issue 10's scale item). */
    CHECK(fast >= N - N / 1000, "only %d of %d connections were fast", fast, N);

    /* Out of descriptors (a fast connection needs 6, the handshake a few
     * more) or address space on the server side: every connection falls
     * back, none fails. */
    int plain = plain_under_limit(RLIMIT_NOFILE, 12, 40);
    printf("with 12 descriptors the server kept %d of 40 connections on the kernel path\n", plain);
    CHECK(plain == 40, "only %d of 40 fell back", plain);
    long vm = vm_size_kb();
    if (vm < 0 || vm > (64L << 20)) {   /* sanitizer builds reserve terabytes */
        printf("(address-space limit not tried under a sanitizer)\n");
    } else {
        plain = plain_under_limit(RLIMIT_AS, 0, 10);
        printf("with no address space left the server kept %d of 10 connections on the kernel path\n", plain);
        CHECK(plain == 10, "only %d of 10 fell back", plain);
    }
    return 0;
}
