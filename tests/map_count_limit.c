/* Under vm.max_map_count, fast connections leave the program its own
 * mappings (docs/design.md, 5: under an address-space limit).  Each fast
 * connection's slot is a mapping (a VMA) of loopfast's, where a kernel TCP
 * connection holds none, and a process may hold at most vm.max_map_count
 * of them: a server with tens of thousands of fast connections left its
 * malloc() and thread stacks none.  loopfast keeps to a quarter of the
 * count, and a connection that would need more stays plain TCP.
 *
 * With the machine's sysctl lowered to LIMIT for the test's length (and put
 * back, also on a signal), a process opens PAIRS connections to itself and
 * then counts the one-page mappings it can still make; over loopfast it
 * must get no fewer than over kernel TCP less the quarter.  Needs root and
 * a writable /proc/sys; skipped (77) otherwise, and under ThreadSanitizer. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "helpers.h"

#define LIMIT 6000
#define PAIRS 3000
#define SYSCTL_DIR "/proc/sys/vm"
#define SYSCTL "max_map_count"

static char saved[32];

static void restore(void)
{
    if (saved[0])
        write_text(SYSCTL_DIR, SYSCTL, saved);
}

static void restore_and_die(int sig)
{
    restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* One-page mappings the program can still make, alternately readable and
 * not, so that none merges with its neighbour. */
static long fillable(void)
{
    static void *page[2 * LIMIT];
    long n = 0;
    for (; n < 2 * LIMIT; n++) {
        page[n] = mmap(NULL, 4096, n % 2 ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page[n] == MAP_FAILED)
            break;
    }
    for (long i = 0; i < n; i++)
        munmap(page[i], 4096);
    return n;
}

/* In a child: PAIRS connections to itself, one exchange each way; reports
 * the mappings left and how many connections went fast. */
static void pairs_then_fill(int optin, int report)
{
    struct rlimit r = { 4 * PAIRS + 1024, 4 * PAIRS + 1024 };
    if (setrlimit(RLIMIT_NOFILE, &r) != 0)
        _exit(2);
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    if (l < 0)
        _exit(3);
    long result[2] = { 0, 0 };
    for (int i = 0; i < PAIRS; i++) {
        char b;
        int c = connect_to(&addr, len, optin), s = accept(l, NULL, NULL);
        if (c < 0 || s < 0 || write(c, "a", 1) != 1 || read(s, &b, 1) != 1 ||
            write(s, "b", 1) != 1 || read(c, &b, 1) != 1)
            _exit(4);
        result[1] += loopfast_fd_is_fast(c) == 1;
    }
    result[0] = fillable();
    _exit(write(report, result, sizeof result) == sizeof result ? 0 : 5);
}

static void run(int optin, long result[2])
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(p[0]);
        pairs_then_fill(optin, p[1]);
    }
    close(p[1]);
    CHECK(read_full(p[0], result, 2 * sizeof *result) == 2 * sizeof *result,
          "%s: the child reported nothing (status %d)", optin ? "loopfast" : "kernel TCP",
          child_status(pid));
    close(p[0]);
    CHECK(child_status(pid) == 0, "the child failed");
    printf("%s: %d connections (%ld fast), then %ld mappings of the program's own under "
           "vm.max_map_count %d\n", optin ? "loopfast" : "kernel TCP", PAIRS, result[1], result[0],
           LIMIT);
    fflush(stdout);
}

int main(void)
{
#ifdef UNDER_TSAN
    SKIP("ThreadSanitizer maps its own shadow beside each mapping of ours");
#endif
    if (geteuid() != 0)
        SKIP("needs root to lower vm.max_map_count");
    if (read_text(SYSCTL_DIR, SYSCTL, saved, sizeof saved) <= 0)
        SKIP("%s/%s cannot be read", SYSCTL_DIR, SYSCTL);
    if (atol(saved) < 2 * LIMIT)
        SKIP("vm.max_map_count is already low (%ld)", atol(saved));
    atexit(restore);
    signal(SIGALRM, restore_and_die);
    signal(SIGTERM, restore_and_die);
    signal(SIGINT, restore_and_die);
    char value[32];
    snprintf(value, sizeof value, "%d", LIMIT);
    if (write_text(SYSCTL_DIR, SYSCTL, value) != 0) {
        saved[0] = 0;
        SKIP("%s/%s is not writable here", SYSCTL_DIR, SYSCTL);
    }
    alarm(120);
    long kernel[2], fast[2];
    run(0, kernel);
    run(1, fast);
    restore();
    CHECK(fast[1] > 0, "loopfast: no connection was fast");
    /* a quarter, and a few of loopfast's heap (more under ASan) */
    CHECK(fast[0] >= kernel[0] - LIMIT / 4 - 64,
          "loopfast left the program %ld mappings, kernel TCP %ld: more than a quarter of %d taken",
          fast[0], kernel[0], LIMIT);
    return 0;
}
