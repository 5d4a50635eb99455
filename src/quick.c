/*
 * quick.c - a threaded process's hot data calls without locked
 * instructions.
 *
 * With threads, each read or write took the fd table's reference and the
 * direction's mutex: four locked instructions, the first of which after a
 * ring store waits for that store to leave the core, i.e. for the peer's
 * spinning core to give the head's line back (a threaded 64 B writer ran at
 * half the rate of the same program without threads).  Here the thread
 * that keeps using a direction pays nothing of that, and whoever else comes
 * pays, with one membarrier (MEMBARRIER_CMD_PRIVATE_EXPEDITED: a full
 * barrier on every CPU running a thread of this process), as the sleeper
 * pays for the ring's barrier (barrier.c).
 *
 * A thread that makes such calls holds a record with two words only it
 * writes: `hazard`, the socket its quick call is on, and `dir`, the
 * direction it holds as that direction's owner (struct lf_bias).  Each side
 * stores its word, then looks at the other's (the owner stores `dir`, then
 * looks at `revoke`; a closer clears the table's slot, then looks at the
 * hazards); the rare side runs a membarrier between its store and its look,
 * so at least one of them sees the other.  docs/design.md, 5, "Threads
 * without locked instructions".
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define QUICK_THREADS 256    /* records; a thread beyond them makes its calls the ordinary way */
#define QUICK_RUN 8          /* mutex takings in a row by one thread that bias a direction to it */
#define QUICK_REVOKES 3      /* a direction revoked this often is never biased again */

__thread struct lf_thread *lf_self LF_TLS_IE;
int lf_quick;                /* QUICK_ON while quick calls are allowed */

static struct lf_thread records[QUICK_THREADS];
static struct lf_thread no_record;   /* lf_self of a thread that found none: never usable */
static int any_claimed;              /* a record was handed out: teardowns look at hazards */
static pthread_mutex_t setup_lock = PTHREAD_MUTEX_INITIALIZER;

static int membarrier_private(int cmd)
{
    return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

/* Once per process, and again in a forked child: without the registration
 * the barrier fails, so a process that cannot register makes no quick call. */
static int quick_register(void)
{
    int q = lf_confined ? -1 : membarrier_private(MEMBARRIER_CMD_QUERY);
    return q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
           membarrier_private(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

/* The rare side's barrier: every thread of ours running now passes a full
 * barrier before it returns.  Quick calls off (confined), the one run when
 * they were switched off stands for it: every call that began before is
 * visible in its record, and none begins after. */
static void quick_barrier(void)
{
    if (__atomic_load_n(&lf_quick, __ATOMIC_ACQUIRE) != QUICK_OFF)
        membarrier_private(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

/* A short wait for another thread's quick section, which only copies. */
static void pause_step(unsigned i)
{
    if (i < 64) {
        cpu_relax();
        return;
    }
    struct timespec t = { 0, i < 1024 ? 1000 : 1000000 };
    nanosleep(&t, NULL);
}

static int thread_gone(pid_t tid)
{
    return tid && syscall(SYS_tgkill, lf_pid, tid, 0) < 0 && errno == ESRCH;
}

/* A free record, or one whose thread is gone, for this thread. */
static struct lf_thread *claim(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < QUICK_THREADS; i++) {
            struct lf_thread *r = &records[i];
            pid_t was = __atomic_load_n(&r->tid, __ATOMIC_RELAXED);
            if ((pass == 0 ? was == 0 : thread_gone(was)) &&
                __atomic_compare_exchange_n(&r->tid, &was, tid, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED)) {
                r->usable = 1;
                return r;
            }
        }
    }
    return &no_record;
}

/* This thread's record, claimed at its first mutex taking that could bias. */
static struct lf_thread *self(void)
{
    if (lf_self)
        return lf_self->usable ? lf_self : NULL;
    int e = errno;
    lf_lock(&setup_lock);
    if (__atomic_load_n(&lf_quick, __ATOMIC_RELAXED) == QUICK_UNSET) {
        int on = 1;
#ifdef LF_TSAN
        on = 0;   /* it cannot see the membarrier's ordering */
#endif
        __atomic_store_n(&lf_quick, on && quick_register() ? QUICK_ON : QUICK_OFF,
                         __ATOMIC_RELEASE);
    }
    lf_unlock(&setup_lock);
    errno = e;
    if (__atomic_load_n(&lf_quick, __ATOMIC_ACQUIRE) != QUICK_ON)
        return NULL;
    __atomic_store_n(&any_claimed, 1, __ATOMIC_RELEASE);
    lf_self = claim();
    return lf_self->usable ? lf_self : NULL;
}

/* Does another thread's record hold `word` == what? */
static int records_hold(size_t offset, const void *what)
{
    for (int i = 0; i < QUICK_THREADS; i++) {
        struct lf_thread *r = &records[i];
        if (r != lf_self && __atomic_load_n((void **)((char *)r + offset), __ATOMIC_ACQUIRE) == what)
            return 1;
    }
    return 0;
}

/* Waits until none does: its quick section only copies. */
static void wait_records(size_t offset, const void *what)
{
    for (unsigned k = 0; records_hold(offset, what); k++)
        pause_step(k);
}

/* Mutex of b's direction held, an owner set that is not us: it gives way. */
static void bias_revoke(struct lf_bias *b, int counted)
{
    __atomic_store_n(&b->revoke, 1, __ATOMIC_RELAXED);
    quick_barrier();
    wait_records(offsetof(struct lf_thread, dir), b);
    __atomic_store_n(&b->owner, NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&b->revoke, 0, __ATOMIC_RELEASE);
    b->run = 0;
    if (counted)
        b->revokes++;
}

void quick_after_lock(struct lf_bias *b, int may_bias)
{
    struct lf_thread *owner = __atomic_load_n(&b->owner, __ATOMIC_RELAXED);
    if (owner && owner != lf_self)
        bias_revoke(b, 1);
    if (!may_bias || b->revokes >= QUICK_REVOKES || __atomic_load_n(&b->owner, __ATOMIC_RELAXED))
        return;
    struct lf_thread *me = self();
    if (!me)
        return;
    if (b->last != me) {
        b->last = me;
        b->run = 0;
    }
    if (++b->run >= QUICK_RUN)
        __atomic_store_n(&b->owner, me, __ATOMIC_RELAXED);
}

int quick_try_take_back(struct lf_bias *b)
{
    if (!quick_owned_elsewhere(b))
        return 1;
    __atomic_store_n(&b->revoke, 1, __ATOMIC_RELAXED);
    quick_barrier();
    if (records_hold(offsetof(struct lf_thread, dir), b)) {
        __atomic_store_n(&b->revoke, 0, __ATOMIC_RELEASE);   /* in its section: left to it */
        return 0;
    }
    __atomic_store_n(&b->owner, NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&b->revoke, 0, __ATOMIC_RELEASE);
    b->run = 0;
    return 1;
}

void quick_wait_hazards(struct lf_sock *s)
{
    if (!__atomic_load_n(&any_claimed, __ATOMIC_ACQUIRE))
        return;
    quick_barrier();
    wait_records(offsetof(struct lf_thread, hazard), s);
}

/* Before a seccomp filter: no quick call begins after this, and the calls
 * in flight are visible in their records to every later scan. */
void quick_confine(void)
{
    int unset = QUICK_UNSET;
    if (__atomic_compare_exchange_n(&lf_quick, &unset, QUICK_OFF, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE) || unset != QUICK_ON)
        return;
    __atomic_store_n(&lf_quick, QUICK_DRAINING, __ATOMIC_SEQ_CST);
    membarrier_private(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    __atomic_store_n(&lf_quick, QUICK_OFF, __ATOMIC_RELEASE);
}

/* The child has only the thread that forked: the others' records are free
 * (their calls in flight will never end here), and its own names its new
 * tid.  Owners are cleared per connection (quick_bias_reset). */
static void quick_fork_child(void)
{
    for (int i = 0; i < QUICK_THREADS; i++) {
        struct lf_thread *r = &records[i];
        r->hazard = NULL;
        r->dir = NULL;
        if (r != lf_self)
            r->tid = 0;
    }
    if (lf_self && lf_self->usable)
        lf_self->tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_init(&setup_lock, NULL);
    if (lf_quick == QUICK_ON && !quick_register())
        lf_quick = QUICK_OFF;
}

void quick_bias_reset(struct lf_bias *b)
{
    b->owner = b->last = NULL;
    b->revoke = 0;
    b->run = 0;
}

__attribute__((constructor)) static void quick_init(void)
{
    lf_atfork(NULL, NULL, quick_fork_child);
}
