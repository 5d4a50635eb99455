/*
 * zerocopy.c - MSG_ZEROCOPY on a fast connection.  A program that sends with
 * it reuses each buffer only once the send's completion comes on the error
 * queue.  The ring copies the bytes at once, as the kernel does over
 * loopback, so each such send is complete when it returns: its notification
 * is kept here and read as the kernel's would be (docs/design.md, 10).
 * Notification ids count the socket's zerocopy sends, those the kernel
 * numbered on TCP before the switch included.
 */
#include <errno.h>
#include <time.h>   /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <string.h>

#include "internal.h"

void zerocopy_sent(struct lf_sock *s, int fd, int on_ring)
{
    /* without SO_ZEROCOPY the kernel ignores MSG_ZEROCOPY: no id, no notice */
    if (lf_confined || !sockopt_on(fd, SOL_SOCKET, SO_ZEROCOPY))
        return;
    lf_lock(&s->lock);
    uint32_t id = s->zc_next++;
    int first = s->zc_first == id;
    if (!on_ring && first)
        s->zc_first = id + 1;   /* the kernel notifies this one itself */
    struct lf_conn *c = on_ring && first && sock_kind(s) == LF_FAST ? s->conn : NULL;
    if (c)
        __atomic_store_n(&c->zc_pending, 1, __ATOMIC_RELEASE);
    lf_unlock(&s->lock);
    if (c)
        conn_wake_own(c);   /* POLLERR now: epoll sets look at this slot again */
}

/* One notification of ids [lo, hi] in msg's control buffer, as the kernel
 * writes it (ip_recv_error, ipv6_recv_error): the extended error, then an
 * offender address left empty. */
static void fill_notice(int fd, struct msghdr *msg, uint32_t lo, uint32_t hi)
{
    int domain = AF_INET;
    socklen_t len = sizeof domain;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    struct {
        struct sock_extended_err ee;
        struct sockaddr_in6 offender;   /* the larger of the two */
    } notice;
    memset(&notice, 0, sizeof notice);
    notice.ee.ee_origin = SO_EE_ORIGIN_ZEROCOPY;
    notice.ee.ee_code = SO_EE_CODE_ZEROCOPY_COPIED;
    notice.ee.ee_info = lo;
    notice.ee.ee_data = hi;
    size_t size = sizeof notice.ee + (domain == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                         : sizeof(struct sockaddr_in));
    msg->msg_flags = MSG_ERRQUEUE;
    msg->msg_namelen = 0;
    cmsg_put_one(msg, msg->msg_controllen, domain == AF_INET6 ? SOL_IPV6 : SOL_IP,
                 domain == AF_INET6 ? IPV6_RECVERR : IP_RECVERR, &notice, size);
}

ssize_t zerocopy_errqueue(struct lf_sock *s, int fd, struct msghdr *msg, int flags)
{
    ssize_t r = libc.recvmsg(fd, msg, flags);   /* the kernel's own come first */
    if (r >= 0 || errno != EAGAIN)
        return r;
    lf_lock(&s->lock);
    uint32_t lo = s->zc_first, hi = s->zc_next;
    if (lo != hi && !(flags & MSG_PEEK)) {
        s->zc_first = hi;
        if (sock_kind(s) == LF_FAST)
            __atomic_store_n(&s->conn->zc_pending, 0, __ATOMIC_RELEASE);
    }
    lf_unlock(&s->lock);
    if (lo == hi)
        return errno = EAGAIN, -1;
    fill_notice(fd, msg, lo, hi - 1);
    return 0;
}
