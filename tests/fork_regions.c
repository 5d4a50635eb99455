/* A fork-per-connection server (postmaster, sshd, inetd): the parent
 * accepts, forks a backend per connection and closes its copy.  Every
 * backend then holds its parent's regions and their doorbells, so if they
 * shared one region with the client process, every message to one backend
 * would wake every other sleeping backend (docs/design.md, 11, Fork).
 * After a fork the parent gives no more slots of a region with connections:
 * each backend's connection has a region of its own, and a backend asleep in
 * read() stays asleep while the client talks to another one.  Every byte is
 * echoed and checked, both ways (kernel TCP as the reference). */
#include <sys/wait.h>

#include "helpers.h"

#define BACKENDS 4
#define ROUNDS 500

static void backend(int c)
{
    char buf[256];
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0)
            _exit(n == 0 ? 0 : 1);
        if (write_full(c, buf, (size_t)n) != n)
            _exit(1);
    }
}

/* Accepts BACKENDS connections, a backend forked for each; reports their
 * pids on `report`, then waits for them. */
static void postmaster(int l, int report, void *arg)
{
    (void)arg;
    pid_t kids[BACKENDS];
    for (int i = 0; i < BACKENDS; i++) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(1);
        if ((kids[i] = fork()) == 0) {
            close(l);
            backend(c);
        }
        close(c);
        if (write(report, &kids[i], sizeof kids[i]) != sizeof kids[i])
            _exit(1);
    }
    int bad = 0;
    for (int i = 0; i < BACKENDS; i++)
        bad |= child_status(kids[i]) != 0;
    _exit(bad);
}

static long switches(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    return proc_field(path, "voluntary_ctxt_switches: %ld");
}

static void echo_round(int fd, unsigned seed)
{
    char out[64], in[64];
    for (size_t k = 0; k < sizeof out; k++)
        out[k] = (char)(seed * 131 + k);
    CHECK(write_full(fd, out, sizeof out) == sizeof out, "write: %s", strerror(errno));
    CHECK(read_full(fd, in, sizeof in) == sizeof in, "read: %s", strerror(errno));
    CHECK(memcmp(in, out, sizeof in) == 0, "echo differs");
}

static int run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), report;
    pid_t pm = fork_reporting_server(l, &report, postmaster, NULL);
    int fds[BACKENDS];
    pid_t kids[BACKENDS];
    for (int i = 0; i < BACKENDS; i++) {
        fds[i] = connect_to(&addr, len, optin);
        echo_round(fds[i], (unsigned)i);
        CHECK(read(report, &kids[i], sizeof kids[i]) == sizeof kids[i], "backend pid");
        CHECK(loopfast_fd_is_fast(fds[i]) == optin, "connection %d: fast %d", i,
              loopfast_fd_is_fast(fds[i]));
    }
    int regions = loopfast_regions(getpid(), NULL);
    printf("%s: %d backends, the client holds %d regions\n", optin ? "loopfast" : "kernel",
           BACKENDS, regions);
    CHECK(regions == (optin ? BACKENDS : 0), "%d regions for %d backends", regions, BACKENDS);

    /* Backend 0 sleeps in read() while the client talks to backend 1,
     * which sleeps between rounds too, so that every message rings. */
    usleep(100000);
    long before = switches(kids[0]);
    for (unsigned r = 0; r < ROUNDS; r++) {
        echo_round(fds[1], r);
        usleep(300);
    }
    long woken = switches(kids[0]) - before;
    printf("%s: idle backend woke %ld times during %d round trips with another\n",
           optin ? "loopfast" : "kernel", woken, ROUNDS);
    CHECK(before >= 0 && woken < ROUNDS / 10, "an idle backend woke %ld times", woken);

    for (int i = 0; i < BACKENDS; i++) {
        echo_round(fds[i], 7u + (unsigned)i);
        close(fds[i]);
    }
    CHECK(child_status(pm) == 0, "postmaster or a backend failed");
    close(report);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    run(0);
    run(1);
    return 0;
}
