/*
 * addrspace.c - loopfast's mappings under an address-space limit
 * (RLIMIT_AS, `ulimit -v`; docs/design.md, 5).
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
 */
#include <sys/mman.h>
#include <sys/resource.h>

#include "internal.h"

#define SHARE 4   /* loopfast's part of the limit: a quarter */

static uint64_t mapped;   /* bytes of ours mapped now */
static uint64_t limit;    /* the soft limit; 0: ask again */

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

static int take(size_t len)
{
    uint64_t l = soft_limit(), have = __atomic_load_n(&mapped, __ATOMIC_RELAXED);
    for (;;) {
        if (l != UINT64_MAX && have + len > l / SHARE)
            return -1;
        if (__atomic_compare_exchange_n(&mapped, &have, have + len, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return 0;
    }
}

void *addrspace_map(size_t len, int fd, off_t offset)
{
    if (take(len) < 0)
        return errno = ENOMEM, MAP_FAILED;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
    if (p == MAP_FAILED)
        __atomic_sub_fetch(&mapped, len, __ATOMIC_RELAXED);
    return p;
}

void addrspace_unmap(void *p, size_t len)
{
    if (munmap(p, len) == 0)
        __atomic_sub_fetch(&mapped, len, __ATOMIC_RELAXED);
}
