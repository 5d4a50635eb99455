/*
 * handoff.c - a fast connection sent to another process with SCM_RIGHTS
 * takes its rings along (docs/design.md, 4.4 "Sent to another process").
 *
 * An acceptor that reads from a connection before it hands it to a worker
 * sends a socket whose peer may write its ring already: the worker's copy
 * alone is a TCP socket those bytes never reach.  So the sender describes
 * each fast end as for an exec (exec.c), puts the copies of its region's
 * descriptors and a sealed memfd holding the description after the
 * program's own descriptors, and the receiver's recvmsg takes them out
 * again before the program sees the message.  Only a receiver that can
 * take them gets them: our uid, libloopfast mapped.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define HANDOFF_CONNS 4                        /* fast ends carried in one message */
#define HANDOFF_FDS (HANDOFF_CONNS * 3 + 1)    /* memfd and doorbells each, the description */
#define HANDOFF_NAME "loopfast-handoff"
#define HANDOFF_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
#define HANDOFF_TEXT_MAX 4096

/* ---- the sender ---- */

/* Does the process at the other end of unix socket fd run libloopfast
 * under our uid?  Answers are kept a second: an acceptor hands off often,
 * and its workers' maps are long. */
#define SEEN_PIDS 8
static struct { pid_t pid; int yes; uint64_t at; } seen[SEEN_PIDS];
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static int maps_name_loopfast(pid_t pid)
{
    char path[64], buf[4096 + 16];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    int m = open(path, O_RDONLY | O_CLOEXEC);
    if (m < 0)
        return 0;
    size_t carry = 0;
    int yes = 0;
    for (ssize_t n; !yes && (n = read(m, buf + carry, 4096)) > 0;) {
        size_t len = carry + (size_t)n;
        buf[len] = 0;
        yes = memmem(buf, len, "libloopfast", 11) != NULL;
        carry = len < 10 ? len : 10;   /* a name across two reads */
        memmove(buf, buf + len - carry, carry);
    }
    close(m);
    return yes;
}

static int receiver_takes_rings(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    int domain = 0;
    socklen_t dlen = sizeof domain;
    if (lf_confined || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 ||
        domain != AF_UNIX || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
        cr.pid <= 0 || cr.uid != geteuid() || prctl(PR_GET_DUMPABLE) != 1)
        return 0;
    uint64_t now = monotonic_ns();
    lf_lock(&seen_lock);
    int yes = -1;
    for (int i = 0; i < SEEN_PIDS; i++)
        if (seen[i].pid == cr.pid && now - seen[i].at < 1000000000ull)
            yes = seen[i].yes;
    lf_unlock(&seen_lock);
    if (yes >= 0)
        return yes;
    yes = maps_name_loopfast(cr.pid);
    lf_lock(&seen_lock);
    int oldest = 0;
    for (int i = 1; i < SEEN_PIDS; i++)
        if (seen[i].at < seen[oldest].at)
            oldest = i;
    seen[oldest].pid = cr.pid;
    seen[oldest].yes = yes;
    seen[oldest].at = now;
    lf_unlock(&seen_lock);
    return yes;
}

/* The descriptors a message carries, in the order the receiver gets them
 * (the kernel makes one list of all its SCM_RIGHTS); -1: more than max. */
int handoff_message_fds(const struct msghdr *msg, int *fds, int max)
{
    int n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            if (n >= max)
                return -1;
            memcpy(&fds[n++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    }
    return n;
}

/* A fast end whose rings the receiver needs: a client that took its
 * answer, or a server end whose client proved itself (asked now: one that
 * set `ready` queued its proof first).  An unproved one is revoked by
 * pending_hand_off and stays on TCP. */
static int carries_rings(int fd)
{
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return 0;
    int yes = sock_kind(s) == LF_FAST && s->conn->link;
    if (yes && s->conn->me == LF_SERVER) {
        handshake_peer_line(s->conn);
        yes = __atomic_load_n(&s->conn->peer_line, __ATOMIC_ACQUIRE) != NULL;
    }
    sock_put(s);
    return yes;
}

/* The description in a sealed memfd: "loopfast-handoff 1 K N\n" (the
 * program's descriptors, all of them) and exec's items. */
static int description_memfd(const char *text, int nprog, int total)
{
    char head[64];
    int h = snprintf(head, sizeof head, "%s 1 %d %d\n", HANDOFF_NAME, nprog, total);
    size_t len = strlen(text);
    if (len > HANDOFF_TEXT_MAX)
        return -1;
    int m = memfd_create(HANDOFF_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (m < 0)
        return -1;
    if (write(m, head, (size_t)h) != h || write(m, text, len) != (ssize_t)len ||
        fcntl(m, F_ADD_SEALS, HANDOFF_SEALS) < 0) {
        close(m);
        return -1;
    }
    return m;
}

/* The program's message with ours appended as one more SCM_RIGHTS. */
static ssize_t send_with(int fd, const struct msghdr *msg, int flags, const int *ours, int n)
{
    size_t at = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c))
        at = (size_t)((char *)c - (char *)msg->msg_control) + CMSG_ALIGN(c->cmsg_len);
    size_t size = at + CMSG_SPACE((size_t)n * sizeof(int));
    char *control = calloc(1, size);
    if (!control)
        return libc.sendmsg(fd, msg, flags);
    memcpy(control, msg->msg_control, at < msg->msg_controllen ? at : msg->msg_controllen);
    struct cmsghdr *c = (struct cmsghdr *)(control + at);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
    memcpy(CMSG_DATA(c), ours, (size_t)n * sizeof(int));
    struct msghdr m = *msg;
    m.msg_control = control;
    m.msg_controllen = size;
    ssize_t r = libc.sendmsg(fd, &m, flags);
    int e = errno;
    free(control);
    errno = e;
    return r;
}

ssize_t handoff_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    int fds[SCM_MAX_FD], carried[HANDOFF_CONNS], ncarried = 0;
    int nprog = handoff_message_fds(msg, fds, SCM_MAX_FD);
    for (int i = 0; i < nprog && ncarried >= 0; i++) {
        if (!carries_rings(fds[i]))
            continue;
        if (ncarried == HANDOFF_CONNS)
            ncarried = -1;   /* too many for one message: none carried */
        else
            carried[ncarried++] = i;
    }
    pending_hand_off_fds(fds, nprog);   /* the others stay on TCP */
    if (ncarried <= 0 || !receiver_takes_rings(fd))
        return libc.sendmsg(fd, msg, flags);
    struct export *x = exec_handoff_new(nprog);
    for (int i = 0; x && i < ncarried; i++)
        exec_handoff_add(x, carried[i], fds[carried[i]]);
    const int *ours = NULL;
    int nours = x ? exec_handoff_fds(x, &ours) : 0;
    const char *text = x ? exec_handoff_text(x) : NULL;
    int m = text && nours < HANDOFF_FDS && nprog + nours + 1 <= SCM_MAX_FD
                ? description_memfd(text, nprog, nprog + nours + 1)
                : -1;
    if (m < 0) {
        if (x)
            exec_handoff_end(x, 0);
        return libc.sendmsg(fd, msg, flags);
    }
    int all[HANDOFF_FDS];   /* three of ours an end (no channel), the description */
    memcpy(all, ours, (size_t)nours * sizeof(int));
    all[nours] = m;
    ssize_t r = send_with(fd, msg, flags, all, nours + 1);
    int e = errno;
    exec_handoff_end(x, r >= 0);   /* our copies: the message holds its own */
    close(m);
    errno = e;
    return r;
}

/* ---- the receiver ---- */

/* Is fd the description a sender of ours put last?  Its text, read. */
static char *description_of(int fd, int *nprog, int *total)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > HANDOFF_TEXT_MAX + 64 || fcntl(fd, F_GET_SEALS) != HANDOFF_SEALS)
        return NULL;
    char *text = malloc((size_t)st.st_size + 1);
    if (!text)
        return NULL;
    ssize_t n = pread(fd, text, (size_t)st.st_size, 0);
    int used = 0;
    if (n != st.st_size) {
        free(text);
        return NULL;
    }
    text[n] = 0;
    if (sscanf(text, HANDOFF_NAME " 1 %d %d\n%n", nprog, total, &used) != 2 || used <= 0) {
        free(text);
        return NULL;
    }
    memmove(text, text + used, (size_t)n - (size_t)used + 1);
    return text;
}

/* The description among a message's n descriptors, if a sender of ours
 * put one last: its text, and how many before ours are the program's. */
static char *ours_in(const int *fds, int n, int *nprog)
{
    int total;
    char *text = n > 0 ? description_of(fds[n - 1], nprog, &total) : NULL;
    if (text && (total != n || *nprog < 0 || *nprog >= n)) {
        free(text);
        return NULL;   /* not what it says: the program's */
    }
    return text;
}

/* Ours: each fast end whose socket the program gets (`given`) imported,
 * not on MSG_PEEK; the rest of ours closed. */
static void take_ours(char *text, const int *fds, int n, int nprog, int given, int flags)
{
    unsigned char taken[SCM_MAX_FD] = { 0 };
    if (!(flags & MSG_PEEK) && !lf_confined)
        exec_handoff_import(text, fds, n, nprog, given, taken);
    for (int i = nprog; i < n; i++)
        if (!taken[i])
            libc.close_own(fds[i]);
}

/* The kernel's truncation for a control buffer of `room` bytes: as many
 * descriptors as fit (the others closed), a header and what fits of any
 * other message, MSG_CTRUNC when anything was left out. */
static size_t copy_control(struct msghdr *msg, const struct msghdr *got, const int *fds,
                           int nprog, int *given)
{
    *given = 0;
    size_t room = msg->msg_controllen, used = 0;
    char *out = msg->msg_control;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)got); c;
         c = CMSG_NXTHDR((struct msghdr *)got, c)) {
        size_t left = room > used ? room - used : 0;
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fit = left > sizeof(struct cmsghdr) ? (int)((left - CMSG_LEN(0)) / sizeof(int)) : 0;
            int give = nprog < fit ? nprog : fit;
            for (int i = give; i < nprog; i++)
                libc.close(fds[i]);   /* the kernel would not have installed them */
            if (give < nprog)
                msg->msg_flags |= MSG_CTRUNC;
            *given = give;
            if (give == 0)
                continue;
            struct cmsghdr h = { .cmsg_len = CMSG_LEN((size_t)give * sizeof(int)),
                                 .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS };
            memcpy(out + used, &h, sizeof h);
            memcpy(out + used + CMSG_LEN(0), fds, (size_t)give * sizeof(int));
            size_t space = CMSG_SPACE((size_t)give * sizeof(int));
            used += space < left ? space : left;
            continue;
        }
        if (left < sizeof(struct cmsghdr)) {
            msg->msg_flags |= MSG_CTRUNC;
            break;
        }
        size_t len = c->cmsg_len < left ? c->cmsg_len : left;
        if (len < c->cmsg_len)
            msg->msg_flags |= MSG_CTRUNC;
        memcpy(out + used, c, len);
        ((struct cmsghdr *)(void *)(out + used))->cmsg_len = len;
        used += CMSG_ALIGN(len) < left ? CMSG_ALIGN(len) : left;
    }
    return used;
}

/* A listening TCP socket another process sent (node's cluster workers
 * under NODE_CLUSTER_SCHED_POLICY=none, HAProxy's listeners passed to its
 * reloaded self, Python's send_fds) is answered on as one made here, when
 * every TCP socket is loopfast's (LOOPFAST_MODE=all): unknown, it gave only
 * plain connections.  So is one not listening yet, as socket() would have
 * made it: node's primary sends its workers a bound socket, and the first
 * worker's listen() makes it a listener (that worker's connections, a
 * quarter of them, stayed plain).  Not one connecting or connected: its
 * connection was made past us.  Its sender holds it too: never its
 * process's alone (interpose.c, listener_alone). */
static void adopt_listeners(const int *fds, int n)
{
    if (lf_config.mode != LF_MODE_ALL)
        return;
    for (int i = 0; i < n; i++) {
        int domain = 0, protocol = 0;
        socklen_t len = sizeof domain;
        int state = tcp_info_state(fds[i]);
        if ((state != TCP_LISTEN && state != TCP_CLOSE) ||
            getsockopt(fds[i], SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
            (domain != AF_INET && domain != AF_INET6) ||
            getsockopt(fds[i], SOL_SOCKET, SO_PROTOCOL, &protocol, &len) < 0 ||
            protocol != IPPROTO_TCP)
            continue;
        fd_number_fresh(fds[i]);   /* a new number: whatever we kept under it is stale */
        struct lf_sock *l = sock_new(LF_OPTIN);
        if (!l)
            continue;
        l->born_forks--;   /* older than our last fork: shared */
        fdtable_set(fds[i], l);
        sock_put(l);
    }
}

ssize_t handoff_recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (!msg || !msg->msg_control || msg->msg_controllen < CMSG_LEN(sizeof(int)))
        return libc.recvmsg(fd, msg, flags);
    size_t size = msg->msg_controllen + CMSG_SPACE(HANDOFF_FDS * sizeof(int));
    _Alignas(struct cmsghdr) char small[1024];
    char *control = size <= sizeof small ? small : malloc(size);
    if (!control)
        return libc.recvmsg(fd, msg, flags);
    struct msghdr got = *msg;
    got.msg_control = control;
    got.msg_controllen = size;
    ssize_t r = libc.recvmsg(fd, &got, flags);
    int e = errno;
    if (r >= 0) {
        int fds[SCM_MAX_FD], given;
        int n = handoff_message_fds(&got, fds, SCM_MAX_FD);
        n = n < 0 ? 0 : n;
        int nprog = n;
        char *text = ours_in(fds, n, &nprog);
        msg->msg_namelen = got.msg_namelen;
        msg->msg_flags = got.msg_flags;
        msg->msg_controllen = copy_control(msg, &got, fds, nprog, &given);
        if (text)
            take_ours(text, fds, n, nprog, given, flags);
        adopt_listeners(fds, given);
        free(text);
    }
    if (control != small)
        free(control);
    errno = e;
    return r;
}
