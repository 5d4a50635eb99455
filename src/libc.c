/*
 * libc.c - the real libc entry points, found once with dlsym(RTLD_NEXT).
 *
 * Everything loopfast does not handle itself ends in one of these, so a
 * descriptor that is not ours sees exactly what plain libc would do.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

struct libc_calls libc;

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
    void *f = dlsym_next("fork");
    __atomic_store_n((void **)&libc.fork, f, __ATOMIC_RELEASE);
}
