/*
 * epoll.c - epoll with loopfast descriptors in the set.
 *
 * Not yet done: registrations pass to the kernel unchanged (see the note in
 * docs/design.md, 6).
 */
#include "internal.h"

void epoll_forget_fd(int fd)
{
    (void)fd;
}

LF_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return libc.epoll_ctl(epfd, op, fd, ev);
}

LF_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return libc.epoll_wait(epfd, ev, max, timeout);
}

LF_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                          const sigset_t *mask)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return libc.epoll_pwait(epfd, ev, max, timeout, mask);
}
