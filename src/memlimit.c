/*
 * memlimit.c - how many new ring pages this process may still fault in
 * when its memory cgroup has a limit (docs/design.md, 5: under a memory
 * limit).
 *
 * A ring's pages are shared memory, charged to the cgroup of the process
 * that first writes them, and a page fault past the cgroup's limit is
 * answered by the OOM killer: 64 connections whose reader lagged filled 1
 * MiB rings each, and a process under a 48 MiB limit was killed, where over
 * kernel TCP the same program queued 266 MB of socket buffers (cgroup v1
 * does not charge them; v2 does, and TCP then shrinks its windows).  So a
 * writer under a limit keeps to the pages it already has (ring.c: the
 * window) and takes new ones only from this budget: a share of the
 * cgroup's headroom (its limit less its usage, and a margin left for the
 * program), read again when the budget runs short, at most every
 * REFRESH_NS.  A share, not all of it: the peer, in the same cgroup, takes
 * from the same headroom, and so may other processes.
 * Every level from the process's cgroup up to the controller's root counts:
 * a parent's limit binds its children as their own does, and the nearest
 * cgroup often has none (systemd's scopes under a limited slice).  While
 * no level has a limit, they are looked at again at a new connection at
 * most every RELOOK_NS, so a limit set later (or a move into a limited
 * cgroup) holds for the connections made after it.  Where no cgroup file
 * can be read (nor a path longer than `own` holds), nothing is limited.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define REFRESH_NS (10ull * 1000000)
#define RELOOK_NS (1000ull * 1000000)  /* while no level has a limit */
#define SHARE 4                        /* of the headroom, per refresh */
#define MARGIN_MIN (8ll << 20)         /* left to the program */
#define LEVELS_MAX 8                   /* limited levels followed, nearest first */
#define UNLIMITED (1ll << 60)          /* v1's "none" is a huge number */

int64_t lf_ring_budget;
static int state;                      /* 0: not looked yet; 1: no limit; 2: limited */
static uint64_t looked;                /* coarse clock of the last look (state 1) */
static char own[256];                  /* the process's cgroup's directory */
static size_t root_len;                /* its controller's mount: own's first root_len bytes */
static char limited[LEVELS_MAX][256];  /* the levels with a limit, from own up */
static int levels;
static int v2;                         /* their files: memory.max/current, else v1's */
static uint64_t refreshed;             /* coarse clock of the last refresh */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* A fork while another thread reads the cgroup would leave the child's
 * lock taken for good. */
static void lock_for_fork(void) { lf_lock(&lock); }
static void unlock_after_fork(void) { lf_unlock(&lock); }

__attribute__((constructor)) static void memlimit_init(void)
{
    lf_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
}

static int64_t read_number(const char *dir, const char *file)
{
    char path[320], buf[64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (read_small_file(path, buf, sizeof buf) <= 0 || strncmp(buf, "max", 3) == 0)
        return -1;
    char *end;
    long long v = strtoll(buf, &end, 10);
    return end != buf && v >= 0 ? (int64_t)v : -1;
}

/* The cgroup's memory directory, from /proc/self/cgroup: v2's unified line
 * ("0::/path") or v1's memory controller ("N:...memory...:/path"). */
static int find_dir(void)
{
    char buf[4096];
    if (read_small_file("/proc/self/cgroup", buf, sizeof buf) <= 0)
        return 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *ctrl = c1 + 1, *path = c2 + 1;
        int unified = !*ctrl, memory = !unified && strstr(ctrl, "memory") != NULL;
        /* the path under the controller's mount, else the mount itself: a
         * container without a cgroup namespace sees its own cgroup there
         * under the host's path */
        static const char *const v1_roots[] = { "/sys/fs/cgroup/memory" };
        static const char *const v2_roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        const char *const *roots = memory ? v1_roots : v2_roots;
        int n = !memory && !unified ? 0 : memory ? 1 : 2;
        v2 = unified;
        for (int i = 0; i < n; i++)
            for (int whole = 1; whole >= 0; whole--) {
                snprintf(own, sizeof own, "%s%s", roots[i], whole && strcmp(path, "/") ? path : "");
                root_len = strlen(roots[i]);
                if (read_number(own, v2 ? "memory.current" : "memory.limit_in_bytes") >= 0)
                    return 1;
            }
    }
    return 0;
}

static int64_t read_limit(const char *dir)
{
    int64_t limit = read_number(dir, v2 ? "memory.max" : "memory.limit_in_bytes");
    return limit >= UNLIMITED ? -1 : limit;
}

/* The levels from own up to the root that have a limit (v2's root has no
 * memory.max; v1's says none).  How many. */
static int find_limited(void)
{
    char dir[sizeof own];
    snprintf(dir, sizeof dir, "%s", own);
    levels = 0;
    for (;;) {
        if (levels < LEVELS_MAX && read_limit(dir) >= 0)
            snprintf(limited[levels++], sizeof limited[0], "%s", dir);
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= root_len || !slash || (size_t)(slash - dir) < root_len)
            return levels;
        *slash = 0;
    }
}

/* The least of limit - usage - margin over the limited levels, as a share;
 * -1: none has a limit now. */
static int64_t headroom_share(void)
{
    int64_t least = -1;
    for (int i = 0; i < levels; i++) {
        int64_t limit = read_limit(limited[i]);
        int64_t usage = read_number(limited[i], v2 ? "memory.current" : "memory.usage_in_bytes");
        if (limit < 0 || usage < 0)
            continue;
        int64_t margin = limit / 8 > MARGIN_MIN ? limit / 8 : MARGIN_MIN;
        int64_t room = limit - usage - margin;
        room = room > 0 ? room / SHARE : 0;
        if (least < 0 || room < least)
            least = room;
    }
    return least;
}

/* Looks for limits (again); lock held. */
static void look_locked(uint64_t now)
{
    int64_t share = find_dir() && find_limited() ? headroom_share() : -1;
    looked = refreshed = now;
    if (share < 0) {
        state = 1;
        return;
    }
    __atomic_store_n(&lf_ring_budget, share, __ATOMIC_RELAXED);
    state = 2;
}

int64_t *memlimit_budget(void)
{
    if (lf_confined)
        return NULL;   /* /proc and /sys may be out of reach: as before it was confined */
    lf_lock(&lock);
    uint64_t now = coarse_ns();
    if (!state || (state == 1 && now - looked >= RELOOK_NS))
        look_locked(now);
    int limit = state == 2;
    lf_unlock(&lock);
    return limit ? &lf_ring_budget : NULL;
}

/* Reads the headroom again if due; lock held. */
static void refresh_locked(void)
{
    uint64_t now = coarse_ns();
    if (lf_confined || now - refreshed < REFRESH_NS)
        return;
    refreshed = now;
    int64_t share = headroom_share();
    /* a limit lifted since: the writers that took this budget grow freely */
    __atomic_store_n(&lf_ring_budget, share >= 0 ? share : UNLIMITED, __ATOMIC_RELAXED);
}

uint64_t memlimit_take(int64_t *budget, uint64_t want, int dry)
{
    int64_t have = __atomic_load_n(budget, __ATOMIC_RELAXED);
    if (have < (int64_t)want && budget == &lf_ring_budget) {
        lf_lock(&lock);
        refresh_locked();
        lf_unlock(&lock);
        have = __atomic_load_n(budget, __ATOMIC_RELAXED);
    }
    for (;;) {
        int64_t page = 4096, grant = have < (int64_t)want ? have / page * page : (int64_t)want;
        if (grant <= 0)
            return 0;
        if (dry || __atomic_compare_exchange_n(budget, &have, have - grant, 0, __ATOMIC_RELAXED,
                                               __ATOMIC_RELAXED))
            return (uint64_t)grant;
    }
}
