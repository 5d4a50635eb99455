/*
 * ownfd.c - loopfast's own descriptors, kept out of the program's numbers.
 *
 * The kernel gives the lowest free number and programs count on it, so each
 * descriptor loopfast keeps is moved, right after it is made, to the top of
 * the table (docs/design.md, 3.1).  A registry maps each number we hold to
 * the one int that refers to it, so that the program's close(), dup2(),
 * dup3(), close_range() and closefrom() on our numbers behave as on numbers
 * the program does not hold, and never break ours.
 *
 * Rule: the registry changes, our closes and the program's calls that touch
 * a registered number happen under one lock; a number is unregistered only
 * as it is closed (or handed to the program by its dup2), so no number is
 * closed by us after the program got it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define TOP_MAX     65536     /* the kernel's table grows to our highest number */
#define SPAN        16        /* our region grows down by this much when full */
#define CHUNK_BITS  10
#define CHUNK_SIZE  (1 << CHUNK_BITS)
#define CHUNKS      (TOP_MAX >> CHUNK_BITS)

static int **chunks[CHUNKS];  /* number -> the int that holds it, NULL: not ours */
static int held;              /* how many numbers are registered */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int top_cached;        /* min(soft limit, TOP_MAX); 0: ask again */
static int region_floor;      /* our region is [region_floor, top) */

/* ---- the registry ---- */

static void lock_for_fork(void) { lf_lock(&lock); }
static void unlock_after_fork(void) { lf_unlock(&lock); }

static void init_once(void)
{
    lf_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

static int **slot_of(int n, int create)
{
    if (n < 0 || n >= TOP_MAX)
        return NULL;
    int **chunk = __atomic_load_n(&chunks[n >> CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!chunk && create) {
        chunk = calloc(CHUNK_SIZE, sizeof *chunk);
        if (chunk)
            __atomic_store_n(&chunks[n >> CHUNK_BITS], chunk, __ATOMIC_RELEASE);
    }
    return chunk ? &chunk[n & (CHUNK_SIZE - 1)] : NULL;
}

static int *referrer(int n)
{
    int **slot = slot_of(n, 0);
    return slot ? __atomic_load_n(slot, __ATOMIC_ACQUIRE) : NULL;
}

/* Under the lock. */
static int reg_put(int n, int *where)
{
    int **slot = slot_of(n, 1);
    if (!slot)
        return -1;
    if (!__atomic_load_n(slot, __ATOMIC_RELAXED))
        __atomic_add_fetch(&held, 1, __ATOMIC_RELAXED);
    __atomic_store_n(slot, where, __ATOMIC_RELEASE);
    return 0;
}

static void reg_drop(int n)
{
    int **slot = slot_of(n, 0);
    if (slot && __atomic_load_n(slot, __ATOMIC_RELAXED)) {
        __atomic_store_n(slot, NULL, __ATOMIC_RELEASE);
        __atomic_sub_fetch(&held, 1, __ATOMIC_RELAXED);
    }
}

static void take_lock(void)
{
    pthread_once(&once, init_once);
    lf_lock(&lock);
}

/* ---- where our numbers go ---- */

static int table_top(void)
{
    int top = __atomic_load_n(&top_cached, __ATOMIC_RELAXED);
    if (top)
        return top;
    struct rlimit r;
    top = getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < TOP_MAX ? (int)r.rlim_cur : TOP_MAX;
    __atomic_store_n(&region_floor, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&top_cached, top, __ATOMIC_RELAXED);
    return top;
}

void ownfd_limit_changed(void)
{
    __atomic_store_n(&top_cached, 0, __ATOMIC_RELAXED);
}

/* The lowest number our region may reach: it holds at most LOOPFAST_MAX_FDS
 * numbers, by default a quarter of the table, so that the program gets
 * EMFILE no earlier than without loopfast less that many.  A process with
 * more fast connections than fit keeps the others plain (design 3.1). */
static int region_min(int top)
{
    unsigned budget = lf_config.max_fds ? lf_config.max_fds : (unsigned)top / 4;
    return budget >= (unsigned)top ? 0 : top - (int)budget;
}

int ownfd_count(void)
{
    return __atomic_load_n(&held, __ATOMIC_RELAXED);
}

/* More than half of our share of the table is in use: whatever can give
 * a descriptor back soon should (pending.c: a pending client holds its
 * offer's until it takes its answer). */
int ownfd_crowded(void)
{
    int top = table_top();
    return __atomic_load_n(&held, __ATOMIC_RELAXED) > (top - region_min(top)) / 2;
}

/* A copy of fd as high as we may go.  F_DUPFD gives the lowest free number
 * at or above its argument, so it is asked from the floor of our region, a
 * block at the top of the table that grows down by SPAN when full, never to
 * `next`: the program's next number as far as we know (the highest of the
 * fresh descriptors being moved; -1: unknown), nor below region_min.  A
 * fresh descriptor already in the region stays where it is: nothing below
 * it was free. */
static int dup_high(int fd, int cmd, int next)
{
    for (int tries = 0; tries < 64; tries++) {
        int top = table_top(), least = region_min(top);
        int raw = __atomic_load_n(&region_floor, __ATOMIC_RELAXED), lo = raw;
        if (lo <= 0 || lo >= top)
            lo = top - SPAN;
        if (lo < least)
            lo = least;
        if (lo < 3 || lo >= top)
            break;
        if (next >= 0 && fd >= lo && fd < top)
            return fd;
        int n = libc.fcntl(fd, cmd, lo);
        if (n >= 0)
            return n;
        if (errno == EINVAL) {   /* the limit went below lo: ask it again */
            ownfd_limit_changed();
            continue;
        }
        int lower = lo - SPAN < least ? least : lo - SPAN;
        if (errno != EMFILE || lower == lo || lower < 3 || next >= lower)
            break;   /* our share is full, or the program's numbers reach ours */
        __atomic_compare_exchange_n(&region_floor, &raw, lower, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
    }
    errno = EMFILE;
    return -1;
}

/* Closes our low originals, consecutive ones with one close_range. */
static void close_lows(int *lows, int n)
{
    for (int i = 1; i < n; i++)   /* a handful: insertion sort */
        for (int j = i; j > 0 && lows[j - 1] > lows[j]; j--) {
            int t = lows[j];
            lows[j] = lows[j - 1];
            lows[j - 1] = t;
        }
    /* ThreadSanitizer must see every close (libc.c): one by one there. */
    int batch = libc.close_own == libc.close;
    for (int i = 0; i < n;) {
        int j = i;
        while (batch && j + 1 < n && lows[j + 1] == lows[j] + 1)
            j++;
        if (j == i || syscall(SYS_close_range, (unsigned)lows[i], (unsigned)lows[j], 0) < 0)
            for (int k = i; k <= j; k++)
                libc.close_own(lows[k]);
        i = j + 1;
    }
}

int ownfd_adopt(int *const where[], int n, const int *spent, int nspent)
{
    int lows[n + nspent + 1], highs[n + 1], nlows = 0, ok = 1, next = -1;   /* +1: never empty */
    for (int i = 0; i < nspent; i++)
        if (spent[i] > next)
            next = spent[i];
    for (int i = 0; i < n; i++)
        if (*where[i] > next)
            next = *where[i];
    for (int i = 0; i < n; i++) {
        highs[i] = -1;
        if (*where[i] < 0)
            continue;
        if (ok && (highs[i] = dup_high(*where[i], F_DUPFD_CLOEXEC, next)) < 0)
            ok = 0;
        if (highs[i] != *where[i])
            lows[nlows++] = *where[i];
    }
    for (int i = 0; i < nspent; i++)
        if (spent[i] >= 0)
            lows[nlows++] = spent[i];
    int e = errno;
    close_lows(lows, nlows);
    take_lock();
    for (int i = 0; i < n; i++) {
        if (ok && highs[i] >= 0 && reg_put(highs[i], where[i]) < 0)
            ok = 0;
        __atomic_store_n(where[i], highs[i], __ATOMIC_RELEASE);
    }
    if (!ok)
        for (int i = 0; i < n; i++)
            if (*where[i] >= 0) {
                reg_drop(*where[i]);
                libc.close_own(*where[i]);
                *where[i] = -1;
            }
    lf_unlock(&lock);
    errno = ok ? errno : e;
    return ok ? 0 : -1;
}

int ownfd_adopt1(int *where)
{
    return *where < 0 ? -1 : ownfd_adopt((int *const[]){ where }, 1, NULL, 0);
}

int ownfd_new(int *where, int fd)
{
    *where = fd;
    ownfd_adopt1(where);
    return *where;
}

int ownfd_own(int *where)
{
    take_lock();
    int r = reg_put(*where, where);
    lf_unlock(&lock);
    return r;
}

int ownfd_copy(int fd)
{
    return dup_high(fd, F_DUPFD, -1);
}

int ownfd_keep(int *where, int fd)
{
    int n = dup_high(fd, F_DUPFD_CLOEXEC, -1);
    if (n < 0)
        return -1;
    take_lock();
    int r = reg_put(n, where);
    if (r < 0)
        libc.close_own(n);
    __atomic_store_n(where, r < 0 ? -1 : n, __ATOMIC_RELEASE);
    lf_unlock(&lock);
    return r < 0 ? -1 : n;
}

void ownfd_moved(int n, int *to)
{
    if (n < 0 || !referrer(n))
        return;
    take_lock();
    if (referrer(n))
        reg_put(n, to);
    lf_unlock(&lock);
}

void ownfd_close(int *where)
{
    take_lock();
    int n = *where;
    if (n >= 0) {
        if (referrer(n) == where)
            reg_drop(n);
        libc.close_own(n);
        __atomic_store_n(where, -1, __ATOMIC_RELEASE);
    }
    lf_unlock(&lock);
}

/* ---- the program's calls on our numbers ---- */

int ownfd_is_ours(int n)
{
    if (!referrer(n))
        return 0;
    take_lock();   /* we may be closing it right now: wait for the outcome */
    int ours = referrer(n) != NULL;
    lf_unlock(&lock);
    return ours;
}

int ownfd_vacate(int n)
{
    if (!referrer(n))
        return 0;
    take_lock();
    int *where = referrer(n), moved = 0;
    if (where) {
        /* No room elsewhere: ours is lost (the connection breaks), the
         * program's call still does what the kernel's would. */
        int m = dup_high(n, F_DUPFD_CLOEXEC, -1);
        if (m >= 0 && reg_put(m, where) < 0) {
            libc.close_own(m);
            m = -1;
        }
        reg_drop(n);
        __atomic_store_n(where, m, __ATOMIC_RELEASE);
        moved = 1;
    }
    lf_unlock(&lock);
    return moved;
}

void ownfd_vacate_failed(int n)
{
    int e = errno;
    libc.close_own(n);   /* our old copy, which the program's call left there */
    errno = e;
}

int ownfd_close_range(unsigned first, unsigned last, int flags,
                      int (*real)(unsigned, unsigned, int))
{
    if (!__atomic_load_n(&held, __ATOMIC_RELAXED))
        return real(first, last, flags);
    take_lock();
    int r = 0, e = 0;
    unsigned lo = first;
    for (unsigned n = first; n <= last && n < TOP_MAX; n++) {
        if (!chunks[n >> CHUNK_BITS]) {
            n |= CHUNK_SIZE - 1;
            continue;
        }
        if (!referrer((int)n))
            continue;
        if (lo < n && real(lo, n - 1, flags) < 0 && !e)
            r = -1, e = errno;
        lo = n + 1;
    }
    if (lo <= last && real(lo, last, flags) < 0 && !e)
        r = -1, e = errno;
    lf_unlock(&lock);
    if (r < 0)
        errno = e;
    return r;
}

/* ---- inner epolls: an ADD must not fail for want of a descriptor ---- */

static int reserve = -1;      /* an empty epoll, for when no other can be made */
static pid_t reserve_pid;     /* a forked child's copy is its parent's instance */
static int reserve_wanted;    /* the program has epoll sets */
static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;   /* before `lock` */

/* The real epoll_create1: ours must not count as the program's (below). */
static int (*real_epoll_create1)(int);

static int libc_epoll_create1(int flags)
{
    __typeof__(real_epoll_create1) f;
    *(void **)&f = dlsym_next_cached((void **)&real_epoll_create1, "epoll_create1");
    return f(flags);
}

int epoll_make_own(void)
{
    return libc_epoll_create1(EPOLL_CLOEXEC);
}

static void reserve_fill(void)
{
    lf_lock(&reserve_lock);
    if (reserve >= 0 && reserve_pid != lf_pid)
        ownfd_close(&reserve);
    int made = -1;
    if (reserve < 0 && ownfd_new(&made, epoll_make_own()) >= 0) {
        __atomic_store_n(&reserve, made, __ATOMIC_RELAXED);
        ownfd_moved(made, &reserve);
        reserve_pid = lf_pid;
    }
    lf_unlock(&reserve_lock);
}

int ownfd_new_epoll(int *where)
{
    int fd = epoll_make_own();
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reap_now() + spare_drop() > 0)
        fd = epoll_make_own();
    if (ownfd_new(where, fd) >= 0) {
        if (__atomic_load_n(&reserve_wanted, __ATOMIC_RELAXED) &&
            __atomic_load_n(&reserve, __ATOMIC_RELAXED) < 0)
            reserve_fill();
        return 0;
    }
    lf_lock(&reserve_lock);
    int ok = reserve >= 0 && reserve_pid == lf_pid;
    if (ok) {
        *where = reserve;
        ownfd_moved(reserve, where);
        __atomic_store_n(&reserve, -1, __ATOMIC_RELAXED);
    }
    lf_unlock(&reserve_lock);
    return ok ? 0 : (errno = ENOMEM, -1);
}

/* The program made an epoll set: fast sockets may be added to it later,
 * when it may have no descriptor left for us. */
static int program_made_epoll(int r)
{
    fd_number_fresh(r);
    if (r >= 0 && lf_config.mode != LF_MODE_OFF) {
        int e = errno;
        __atomic_store_n(&reserve_wanted, 1, __ATOMIC_RELAXED);
        reserve_fill();
        errno = e;
    }
    return r;
}

LF_EXPORT int epoll_create(int size)
{
    static int (*real)(int);
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "epoll_create");
    return program_made_epoll(real_now(size));
}

LF_EXPORT int epoll_create1(int flags)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return program_made_epoll(libc_epoll_create1(flags));
}

/* ---- the limit ---- */

/* Sanitizer runtimes call setrlimit while they start, before they can run
 * instrumented code: these four are plain system calls with a store. */
#if defined(__has_attribute)
#if __has_attribute(disable_sanitizer_instrumentation)
#define BARE __attribute__((disable_sanitizer_instrumentation))
#endif
#endif
#ifndef BARE
#define BARE
#endif

/* Before this process lowers its descriptor limit to `cur`: when no number
 * below it will be free (the lowest free one is at or above it), our server
 * ends settle their clients' proofs now (handshake_before_fd_limit).  Not
 * inlined: set_limit runs before the sanitizers are set up. */
__attribute__((noinline)) static void before_fd_limit(uint64_t cur)
{
    struct rlimit now;
    if (!__atomic_load_n(&lf_initialised, __ATOMIC_ACQUIRE) || lf_confined ||
        getrlimit(RLIMIT_NOFILE, &now) != 0 || cur >= (uint64_t)now.rlim_cur)
        return;
    int e = errno;
    int lowest = eventfd(0, EFD_CLOEXEC);
    if (lowest >= 0)
        libc.close(lowest);
    if (lowest < 0 || (uint64_t)lowest >= cur)
        handshake_before_fd_limit();
    errno = e;
}

BARE static int set_limit(pid_t pid, int res, const void *nl, void *ol)
{
    if (nl && res == RLIMIT_NOFILE && (pid == 0 || pid == lf_pid))
        before_fd_limit(((const struct rlimit64 *)nl)->rlim_cur);
    long r = syscall(SYS_prlimit64, pid, res, nl, ol);
    if (r == 0 && nl && res == RLIMIT_NOFILE && (pid == 0 || pid == lf_pid))
        __atomic_store_n(&top_cached, 0, __ATOMIC_RELAXED);
    if (r == 0 && nl && res == RLIMIT_AS && (pid == 0 || pid == lf_pid))
        addrspace_limit_changed();
    return (int)r;
}

BARE LF_EXPORT int setrlimit(__rlimit_resource_t res, const struct rlimit *rl)
{
    return set_limit(0, (int)res, rl, NULL);
}

BARE LF_EXPORT int setrlimit64(__rlimit_resource_t res, const struct rlimit64 *rl)
{
    return set_limit(0, (int)res, rl, NULL);
}

BARE LF_EXPORT int prlimit(pid_t pid, __rlimit_resource_t res, const struct rlimit *nl,
                           struct rlimit *ol)
{
    return set_limit(pid, (int)res, nl, ol);
}

BARE LF_EXPORT int prlimit64(pid_t pid, __rlimit_resource_t res, const struct rlimit64 *nl,
                             struct rlimit64 *ol)
{
    return set_limit(pid, (int)res, nl, ol);
}
