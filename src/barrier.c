/*
 * barrier.c - who pays for the store-load barrier between a ring's writer
 * and a reader about to sleep.
 *
 * A side that publishes progress (a write's head, a read's tail) must then
 * look whether its peer armed to sleep; the peer arms, then looks at the
 * ring again.  Each side needs a store-load barrier between the two steps,
 * or both may miss each other and the sleeper is never woken.  A full fence
 * on every message costs the publisher most of its time (sockperf's 64 B
 * writer spent 83% of its cycles in it).  The sleeper arms rarely, so it
 * pays for both: after arming it calls membarrier(GLOBAL_EXPEDITED), which
 * runs a full barrier on every CPU running a registered process, and the
 * publisher needs only a compiler barrier.  It is an agreement per side,
 * published in shared memory (`arms_with_mb`): a side that promises arms
 * with membarrier; a publisher skips its fence only when its peer promises
 * and its own process is registered (else the barrier would not reach it).
 * A side stops promising (0, then one membarrier) before its process
 * confines itself with seccomp, where membarrier is forbidden; a publisher
 * that skipped its fence looks at the promise again after finding the flag
 * clear, and fences if it was withdrawn meanwhile (docs/design.md, 6).
 */
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

int lf_membarrier;

static int membarrier(int cmd)
{
    return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

void barrier_register(void)
{
    int on = 0;
    if (!lf_confined) {
        int q = membarrier(MEMBARRIER_CMD_QUERY);
        on = q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
             (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
             membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
    }
    __atomic_store_n(&lf_membarrier, on, __ATOMIC_RELAXED);
}

/* Spinning off, every wait sleeps: a membarrier per sleep would cost more
 * than the publishers' fences it saves. */
uint32_t barrier_promise(void)
{
    return __atomic_load_n(&lf_membarrier, __ATOMIC_RELAXED) && lf_config.spin_us > 0 &&
           !lf_confined;
}

void barrier_after_arm(int heavy)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (heavy && !lf_confined)   /* the flag is in shared memory: a peer may have set it */
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
}

void barrier_withdraw(uint32_t *promise)
{
    __atomic_store_n(promise, 0, __ATOMIC_SEQ_CST);
}

/* Reaches every registered publisher; issuing needs no registration. */
void barrier_withdrawn(void)
{
    if (!lf_confined)
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
}
