/*
 * addrspace.c - loopfast's mappings under an address-space limit
 * (RLIMIT_AS, `ulimit -v`) and the kernel's count of mappings
 * (vm.max_map_count; docs/design.md, 5).
 *
 * A connection's slot maps its header and both rings (2 MiB by default)
 * and a region's head a few pages more, all counted against the process's
 * address space, where a kernel TCP connection maps nothing: under a limit,
 * 100 fast connections took 200 MB that the program's own malloc() then
 * lacked.  So, as with descriptors (ownfd.c), loopfast keeps to a share:
 * its mappings hold at most a quarter of the limit, and a connection that
 * would need more stays plain TCP.  A program gets ENOMEM no earlier than
 * without loopfast less that share.  Without a limit nothing is counted
 * against anything, but the count is kept, for a limit set later.
 *
 * Each slot is a mapping of its own (a VMA), and a process may hold at most
 * vm.max_map_count of them (65530 by default), where a kernel TCP
 * connection holds none: a server with tens of thousands of fast
 * connections would leave its own malloc() and thread stacks none.  The
 * same quarter holds for their number; the sysctl is read once, when ours
 * first pass MAPS_UNCHECKED.
 *
 * After mlockall(MCL_FUTURE) (memcached -k, keepalived, corosync) every
 * later mapping is locked: each slot's rings were faulted in whole at
 * mmap() (17 MiB of locked memory a connection, none of it ever trimmed)
 * and counted in the program's RLIMIT_MEMLOCK, whose later mmap() calls
 * then failed, where a kernel TCP socket locks nothing.  So ours are
 * mapped without access, unlocked, then opened: no page is faulted in and
 * the lock is held only between the two calls.
 *
 * mlockall(MCL_CURRENT) locks every mapping there is, and for a process
 * without CAP_IPC_LOCK the kernel first asks that its whole address space
 * fit in RLIMIT_MEMLOCK: with one fast connection (a slot of 16 MiB) an
 * unprivileged program's call failed with ENOMEM where over kernel TCP it
 * succeeds, and a privileged one's faulted in and locked 16 MiB a
 * connection.  So while we have mappings, MCL_CURRENT is done here as the
 * kernel does it, with ours left out: its checks on the address space
 * less ours, then each of the program's mappings locked (mlock2), ours
 * not.
 */
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "internal.h"

#define SHARE 4              /* loopfast's part of each limit: a quarter */
#define MAPS_UNCHECKED 256   /* so few mappings need no look at the sysctl */

static uint64_t mapped;      /* bytes of ours mapped now */
static uint64_t limit;       /* the soft limit; 0: ask again */
static uint64_t maps;        /* mappings of ours now */
static uint64_t maps_limit;  /* vm.max_map_count; 0: not read yet */

void addrspace_limit_changed(void)
{
    __atomic_store_n(&limit, 0, __ATOMIC_RELAXED);
}

static uint64_t soft_limit(void)
{
    uint64_t l = __atomic_load_n(&limit, __ATOMIC_RELAXED);
    if (l)
        return l;
    struct rlimit r;
    l = getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY ? (uint64_t)r.rlim_cur
                                                                     : UINT64_MAX;
    __atomic_store_n(&limit, l ? l : 1, __ATOMIC_RELAXED);
    return l;
}

static uint64_t max_map_count(void)
{
    uint64_t l = __atomic_load_n(&maps_limit, __ATOMIC_RELAXED);
    if (l)
        return l;
    char buf[32];
    l = read_small_file("/proc/sys/vm/max_map_count", buf, sizeof buf) > 0 ? strtoull(buf, NULL, 10)
                                                                           : 0;
    l = l ? l : UINT64_MAX;   /* unreadable (no /proc): not limited */
    __atomic_store_n(&maps_limit, l, __ATOMIC_RELAXED);
    return l;
}

/* One more mapping of ours, if within its share. */
static int take_map(void)
{
    uint64_t have = __atomic_load_n(&maps, __ATOMIC_RELAXED);
    for (;;) {
        if (have + 1 > MAPS_UNCHECKED && have + 1 > max_map_count() / SHARE)
            return -1;
        if (__atomic_compare_exchange_n(&maps, &have, have + 1, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return 0;
    }
}

static int take(size_t len)
{
    uint64_t l = soft_limit(), have = __atomic_load_n(&mapped, __ATOMIC_RELAXED);
    for (;;) {
        if (l != UINT64_MAX && have + len > l / SHARE)
            return -1;
        if (__atomic_compare_exchange_n(&mapped, &have, have + len, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            break;
    }
    if (take_map() == 0)
        return 0;
    __atomic_sub_fetch(&mapped, len, __ATOMIC_RELAXED);
    return -1;
}

static void give_back(size_t len)
{
    __atomic_sub_fetch(&mapped, len, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&maps, 1, __ATOMIC_RELAXED);
}

static int future_locked;   /* mlockall(MCL_FUTURE) in force (this process) */

static void fork_child_unlocked(void)
{
    future_locked = 0;   /* the kernel clears it in a child (mm_init) */
}

static void register_fork_child(void)
{
    lf_atfork(NULL, NULL, fork_child_unlocked);
}

static void *map_unlocked(size_t len, int fd, off_t offset)
{
    void *p = mmap(NULL, len, PROT_NONE, MAP_SHARED, fd, offset);
    if (p == MAP_FAILED)
        return p;
    if (munlock(p, len) < 0 || mprotect(p, len, PROT_READ | PROT_WRITE) < 0) {
        int e = errno;
        munmap(p, len);
        return errno = e, MAP_FAILED;
    }
    return p;
}

void *addrspace_map(size_t len, int fd, off_t offset)
{
    if (take(len) < 0)
        return errno = ENOMEM, MAP_FAILED;
    void *p = __atomic_load_n(&future_locked, __ATOMIC_RELAXED)
                  ? map_unlocked(len, fd, offset)
                  : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
    if (p == MAP_FAILED)
        give_back(len);
    return p;
}

static int real_mlockall(int flags)
{
    static void *slot;
    int (*real)(int);
    *(void **)&real = dlsym_next_cached(&slot, "mlockall");
    return real(flags);
}

static int real_munlockall(void)
{
    static void *slot;
    int (*real)(void);
    *(void **)&real = dlsym_next_cached(&slot, "munlockall");
    return real();
}

/* A field of /proc/self/status's text ("VmSize:"), read as `base` (10
 * or 16); 0 when missing. */
static uint64_t status_field(const char *status, const char *name, int base)
{
    const char *at = strstr(status, name);
    return at ? strtoull(at + strlen(name), NULL, base) : 0;
}

/* /proc/self/maps whole (mlock2 changes it as we go), NUL-ended; NULL
 * when it cannot be read. */
static char *maps_text(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    size_t len = 0, cap = 1 << 16;
    char *buf = fd >= 0 ? malloc(cap) : NULL;
    ssize_t n = 0;
    while (buf && (n = libc.read(fd, buf + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
        char *more = len + 1 < cap ? buf : realloc(buf, cap *= 2);
        if (!more)
            free(buf);
        buf = more;
    }
    if (fd >= 0)
        libc.close_own(fd);
    if (buf && n < 0) {
        free(buf);
        return NULL;
    }
    if (buf)
        buf[len] = 0;
    return buf;
}

/* A line of /proc/self/maps that is one of ours: our slots and region
 * heads are all mapped from memfds named "loopfast" (link.c). */
static int maps_line_ours(const char *line, const char *end)
{
    static const char name[] = "/memfd:loopfast (deleted)";
    size_t n = sizeof name - 1;
    return (size_t)(end - line) > n && !memcmp(end - n, name, n) && isspace((unsigned char)end[-n - 1]);
}

static void lock_range(uintptr_t start, uintptr_t end, int onfault)
{
    if (end > start)   /* errors ignored, as the kernel's mlockall does for each mapping */
        mlock2((void *)start, end - start, onfault ? MLOCK_ONFAULT : 0);
}

/* Every mapping but ours locked, neighbours in one call. */
static int lock_all_but_ours(int onfault)
{
    char *text = maps_text();
    if (!text)
        return -1;
    uintptr_t from = 0, to = 0;
    for (char *line = text, *end; *line; line = *end ? end + 1 : end) {
        end = strchrnul(line, '\n');
        unsigned long long a, b;
        if (sscanf(line, "%llx-%llx", &a, &b) != 2 || memmem(line, (size_t)(end - line), "[vsyscall]", 10))
            continue;
        int ours = maps_line_ours(line, end);
        if (ours || a != to) {
            lock_range(from, to, onfault);
            from = to = 0;
        }
        if (!ours) {
            from = from ? from : (uintptr_t)a;
            to = (uintptr_t)b;
        }
    }
    lock_range(from, to, onfault);
    free(text);
    return 0;
}

/* MCL_CURRENT with mappings of ours: the kernel's checks (mm/mlock.c) on
 * the address space less ours, its MCL_FUTURE (or the clearing of it),
 * then the locks. */
static int mlockall_but_ours(int flags)
{
    struct rlimit lim;
    char status[4096];
    if (getrlimit(RLIMIT_MEMLOCK, &lim) < 0)
        return -1;
    if (read_small_file("/proc/self/status", status, sizeof status) <= 0)
        status[0] = 0;
    int privileged = (status_field(status, "CapEff:", 16) >> 14 & 1) != 0;   /* CAP_IPC_LOCK */
    if (lim.rlim_cur == 0 && !privileged)
        return errno = EPERM, -1;
    uint64_t size = status_field(status, "VmSize:", 10) * 1024;
    uint64_t ours = __atomic_load_n(&mapped, __ATOMIC_RELAXED);
    if (lim.rlim_cur != RLIM_INFINITY && size - (ours < size ? ours : size) > lim.rlim_cur && !privileged)
        return errno = ENOMEM, -1;
    int r = flags & MCL_FUTURE ? real_mlockall(flags & ~MCL_CURRENT) : real_munlockall();
    if (r == 0 && lock_all_but_ours(flags & MCL_ONFAULT) < 0)
        r = real_mlockall(flags);   /* no /proc: the kernel's own, ours locked too */
    return r;
}

/* The program's calls, followed: whether later mappings are locked.  (One
 * made by a raw system call is not seen: its rings are locked, as before.) */
LF_EXPORT int mlockall(int flags)
{
    int valid = flags && !(flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) && flags != MCL_ONFAULT;
    int future = (flags & MCL_FUTURE) != 0;
    /* another thread's mapping made meanwhile is made unlocked, whichever holds */
    int was = __atomic_exchange_n(&future_locked, 1, __ATOMIC_RELAXED);
    int r = valid && (flags & MCL_CURRENT) && __atomic_load_n(&mapped, __ATOMIC_RELAXED)
                ? mlockall_but_ours(flags)
                : real_mlockall(flags);
    if (r == 0) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, register_fork_child);
    }
    __atomic_store_n(&future_locked, r == 0 ? future : was, __ATOMIC_RELAXED);
    return r;
}

LF_EXPORT int munlockall(void)
{
    int r = real_munlockall();
    if (r == 0)
        __atomic_store_n(&future_locked, 0, __ATOMIC_RELAXED);
    return r;
}

void addrspace_unmap(void *p, size_t len)
{
    if (munmap(p, len) == 0)
        give_back(len);
}
