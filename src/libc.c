/*
 * libc.c - the real libc entry points, found once with dlsym(RTLD_NEXT).
 *
 * Everything loopfast does not handle itself ends in one of these, so a
 * descriptor that is not ours sees exactly what plain libc would do.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LOOPFAST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(LOOPFAST_TSAN)
#define LOOPFAST_TSAN 1
#endif

struct libc_calls libc;

/* Set while loopfast closes a descriptor of its own: under TSan that close
 * ends in ours (below), which then passes it straight through, as it must
 * (the caller may hold a lock ours would take). */
static __thread int closing_own;

int libc_closing_own(void)
{
    return closing_own;
}

static int (*close_for_own)(int);

/* loopfast closes its own descriptors under its locks (ownfd.c). */
static int close_own_nocancel(int fd)
{
    int old = nocancel_begin(), r = close_for_own(fd);
    nocancel_end(old);
    return r;
}

#if LOOPFAST_TSAN
static int (*tsan_close)(int);

static int close_marked(int fd)
{
    closing_own = 1;
    int r = tsan_close(fd);
    closing_own = 0;
    return r;
}
#endif

void *dlsym_next(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p)
        p = dlsym(RTLD_DEFAULT, name);
    if (!p) {
        fprintf(stderr, "loopfast: cannot find libc's %s(); is libc dynamically linked?\n", name);
        abort();
    }
    return p;
}

ssize_t read_small_file(const char *path, char *buf, size_t size)
{
    int old = nocancel_begin();   /* callers may hold locks (a spin's look at the load) */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? libc.read(fd, buf, size - 1) : -1;
    if (fd >= 0)
        libc.close_own(fd);
    nocancel_end(old);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* /proc/<pid>/stat of a live process (kill(pid, 0) finds it), read into
 * buf: what follows the command name (which may hold spaces and
 * parentheses), from the space before its state; NULL when gone (*gone
 * set) or unreadable. */
const char *proc_stat_fields(pid_t pid, char *buf, size_t size, int *gone)
{
    *gone = 0;
    if (kill(pid, 0) < 0) {
        *gone = errno == ESRCH;
        return NULL;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small_file(path, buf, size) <= 0)
        return NULL;
    const char *end = strrchr(buf, ')');
    return end ? end + 1 : NULL;
}

/* A lazily resolved entry point, shared by threads: loaded and stored
 * atomically (two threads may both resolve it; they find the same). */
void *dlsym_next_cached(void **slot, const char *name)
{
    void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!p) {
        p = dlsym_next(name);
        __atomic_store_n(slot, p, __ATOMIC_RELEASE);
    }
    return p;
}

#define RESOLVE(name) (*(void **)&libc.name = dlsym_next(#name))

void libc_init(void)
{
    if (__atomic_load_n(&libc.fork, __ATOMIC_ACQUIRE))
        return;
    RESOLVE(read); RESOLVE(write); RESOLVE(readv); RESOLVE(writev);
    RESOLVE(recv); RESOLVE(send); RESOLVE(recvfrom); RESOLVE(sendto);
    RESOLVE(recvmsg); RESOLVE(sendmsg);
    RESOLVE(connect); RESOLVE(accept); RESOLVE(accept4);
    RESOLVE(close); RESOLVE(shutdown);
    RESOLVE(dup); RESOLVE(dup2); RESOLVE(dup3); RESOLVE(fcntl);
    RESOLVE(poll); RESOLVE(ppoll); RESOLVE(select); RESOLVE(pselect);
    RESOLVE(epoll_ctl); RESOLVE(epoll_wait); RESOLVE(epoll_pwait); RESOLVE(ioctl);
    close_for_own = libc.close;
#if LOOPFAST_TSAN
    /* ThreadSanitizer sees the descriptors we make (our calls go through its
     * interceptors) and must see them closed, or a number closed in one
     * thread and made again in another looks like a race.  Its close() ends
     * in ours, which lets a descriptor that is not a tracked socket through. */
    *(void **)&tsan_close = dlsym(RTLD_DEFAULT, "close");
    close_for_own = close_marked;
#endif
    libc.close_own = close_own_nocancel;
    void *f = dlsym_next("fork");
    __atomic_store_n((void **)&libc.fork, f, __ATOMIC_RELEASE);
}
