/* A program that locked its memory with mlockall(MCL_FUTURE) (memcached
 * -k, keepalived): every later mapping is locked, and each fast
 * connection's rings were faulted in whole and locked (17 MiB a connection,
 * never trimmed) and counted in the program's RLIMIT_MEMLOCK, so that its
 * own mmap() then failed where over kernel TCP it succeeds.  Both ways,
 * with kernel TCP as the reference: the locked memory 8 connections add
 * (VmLck), and, in a process with an RLIMIT_MEMLOCK of 48 MiB (as nobody
 * when run as root, whose CAP_IPC_LOCK ignores the limit; less where the
 * hard limit is lower, and then a ring's mapping fails both ways and its
 * connection stays plain), that 4 connections leave room for a mapping of
 * the program's own of half the limit. */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "helpers.h"

#define PAIRS 8

static long vm_locked_kb(void)
{
    return proc_field("/proc/self/status", "VmLck: %ld");
}

static void exchange(int c, int s)
{
    static char out[65536], in[65536];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)(i * 13);
    CHECK(write_full(c, out, sizeof out) == sizeof out && read_full(s, in, sizeof in) == sizeof in &&
              !memcmp(in, out, sizeof in),
          "64 KiB client to server");
    CHECK(write_full(s, out, sizeof out) == sizeof out && read_full(c, in, sizeof in) == sizeof in &&
              !memcmp(in, out, sizeof in),
          "64 KiB server to client");
}

/* KiB of locked memory PAIRS connections added, each with 64 KiB each way. */
static long locked_by_pairs(int optin)
{
    int c[PAIRS], s[PAIRS];
    long before = vm_locked_kb();
    for (int i = 0; i < PAIRS; i++) {
        fast_pair(AF_INET, optin, &c[i], &s[i]);
        exchange(c[i], s[i]);
    }
    long added = vm_locked_kb() - before;
    for (int i = 0; i < PAIRS; i++) {
        close(c[i]);
        close(s[i]);
    }
    return added;
}

/* In a child under an RLIMIT_MEMLOCK of at most 48 MiB, its later mappings
 * locked: 4 connections, then a mapping of its own of half the limit,
 * touched.  Exit 0: all done; 1: a connection failed;
 * 2: the mapping did; 3: set-up. */
static int own_mapping_after_pairs(int optin)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid) {
        return child_status(pid);
    }
    struct rlimit lim;   /* raising the hard limit may be refused (no CAP_SYS_RESOURCE) */
    if (getrlimit(RLIMIT_MEMLOCK, &lim) < 0)
        _exit(3);
    if (lim.rlim_max > 48 << 20)
        lim.rlim_max = 48 << 20;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_MEMLOCK, &lim) < 0 || (getuid() == 0 && setuid(65534) < 0) ||
        mlockall(MCL_FUTURE) < 0)   /* what it has mapped already is not counted */
        _exit(3);
    for (int i = 0; i < 4; i++) {
        int c, s;
        close(accepted_pair(AF_INET, optin, &c, &s));
        char b = 'x';
        for (int k = 0; k < 3; k++)
            if (write_full(c, &b, 1) != 1 || read_full(s, &b, 1) != 1 || write_full(s, &b, 1) != 1 ||
                read_full(c, &b, 1) != 1)
                _exit(1);
        /* kept open, as a server keeps its clients */
    }
    size_t len = lim.rlim_cur / 2;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(2);
    memset(p, 1, len);
    _exit(0);
}

int main(void)
{
    alarm(60);
    if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
        printf("mlockall: %s\n", strerror(errno));
        return 77;
    }
    long kernel = locked_by_pairs(0), fast = locked_by_pairs(1);
    printf("locked by %d connections: kernel %ld KiB, loopfast %ld KiB\n", PAIRS, kernel, fast);
    CHECK(munlockall() == 0, "munlockall");
    CHECK(fast <= kernel + PAIRS * 256, "fast connections locked %ld KiB (kernel TCP: %ld)", fast,
          kernel);
    int k = own_mapping_after_pairs(0), f = own_mapping_after_pairs(1);
    printf("under RLIMIT_MEMLOCK, 4 connections then half the limit: kernel exit %d, loopfast "
           "exit %d (0: done, 1: a connection failed, 2: the mapping failed)\n", k, f);
    CHECK(k == 0, "over kernel TCP the child exited %d", k);
    CHECK(f == 0, "with loopfast the child exited %d", f);
    return 0;
}
