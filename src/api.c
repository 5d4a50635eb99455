/*
 * api.c - the public calls: loopfast_ioctl() opts a TCP socket in or out,
 * loopfast_fd_is_fast() tells whether a connection's data is on the rings.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>

#include "internal.h"
#include "loopfast.h"

static int fail(int e)
{
    errno = e;
    return -1;
}

/* 0 when fd is an open socket, else -1 with EBADF or ENOTSOCK: the kernel's
 * own answer to a socket option asked of something else. */
static int check_socket(int fd, int *type)
{
    socklen_t len = sizeof *type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &len);
}

/* IPPROTO_TCP on a stream socket exists only for AF_INET and AF_INET6. */
static int is_tcp(int fd, int type)
{
    int proto;
    socklen_t len = sizeof proto;
    return type == SOCK_STREAM && getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 &&
           proto == IPPROTO_TCP;
}

static int is_connected(int fd, struct lf_sock *s)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    if (s && sock_kind(s) != LF_OPTIN)
        return 1;   /* connect() already ran */
    return getpeername(fd, (struct sockaddr *)&peer, &len) == 0;
}

static int set_optin(int fd, int enable)
{
    struct lf_sock *s = fdtable_acquire(fd);
    int r = 0;
    if (is_connected(fd, s)) {
        r = fail(EISCONN);
    } else if (enable && !s) {
        struct lf_sock *n = sock_new(LF_OPTIN);
        if (!n || fdtable_set(fd, n) < 0)
            r = fail(ENOMEM);
        if (n)
            sock_put(n);
    } else if (!enable && s) {
        fdtable_clear(fd);
    }
    if (s)
        sock_put(s);
    return r;
}

LF_EXPORT int loopfast_ioctl(int fd, unsigned long code, const void *in, size_t in_len,
                             void *out, size_t out_len, size_t *bytes_returned)
{
    (void)out;
    lf_init();
    if (bytes_returned)
        *bytes_returned = 0;
    if (code != LOOPFAST_SIO_LOOPBACK_FAST_PATH)
        return fail(EINVAL);
    if (!in)
        return fail(EFAULT);
    if (in_len < sizeof(int) || out_len != 0)
        return fail(EINVAL);
    int type;
    if (check_socket(fd, &type) < 0)
        return -1;
    if (!is_tcp(fd, type))
        return fail(EINVAL);
    int enable;
    memcpy(&enable, in, sizeof enable);
    return set_optin(fd, enable != 0);
}

LF_EXPORT int loopfast_fd_is_fast(int fd)
{
    lf_init();
    int type;
    if (check_socket(fd, &type) < 0)
        return -1;
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return 0;
    if (sock_kind(s) == LF_PENDING) {
        pthread_mutex_lock(&s->lock);
        if (sock_kind(s) == LF_PENDING)
            handshake_take_answer(s, fd);
        pthread_mutex_unlock(&s->lock);
    }
    int fast = conn_is_fast(s);
    sock_put(s);
    return fast;
}
