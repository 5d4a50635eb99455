/* mlockall(MCL_CURRENT) in a program that has fast connections.  The
 * kernel locks every mapping, and, for a process without CAP_IPC_LOCK,
 * first asks that its whole address space fit in RLIMIT_MEMLOCK: each
 * fast connection's slot (16 MiB) counted there, so that an unprivileged
 * program's call failed with ENOMEM where over kernel TCP it succeeds, and
 * a privileged one's faulted in and locked 16 MiB a connection end.
 * Both ways, kernel TCP the reference, in a child with two connections
 * (both ends its own): the call's result and errno (allowed under a limit
 * a little above the program's own size; refused below it, with a limit
 * of 0, and for MCL_ONFAULT alone), the memory it locked and made
 * resident, and the connections' bytes afterwards. */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "helpers.h"

#define PAIRS 2
#define SLACK_KB 4096   /* a limit this far above the program's size: less than a slot */

enum limit { ABOVE_SIZE, BELOW_SIZE, ZERO };

struct outcome {
    int rc, err;        /* mlockall's */
    long locked_kb;     /* VmLck after */
    long grown_kb;      /* VmRSS after less before */
    int data_ok;        /* 64 KiB each way on every connection afterwards */
};

static long status_kb(const char *format)
{
    return proc_field("/proc/self/status", format);
}

static int exchange(int c, int s, int optin)
{
    static char out[65536], in[65536];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)(i * 7 + 3);
    return write_full(c, out, sizeof out) == sizeof out && read_full(s, in, sizeof in) == sizeof in &&
           !memcmp(in, out, sizeof in) && write_full(s, out, sizeof out) == sizeof out &&
           read_full(c, in, sizeof in) == sizeof in && !memcmp(in, out, sizeof in) &&
           (!optin || (loopfast_fd_is_fast(c) == 1 && loopfast_fd_is_fast(s) == 1));
}

/* The child: its limit set by its size now, as nobody when `drop` (root
 * loses CAP_IPC_LOCK so), then the connections and the call. */
static void child(int optin, int drop, enum limit limit, int flags, int report)
{
    struct outcome o = { -1, 0, -1, -1, 0 };
    long size_kb = status_kb("VmSize: %ld");
    long kb = limit == ZERO ? 0 : limit == ABOVE_SIZE ? size_kb + SLACK_KB : size_kb / 2;
    struct rlimit lim;
    lim.rlim_cur = lim.rlim_max = (rlim_t)(kb > 0 ? kb : 0) * 1024;
    if (getuid() == 0 && setrlimit(RLIMIT_MEMLOCK, &lim) < 0)
        _exit(3);
    if (drop && getuid() == 0 && setuid(65534) < 0)
        _exit(3);
    int c[PAIRS], s[PAIRS];
    for (int i = 0; i < PAIRS; i++)
        fast_pair(AF_INET, optin, &c[i], &s[i]);
    long rss = status_kb("VmRSS: %ld");
    o.rc = mlockall(flags);
    o.err = o.rc < 0 ? errno : 0;
    o.locked_kb = status_kb("VmLck: %ld");
    o.grown_kb = status_kb("VmRSS: %ld") - rss;
    o.data_ok = 1;
    for (int i = 0; i < PAIRS; i++)
        o.data_ok &= exchange(c[i], s[i], optin);
    if (write(report, &o, sizeof o) != sizeof o)
        _exit(3);
    _exit(0);
}

static struct outcome run(int optin, int drop, enum limit limit, int flags)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(p[0]);
        child(optin, drop, limit, flags, p[1]);
    }
    close(p[1]);
    struct outcome o;
    CHECK(read_full(p[0], &o, sizeof o) == sizeof o, "the child reported nothing");
    close(p[0]);
    CHECK(child_status(pid) == 0, "child");
    return o;
}

/* The same call both ways: result, errno, and the bytes after. */
static void same_both_ways(const char *what, int drop, enum limit limit, int flags, long *grown)
{
    struct outcome k = run(0, drop, limit, flags), f = run(1, drop, limit, flags);
    printf("%s: kernel %d (%s), locked %ld KiB, resident +%ld KiB; loopfast %d (%s), locked %ld "
           "KiB, resident +%ld KiB\n",
           what, k.rc, strerror(k.err), k.locked_kb, k.grown_kb, f.rc, strerror(f.err), f.locked_kb,
           f.grown_kb);
    CHECK(f.rc == k.rc && f.err == k.err, "%s: loopfast %d (%s), kernel TCP %d (%s)", what, f.rc,
          strerror(f.err), k.rc, strerror(k.err));
    CHECK(k.data_ok && f.data_ok, "%s: bytes after the call: kernel %d, loopfast %d", what,
          k.data_ok, f.data_ok);
    /* our library's own pages are locked too (a few hundred KiB), no slot */
    CHECK(f.locked_kb <= k.locked_kb + 2048, "%s: loopfast locked %ld KiB, kernel TCP %ld", what,
          f.locked_kb, k.locked_kb);
    if (grown) {
        grown[0] = k.grown_kb;
        grown[1] = f.grown_kb;
    }
}

int main(void)
{
    alarm(60);
#if defined(UNDER_ASAN) || defined(UNDER_TSAN)
    SKIP("the sanitizers' runtime makes mlockall() do nothing");
#endif
    if (getuid() != 0) {
        printf("needs root (to set RLIMIT_MEMLOCK and drop CAP_IPC_LOCK)\n");
        return 77;
    }
    long grown[2];
    same_both_ways("nobody, limit its size + 4 MiB, MCL_CURRENT", 1, ABOVE_SIZE, MCL_CURRENT, NULL);
    same_both_ways("nobody, MCL_CURRENT | MCL_FUTURE", 1, ABOVE_SIZE, MCL_CURRENT | MCL_FUTURE, NULL);
    same_both_ways("nobody, MCL_CURRENT | MCL_ONFAULT", 1, ABOVE_SIZE, MCL_CURRENT | MCL_ONFAULT, NULL);
    same_both_ways("nobody, limit half its size", 1, BELOW_SIZE, MCL_CURRENT, NULL);
    same_both_ways("nobody, limit 0", 1, ZERO, MCL_CURRENT, NULL);
    same_both_ways("nobody, MCL_ONFAULT alone", 1, ABOVE_SIZE, MCL_ONFAULT, NULL);
    same_both_ways("root, MCL_CURRENT", 0, ABOVE_SIZE, MCL_CURRENT, grown);
    CHECK(grown[1] <= grown[0] + 4096, "root's MCL_CURRENT made %ld KiB resident (kernel TCP: %ld)",
          grown[1], grown[0]);
    return 0;
}
