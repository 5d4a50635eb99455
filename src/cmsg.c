/*
 * cmsg.c - the control messages a read answered by a ring carries, as the
 * kernel's tcp_recvmsg() attaches them: the receive timestamp (SO_TIMESTAMP,
 * SO_TIMESTAMPNS, old and new layouts) and then TCP_INQ, each cut as
 * put_cmsg() cuts what does not fit (MSG_CTRUNC).  The options are asked of
 * the kernel only once this image has set one of them on some socket, so
 * other programs pay nothing.  The timestamp is the time of the read: a
 * ring does not note when its bytes came (docs/design.md, 10).
 */
#include <linux/time_types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static int ts_used, inq_used;

void cmsg_option_set(int level, int optname)
{
    if (level == SOL_SOCKET && (optname == SO_TIMESTAMP_OLD || optname == SO_TIMESTAMP_NEW ||
                                optname == SO_TIMESTAMPNS_OLD || optname == SO_TIMESTAMPNS_NEW))
        __atomic_store_n(&ts_used, 1, __ATOMIC_RELAXED);
    if (level == IPPROTO_TCP && optname == TCP_INQ)
        __atomic_store_n(&inq_used, 1, __ATOMIC_RELAXED);
}

/* The program's control buffer as it fills: `control` bytes, `used` so far. */
struct cmsg_out {
    struct msghdr *msg;
    size_t control, used;
};

static void cmsg_add(struct cmsg_out *o, int level, int type, const void *data, size_t len)
{
    size_t left = o->control - o->used;
    if (!o->msg->msg_control || left < sizeof(struct cmsghdr)) {
        o->msg->msg_flags |= MSG_CTRUNC;
        return;
    }
    size_t whole = CMSG_LEN(len), cut = whole < left ? whole : left;
    if (cut < whole)
        o->msg->msg_flags |= MSG_CTRUNC;
    struct cmsghdr *cm = (struct cmsghdr *)((char *)o->msg->msg_control + o->used);
    cm->cmsg_level = level;
    cm->cmsg_type = type;
    cm->cmsg_len = cut;
    memcpy(CMSG_DATA(cm), data, cut - CMSG_LEN(0));
    o->used += CMSG_SPACE(len) < left ? CMSG_SPACE(len) : left;
}

void cmsg_put_one(struct msghdr *msg, size_t control, int level, int type, const void *data,
                  size_t len)
{
    struct cmsg_out o = { msg, control, 0 };
    cmsg_add(&o, level, type, data, len);
    msg->msg_controllen = o.used;
}

/* The kernel reports exactly one of the four as on (sock_getsockopt). */
static void add_timestamp(struct cmsg_out *o, int fd)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (sockopt_on(fd, SOL_SOCKET, SO_TIMESTAMPNS_OLD)) {
        cmsg_add(o, SOL_SOCKET, SO_TIMESTAMPNS_OLD, &now, sizeof now);
    } else if (sockopt_on(fd, SOL_SOCKET, SO_TIMESTAMPNS_NEW)) {
        struct __kernel_timespec ts = { now.tv_sec, now.tv_nsec };
        cmsg_add(o, SOL_SOCKET, SO_TIMESTAMPNS_NEW, &ts, sizeof ts);
    } else if (sockopt_on(fd, SOL_SOCKET, SO_TIMESTAMP_OLD)) {
        struct timeval tv = { now.tv_sec, now.tv_nsec / 1000 };
        cmsg_add(o, SOL_SOCKET, SO_TIMESTAMP_OLD, &tv, sizeof tv);
    } else if (sockopt_on(fd, SOL_SOCKET, SO_TIMESTAMP_NEW)) {
        struct __kernel_sock_timeval tv = { now.tv_sec, now.tv_nsec / 1000 };
        cmsg_add(o, SOL_SOCKET, SO_TIMESTAMP_NEW, &tv, sizeof tv);
    }
}

/* What TCP_INQ counts: the bytes still queued, and 1 at the end of the
 * stream when none are, so that the program reads the end. */
static int ring_inq(struct lf_conn *c)
{
    ssize_t n = ring_readable(&c->rx);
    if (n > 0)
        return n > INT32_MAX ? INT32_MAX : (int)n;
    const struct lf_side *peer = conn_peer(c);
    return n == 0 && (__atomic_load_n(&peer->shut_wr, __ATOMIC_ACQUIRE) ||
                      __atomic_load_n(&peer->closed, __ATOMIC_ACQUIRE));
}

void cmsg_after_read(struct lf_sock *s, int fd, struct msghdr *msg, size_t control, ssize_t got)
{
    int ts = __atomic_load_n(&ts_used, __ATOMIC_RELAXED) && got > 0,
        inq = __atomic_load_n(&inq_used, __ATOMIC_RELAXED);
    /* the kernel answered reads that filled the buffer itself */
    if ((!ts && !inq) || msg->msg_controllen || !msg->msg_control || !control ||
        sock_kind(s) != LF_FAST || lf_confined)
        return;
    struct cmsg_out o = { msg, control, 0 };
    if (ts)
        add_timestamp(&o, fd);
    if (inq && sockopt_on(fd, IPPROTO_TCP, TCP_INQ)) {
        int left = ring_inq(s->conn);
        cmsg_add(&o, SOL_TCP, TCP_CM_INQ, &left, sizeof left);
    }
    msg->msg_controllen = o.used;
}
