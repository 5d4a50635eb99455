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
 */
#include <pthread.h>
#include <stdlib.h>
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

/* The program's calls, followed: whether later mappings are locked.  (One
 * made by a raw system call is not seen: its rings are locked, as before.) */
LF_EXPORT int mlockall(int flags)
{
    static int (*real_mlockall)(int);
    __typeof__(real_mlockall) real;
    *(void **)&real = dlsym_next_cached((void **)&real_mlockall, "mlockall");
    int r = real(flags);
    if (r == 0) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, register_fork_child);
        __atomic_store_n(&future_locked, (flags & MCL_FUTURE) != 0, __ATOMIC_RELAXED);
    }
    return r;
}

LF_EXPORT int munlockall(void)
{
    static int (*real_munlockall)(void);
    __typeof__(real_munlockall) real;
    *(void **)&real = dlsym_next_cached((void **)&real_munlockall, "munlockall");
    int r = real();
    if (r == 0)
        __atomic_store_n(&future_locked, 0, __ATOMIC_RELAXED);
    return r;
}

void addrspace_unmap(void *p, size_t len)
{
    if (munmap(p, len) == 0)
        give_back(len);
}
