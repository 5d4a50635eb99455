/*
 * api.c - the public calls: loopfast_ioctl() opts a TCP socket in or out,
 * loopfast_fd_is_fast() tells whether a connection's data is on the rings.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
static int check_socket(int fd)
{
    int type;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
}

/* The TCP state of fd in one call: only a TCP socket answers TCP_INFO (UDP,
 * AF_UNIX and raw sockets refuse it).  -1 with EBADF, ENOTSOCK or EINVAL. */
static int tcp_state(int fd)
{
    int state = tcp_info_state(fd);
    return state >= 0 ? state : fail(errno == EBADF || errno == ENOTSOCK ? errno : EINVAL);
}

static int is_connected(int state, struct lf_sock *s)
{
    if (s && sock_kind(s) != LF_OPTIN)
        return 1;   /* connect() already ran */
    return state != TCP_CLOSE && state != TCP_LISTEN;
}

static int set_optin(int fd, int state, int enable)
{
    struct lf_sock *s = fdtable_acquire(fd);
    int r = 0;
    if (is_connected(state, s)) {
        r = fail(EISCONN);
    } else if (enable && !s) {
        struct lf_sock *n = sock_new(LF_OPTIN);
        if (n)
            bufsize_at_optin(n, fd);
        if (n && fd_made_here_unshared(fd))   /* its flags may be answered from memory */
            sock_born_here(n, fd_nonblocking(fd), fd_made_here_options(fd));
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
    int state = tcp_state(fd);
    if (state < 0)
        return -1;
    int enable;
    memcpy(&enable, in, sizeof enable);
    return set_optin(fd, state, enable != 0);
}

LF_EXPORT int loopfast_fd_is_fast(int fd)
{
    lf_init();
    if (check_socket(fd) < 0)
        return -1;
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return 0;
    if (sock_kind(s) == LF_PENDING) {
        lf_lock(&s->lock);
        if (sock_kind(s) == LF_PENDING)
            handshake_take_answer(s, fd);
        lf_unlock(&s->lock);
    }
    int fast = conn_is_fast(s);
    sock_put(s);
    return fast;
}
