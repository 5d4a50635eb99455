/*
 * sockdiag.c - asks the kernel who owns a TCP socket, by its 4-tuple.
 *
 * This is the kernel's word (what `ss` uses), unlike a name anyone can bind,
 * so the handshake trusts it: the uid, inode and cookie of the socket at the
 * other end of our connection.  One exact lookup, no dump.
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* An IPv6 address that is a mapped IPv4 one becomes plain IPv4, because the
 * kernel keeps such connections in the IPv4 tables. */
static int to_diag_addr(const struct sockaddr_storage *ss, uint32_t addr[4], uint16_t *port)
{
    memset(addr, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        addr[0] = in->sin_addr.s_addr;
        *port = in->sin_port;
        return AF_INET;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        *port = in6->sin6_port;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(&addr[0], &in6->sin6_addr.s6_addr[12], 4);
            return AF_INET;
        }
        memcpy(addr, &in6->sin6_addr, 16);
        return AF_INET6;
    }
    return -1;
}

static int diag_request(int nl, int family, const uint32_t src[4], uint16_t sport,
                        const uint32_t dst[4], uint16_t dport)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = (uint8_t)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.id.idiag_sport = sport;
    msg.req.id.idiag_dport = dport;
    memcpy(msg.req.id.idiag_src, src, 16);
    memcpy(msg.req.id.idiag_dst, dst, 16);
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    return libc.sendto(nl, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) ==
                   (ssize_t)sizeof msg ? 0 : -1;
}

static int diag_reply(int nl, struct diag_result *out)
{
    long buf[1024];
    ssize_t n = libc.recv(nl, buf, sizeof buf, 0);
    if (n < 0)
        return -1;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
         h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
            h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            out->state = m->idiag_state;
            out->uid = m->idiag_uid;
            out->inode = m->idiag_inode;
            out->cookie = m->id.idiag_cookie[0] | (uint64_t)m->id.idiag_cookie[1] << 32;
            if (out->inode)
                return 0;
            errno = ENOENT;   /* an orphan (its owner closed it): nobody to answer */
            return -1;
        }
        if (h->nlmsg_type == NLMSG_ERROR &&
            h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
            if (((const struct nlmsgerr *)NLMSG_DATA(h))->error == -ENOENT)
                out->state = 0;   /* the kernel's word: no such socket */
            break;
        }
        if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE)
            break;
    }
    errno = ENOENT;
    return -1;
}

/* One netlink socket per process, kept: making one per lookup costs two
 * system calls on every connection set-up, and one per thread leaked one
 * descriptor per short-lived accepting thread.  Lookups take turns on it (a
 * reply is read by the thread that asked).  A forked child closes its copy
 * at once and makes its own when it needs one, so that two processes never
 * read each other's replies; the lock is held across fork() so that the
 * child's copy of it is free. */
static pthread_mutex_t diag_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t diag_once = PTHREAD_ONCE_INIT;
static int diag_fd = -1;

static void diag_before_fork(void) { lf_lock(&diag_lock); }
static void diag_after_fork(void) { lf_unlock(&diag_lock); }

static int diag_inherited;   /* a forked child's copy: the parent's socket */

/* In a forked child: its copy is closed at its first lookup, not here, where
 * other libraries' fork handlers may still hold their locks. */
static void diag_in_child(void)
{
    diag_inherited = diag_fd >= 0;
    lf_unlock(&diag_lock);   /* the forking thread took it (diag_before_fork) */
}

static void diag_setup(void)
{
    lf_atfork(diag_before_fork, diag_after_fork, diag_in_child);
}

static int diag_socket(void)
{
    if (diag_inherited) {
        ownfd_close(&diag_fd);   /* our copy only: the parent's stays open */
        diag_inherited = 0;
    }
    if (diag_fd < 0)
        ownfd_new(&diag_fd, socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    return diag_fd;
}

int sockdiag_lookup(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                    struct diag_result *out)
{
    uint32_t s[4], d[4];
    uint16_t sport, dport;
    out->state = -1;
    int family = to_diag_addr(src, s, &sport);
    if (family < 0 || to_diag_addr(dst, d, &dport) != family) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (lf_confined) {   /* a sandbox may kill a process for socket() (sandbox.c) */
        errno = EPERM;
        return -1;
    }
    pthread_once(&diag_once, diag_setup);
    int old = nocancel_begin();   /* its sendto and recv, under diag_lock (design 6.2) */
    lf_lock(&diag_lock);
    int nl = diag_socket(), rc = -1;
    if (nl >= 0) {
        rc = diag_request(nl, family, s, sport, d, dport);
        if (rc == 0)
            rc = diag_reply(nl, out);
        if (rc < 0 && errno != ENOENT) {   /* a broken socket: start afresh next time */
            int e = errno;
            ownfd_close(&diag_fd);
            errno = e;
        }
    }
    int e = errno;
    lf_unlock(&diag_lock);
    nocancel_end(old);
    errno = e;
    return rc;
}
