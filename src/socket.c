/*
 * socket.c - one receive or send on a descriptor loopfast tracks, routed by
 * its kind: the kernel, the pending client, or the connection's rings.
 *
 * MSG_WAITALL and the all-or-nothing send of a blocking socket are done here,
 * once for every kind, because a connection may switch to its rings in the
 * middle of one such call.
 */
#include <errno.h>

#include "internal.h"

#define MAX_IOV 64

static ssize_t recv_once(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    switch (sock_kind(s)) {
    case LF_PENDING:
        return pending_io(s, fd, msg, flags, 0);
    case LF_FAST:
        return conn_recv(s, fd, msg, flags);
    default:
        return libc.recvmsg(fd, msg, flags);
    }
}

static ssize_t send_once(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    switch (sock_kind(s)) {
    case LF_PENDING:
        return pending_io(s, fd, (struct msghdr *)msg, flags, 1);
    case LF_FAST:
        return conn_send(s, fd, msg, flags);
    default:
        return libc.sendmsg(fd, msg, flags);
    }
}

/* msg with its first `done` bytes skipped, in `iov`. */
static struct msghdr skip_bytes(const struct msghdr *msg, size_t done, struct iovec *iov)
{
    struct msghdr m = *msg;
    size_t k = 0;
    for (size_t i = 0; i < msg->msg_iovlen && k < MAX_IOV; i++) {
        if (done >= msg->msg_iov[i].iov_len) {
            done -= msg->msg_iov[i].iov_len;
            continue;
        }
        iov[k].iov_base = (char *)msg->msg_iov[i].iov_base + done;
        iov[k++].iov_len = msg->msg_iov[i].iov_len - done;
        done = 0;
    }
    m.msg_iov = iov;
    m.msg_iovlen = k;
    return m;
}

static size_t msg_len(const struct msghdr *msg)
{
    size_t t = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        t += msg->msg_iov[i].iov_len;
    return t;
}

ssize_t sock_recv(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    int kind = sock_kind(s);
    if ((kind != LF_FAST && kind != LF_PENDING) || !(flags & MSG_WAITALL) || (flags & MSG_PEEK))
        return recv_once(s, fd, msg, flags);
    size_t want = msg_len(msg), done = 0;
    while (done < want) {
        struct iovec iov[MAX_IOV];
        struct msghdr m = skip_bytes(msg, done, iov);
        ssize_t r = recv_once(s, fd, &m, flags & ~MSG_WAITALL);
        if (r <= 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

ssize_t sock_send(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    int kind = sock_kind(s);
    ssize_t r = send_once(s, fd, msg, flags);
    size_t want = msg_len(msg);
    if ((kind != LF_FAST && kind != LF_PENDING) || r <= 0 || (size_t)r == want || (flags & MSG_DONTWAIT) || fd_nonblocking(fd))
        return r;
    /* A blocking socket sends everything: the rest may go on the ring now. */
    size_t done = (size_t)r;
    while (done < want) {
        struct iovec iov[MAX_IOV];
        struct msghdr m = skip_bytes(msg, done, iov);
        r = send_once(s, fd, &m, flags);
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}
