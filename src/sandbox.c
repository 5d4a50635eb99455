/*
 * sandbox.c - a process that confined its own system calls (seccomp).
 *
 * OpenSSH's pre-authentication child, among others, installs a seccomp
 * filter that allows little more than read, write, poll, close and the
 * clock, and kills the process at any other call (audit: sig=31).  The
 * program stays within its list; loopfast must too, or the program dies in
 * a call it made correctly.  A filter cannot be tested without risking
 * that death, so loopfast watches the program install one with prctl() and
 * from then on, in that process and its children:
 *   - makes no new fast connection (no offer, no answer: those need
 *     sockets, netlink, sendmsg);
 *   - answers O_NONBLOCK, SO_RCVTIMEO and SO_SNDTIMEO from what it recorded
 *     just before the filter went on, and from the program's own fcntl /
 *     ioctl calls after (fcntl, getsockopt are no longer asked);
 *   - reads and writes TCP (the bytes before a direction's switch) with
 *     poll, read and write; asks TCP whether the peer is gone with poll;
 *   - no longer asks /proc, kill() or SO_LINGER, and raises no SIGPIPE the
 *     program ignores (raise() is tgkill()) (docs/design.md, 6 and 7).
 * A filter inherited across exec, or installed with syscall(SYS_seccomp)
 * (libseccomp), is not seen (docs/design.md, 10): interposing the variadic
 * syscall() would mean reading arguments the caller never passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "internal.h"

int lf_confined;
static int sigpipe_ignored;   /* when the filter went on */

static void record(int fd)
{
    struct lf_sock *s = fdtable_acquire(fd);
    if (!s)
        return;
    int fl = libc.fcntl(fd, F_GETFL);
    if (fl >= 0)
        __atomic_store_n(&s->nonblock_seen, (fl & O_NONBLOCK) != 0, __ATOMIC_RELAXED);
    s->timeo_confined[0] = sock_timeout_asked_ms(fd, SO_RCVTIMEO);
    s->timeo_confined[1] = sock_timeout_asked_ms(fd, SO_SNDTIMEO);
    if (sock_kind(s) == LF_FAST) {
        handshake_before_confinement(s->conn);   /* a proof needs recvmsg */
        barrier_withdraw(&s->conn->sh->side[s->conn->me].arms_with_mb);   /* membarrier too */
    }
    sock_put(s);
}

/* Before the filter goes on: the last moment every call is still allowed. */
static void confine(void)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    if (lf_confined)
        return;
    fdtable_for_each_fd(0, ~0u, record);
    barrier_withdrawn();
    quick_confine();
    struct sigaction old;
    sigpipe_ignored = sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_IGN;
    lf_config.mode = LF_MODE_OFF;   /* no new fast connection */
    __atomic_store_n(&lf_confined, 1, __ATOMIC_RELEASE);
}

LF_EXPORT int prctl(int option, ...)
{
    static int (*real_prctl)(int, ...);
    __typeof__(real_prctl) real_prctl_now;
    *(void **)&real_prctl_now = dlsym_next_cached((void **)&real_prctl, "prctl");
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long),
                  a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    if (option == PR_SET_SECCOMP)
        confine();
    return real_prctl_now(option, a2, a3, a4, a5);
}

int sandbox_sigpipe_ignored(void)
{
    return sigpipe_ignored;
}

int sandbox_nonblocking(int fd)
{
    struct lf_sock *s = fdtable_acquire(fd);
    int nb = s ? __atomic_load_n(&s->nonblock_seen, __ATOMIC_RELAXED) : 0;
    if (s)
        sock_put(s);
    return nb > 0;
}

int sandbox_timeout_ms(int fd, int optname)
{
    struct lf_sock *s = fdtable_acquire(fd);
    int ms = s ? s->timeo_confined[optname == SO_SNDTIMEO] : -1;
    if (s)
        sock_put(s);
    return ms;
}

/* poll_now under RLIMIT_NOFILE 0, where a poll of one entry is refused. */
static short poll_fitting_now(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    return poll_fitting(&p, 1, 0, 0, NULL, NULL, NULL) > 0 ? p.revents : 0;
}

/* conn_tcp_liveness without recv(MSG_PEEK): the same three answers. */
int sandbox_tcp_liveness(int fd)
{
    short ev = poll_fitting_now(fd, POLLIN | POLLRDHUP);
    if (ev & POLLERR)
        return -ECONNRESET;
    if (ev & (POLLRDHUP | POLLHUP))
        return 0;
    return ev & POLLIN ? -ECONNRESET : -EAGAIN;   /* data after the switch: broken */
}

static struct iovec *first_buffer(const struct msghdr *m)
{
    for (size_t i = 0; i < m->msg_iovlen; i++)
        if (m->msg_iov[i].iov_len)
            return &m->msg_iov[i];
    return NULL;
}

/* A non-blocking receive from TCP: poll, then read() (recvfrom() when flags
 * such as MSG_PEEK ask for it: the call the program's recv() makes).  One
 * buffer: a short read is a read. */
ssize_t sandbox_recv_nowait(int fd, struct msghdr *m, int flags)
{
    struct iovec *b = first_buffer(m);
    m->msg_namelen = 0;
    m->msg_controllen = 0;
    m->msg_flags = 0;
    if (!b)
        return 0;
    flags &= ~(MSG_DONTWAIT | MSG_WAITALL | MSG_CMSG_CLOEXEC);
    if (!(poll_fitting_now(fd, POLLIN) & (POLLIN | POLLHUP | POLLERR))) {
        errno = EAGAIN;
        return -1;
    }
    if (flags)
        return libc.recvfrom(fd, b->iov_base, b->iov_len, flags | MSG_DONTWAIT, NULL, NULL);
    return libc.read(fd, b->iov_base, b->iov_len);
}

/* A send on TCP with write() (sendto() when flags such as MSG_NOSIGNAL
 * matter), one buffer after the other. */
ssize_t sandbox_send(int fd, const struct msghdr *m, int flags)
{
    size_t done = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++) {
        const struct iovec *b = &m->msg_iov[i];
        if (!b->iov_len)
            continue;
        ssize_t n = flags ? libc.sendto(fd, b->iov_base, b->iov_len, flags, NULL, 0)
                          : libc.write(fd, b->iov_base, b->iov_len);
        if (n < 0)
            return done ? (ssize_t)done : -1;
        done += (size_t)n;
        if ((size_t)n < b->iov_len)
            break;
    }
    return (ssize_t)done;
}
