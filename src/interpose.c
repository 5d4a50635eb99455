/*
 * interpose.c - every libc entry point loopfast replaces, in one place.
 *
 * Each one looks the descriptor up in the fd table: not ours means straight
 * to libc, with nothing else done; ours goes to socket.c, which picks the
 * kernel, the pending client or the rings by the descriptor's kind.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <linux/close_range.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <linux/sockios.h>
#include <limits.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

int lf_initialised;
pid_t lf_pid;   /* getpid() is a system call: kept here, renewed in a forked child */

static void renew_pid(void)
{
    lf_pid = getpid();
}

__attribute__((constructor)) void lf_init(void)
{
    if (__atomic_load_n(&lf_initialised, __ATOMIC_ACQUIRE))
        return;
    libc_init();
    config_init();
    renew_pid();
    barrier_register();
    lf_atfork(NULL, NULL, renew_pid);
    lf_atfork(NULL, NULL, barrier_register);   /* a child's own registration */
    /* every fork through libc, also those inside it past our fork() (daemon()) */
    lf_atfork(shares_bump, NULL, NULL);
    __atomic_store_n(&lf_initialised, 1, __ATOMIC_RELEASE);
    exec_import();
}

/* Looks fd up; NULL means "not ours, call libc". */
static struct lf_sock *ours(int fd)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    return fdtable_acquire(fd);
}

/* The same, for one data call (see call_begin).  Each of these calls is a
 * cancellation point of libc's, which acts on a pending cancellation
 * before it does anything; ours may take bytes from the ring without a
 * system call, so it looks first (tests/cancel_pending.c).  Only with
 * threads: a process cancels itself with them alone, and 2 ns a call are
 * a tenth of a 64 B write. */
static inline __attribute__((always_inline)) struct lf_sock *ours_for_call(int fd)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    if (!__libc_single_threaded)
        pthread_testcancel();
    return call_begin(fd);
}

/* A thread's read or write that only copies, made under a hazard instead
 * of a reference (quick.c): CONN_DECLINED when it is not that (or the
 * thread makes no quick calls), and the call is then made the ordinary way. */
static __attribute__((noinline)) ssize_t quick_call_threaded(int fd, void *buf, size_t len,
                                                             int flags, int for_write)
{
    pthread_testcancel();
    ssize_t r = CONN_DECLINED;
    struct lf_sock *s;
    signals_hold();   /* a handler's call would reuse the record's words */
    if (fdtable_quick_take(fd, &s)) {
        r = for_write ? conn_write_fast(s, buf, len, flags) : sock_recv_copy(s, buf, len, flags);
        quick_hazard_drop();
    }
    signals_release();
    if (r < 0 && r != CONN_DECLINED) {
        errno = (int)-r;
        r = -1;
    }
    return r;
}

/* Inline: a process without threads passes it with one test (it cost a
 * call and its frame on every read and write). */
static inline __attribute__((always_inline)) ssize_t quick_call(int fd, void *buf, size_t len,
                                                                int flags, int for_write)
{
    if (__libc_single_threaded || !lf_self)
        return CONN_DECLINED;
    return quick_call_threaded(fd, buf, len, flags, for_write);
}

/* The short path first, straight into conn.c (a frame fewer). */
static inline __attribute__((always_inline)) ssize_t recv_on(struct lf_sock *s, int fd, void *buf,
                                                              size_t len, int flags)
{
    ssize_t r = conn_read_fast(s, buf, len, flags);
    if (r == CONN_DECLINED)
        r = sock_recv_buffer(s, fd, buf, len, flags);
    else if (r < 0)
        errno = (int)-r, r = -1;
    call_end(s);
    return r;
}

static inline __attribute__((always_inline)) ssize_t send_on(struct lf_sock *s, int fd,
                                                              const void *buf, size_t len,
                                                              int flags)
{
    ssize_t r = conn_write_fast(s, buf, len, flags);
    if (r == CONN_DECLINED)
        r = sock_send_buffer(s, fd, buf, len, flags);
    else if (r < 0)
        errno = (int)-r, r = -1;
    call_end(s);
    return r;
}

/* ---- data ---- */

LF_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
    /* no bytes: the kernel's 0 in any state (sock_read_iter); as recv()'s,
     * ours waited for the peer's bytes, for good when none came */
    if (__builtin_expect(!len, 0))
        return libc.read(fd, buf, 0);
    ssize_t q = quick_call(fd, buf, len, 0, 0);
    if (q != CONN_DECLINED)
        return q;
    struct lf_sock *s = ours_for_call(fd);
    return s ? recv_on(s, fd, buf, len, 0) : libc.read(fd, buf, len);
}

LF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (len > buflen)
        __builtin_trap();
    return read(fd, buf, len);
}

LF_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t q = quick_call(fd, (void *)buf, len, 0, 1);
    if (q != CONN_DECLINED)
        return q;
    struct lf_sock *s = ours_for_call(fd);
    return s ? send_on(s, fd, buf, len, 0) : libc.write(fd, buf, len);
}

LF_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t q = quick_call(fd, buf, len, flags, 0);
    if (q != CONN_DECLINED)
        return q;
    struct lf_sock *s = ours_for_call(fd);
    return s ? recv_on(s, fd, buf, len, flags) : libc.recv(fd, buf, len, flags);
}

LF_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        __builtin_trap();
    return recv(fd, buf, len, flags);
}

LF_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t q = quick_call(fd, (void *)buf, len, flags, 1);
    if (q != CONN_DECLINED)
        return q;
    struct lf_sock *s = ours_for_call(fd);
    return s ? send_on(s, fd, buf, len, flags) : libc.send(fd, buf, len, flags);
}

LF_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                           socklen_t *fromlen)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s)
        return libc.recvfrom(fd, buf, len, flags, from, fromlen);
    if (fromlen)
        *fromlen = 0;   /* a connected TCP socket reports no source address */
    return recv_on(s, fd, buf, len, flags);
}

LF_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                                 struct sockaddr *from, socklen_t *fromlen)
{
    if (len > buflen)
        __builtin_trap();
    return recvfrom(fd, buf, len, flags, from, fromlen);
}

/* A send with an address on a socket not connected yet: TCP Fast Open
 * (MSG_FASTOPEN) connects with it, so the offer is made first, as by
 * connect(), and what the kernel takes is counted as sent on TCP. */
static ssize_t send_connecting(struct lf_sock *s, int fd, const struct msghdr *msg, int flags)
{
    lf_lock(&s->lock);
    if (sock_kind(s) == LF_OPTIN && msg->msg_namelen >= sizeof(sa_family_t))
        handshake_offer(s, fd, msg->msg_name);
    ssize_t r = libc.sendmsg(fd, msg, flags);
    int e = errno, plain = sock_kind(s) == LF_PLAIN;
    if (r > 0 && sock_kind(s) == LF_PENDING)
        s->pending_tx += (uint64_t)r;
    lf_unlock(&s->lock);
    if (plain)
        fdtable_clear(fd);   /* never fast: as connect() */
    errno = e;
    return r;
}

static int connecting(struct lf_sock *s, const void *addr)
{
    return addr && sock_kind(s) == LF_OPTIN;
}

LF_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                         const struct sockaddr *to, socklen_t tolen)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s)
        return libc.sendto(fd, buf, len, flags, to, tolen);
    if (connecting(s, to)) {
        struct iovec iov = { (void *)buf, len };
        struct msghdr m = { .msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = &iov,
                            .msg_iovlen = 1 };
        ssize_t r = send_connecting(s, fd, &m, flags);
        call_end(s);
        return r;
    }
    /* TCP ignores the address of a connected socket. */
    return send_on(s, fd, buf, len, flags);
}

LF_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s)
        return handoff_recvmsg(fd, msg, flags);
    ssize_t r = sock_recv(s, fd, msg, flags);
    call_end(s);
    return r;
}

LF_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s)
        return msg && msg->msg_controllen ? handoff_sendmsg(fd, msg, flags)
                                          : libc.sendmsg(fd, msg, flags);
    ssize_t r = msg && connecting(s, msg->msg_name) ? send_connecting(s, fd, msg, flags)
                                                    : sock_send(s, fd, msg, flags);
    call_end(s);
    return r;
}

/* readv() and writev() of no bytes say the kernel's 0 whatever the
 * socket's state (vfs_readv and vfs_writev stop before it), and a count
 * it refuses its EINVAL: taken for recvmsg() and sendmsg(), ours said
 * EAGAIN, EPIPE or a reset. */
static int iov_kernels(const struct iovec *iov, int n)
{
    if (n < 0 || n > IOV_MAX)
        return 1;
    for (int i = 0; i < n; i++)
        if (iov[i].iov_len)
            return 0;
    return 1;
}

LF_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    struct lf_sock *s = iov_kernels(iov, iovcnt) ? NULL : ours_for_call(fd);
    if (!s)
        return libc.readv(fd, iov, iovcnt);
    struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    ssize_t r = sock_recv(s, fd, &m, 0);
    call_end(s);
    return r;
}

LF_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct lf_sock *s = iov_kernels(iov, iovcnt) ? NULL : ours_for_call(fd);
    if (!s)
        return libc.writev(fd, iov, iovcnt);
    struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    ssize_t r = sock_send(s, fd, &m, 0);
    call_end(s);
    return r;
}

/* recvmmsg and sendmmsg are one call per message on a stream socket:
 * each message gets what one recvmsg/sendmsg would.  MSG_WAITFORONE makes
 * the messages after the first non-blocking, as the kernel does; the count
 * of messages done is returned once any was, the error otherwise.  (The
 * timeout of recvmmsg is checked only between messages, as the kernel's.) */
static int mmsg_on(struct lf_sock *s, int fd, struct mmsghdr *v, unsigned n, int flags,
                   int is_send)
{
    int done = 0;
    for (unsigned i = 0; i < n; i++) {
        ssize_t r = is_send ? sock_send(s, fd, &v[i].msg_hdr, flags)
                            : sock_recv(s, fd, &v[i].msg_hdr, flags & ~MSG_WAITFORONE);
        if (r < 0) {
            if (!done)
                done = -1;
            break;
        }
        v[i].msg_len = (unsigned)r;
        done++;   /* at end of stream each message gets 0, as from the kernel */
        if (flags & MSG_WAITFORONE)
            flags |= MSG_DONTWAIT;
    }
    call_end(s);
    return done;
}

LF_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s) {
        static int (*real)(int, struct mmsghdr *, unsigned, int, struct timespec *);
        __typeof__(real) real_now;
        *(void **)&real_now = dlsym_next_cached((void **)&real, "recvmmsg");
        return real_now(fd, v, n, flags, t);
    }
    return mmsg_on(s, fd, v, n, flags, 0);
}

LF_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s) {
        static int (*real)(int, struct mmsghdr *, unsigned, int);
        __typeof__(real) real_now;
        *(void **)&real_now = dlsym_next_cached((void **)&real, "sendmmsg");
        for (unsigned i = 0; v && i < n; i++)
            if (v[i].msg_hdr.msg_controllen)
                pending_hand_off(&v[i].msg_hdr);
        return real_now(fd, v, n, flags);
    }
    return mmsg_on(s, fd, v, n, flags, 1);
}

/* preadv2/pwritev2 on a socket: an offset other than -1 is the kernel's
 * ESPIPE; RWF_NOWAIT is MSG_DONTWAIT.  Other RWF_ flags mean nothing to a
 * socket's stream. */
static ssize_t rw2_on(struct lf_sock *s, int fd, const struct iovec *iov, int n, off_t off,
                      int rwf, int is_write)
{
    ssize_t r;
    if (off != -1) {
        errno = ESPIPE;
        r = -1;
    } else if (n < 0 || n > IOV_MAX) {
        errno = EINVAL;
        r = -1;
    } else {
        struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
        int flags = (rwf & RWF_NOWAIT) ? MSG_DONTWAIT : 0;
        r = is_write ? sock_send(s, fd, &m, flags) : sock_recv(s, fd, &m, flags);
    }
    call_end(s);
    return r;
}

LF_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off, int rwf)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s) {
        static ssize_t (*real)(int, const struct iovec *, int, off_t, int);
        __typeof__(real) real_now;
        *(void **)&real_now = dlsym_next_cached((void **)&real, "preadv2");
        return real_now(fd, iov, n, off, rwf);
    }
    return rw2_on(s, fd, iov, n, off, rwf, 0);
}

LF_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int rwf)
{
    struct lf_sock *s = ours_for_call(fd);
    if (!s) {
        static ssize_t (*real)(int, const struct iovec *, int, off_t, int);
        __typeof__(real) real_now;
        *(void **)&real_now = dlsym_next_cached((void **)&real, "pwritev2");
        return real_now(fd, iov, n, off, rwf);
    }
    return rw2_on(s, fd, iov, n, off, rwf, 1);
}

/* The same calls under their large-file names (one off_t on 64-bit). */
LF_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int n, off_t off, int rwf)
    __attribute__((alias("preadv2")));
LF_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int rwf)
    __attribute__((alias("pwritev2")));

/* ---- connection set-up ---- */

/* Our reserves (a spare answer, leftovers waiting to be closed, pending
 * clients' offers) must never be why the program runs out of descriptors:
 * on EMFILE or ENFILE they are given back, and the call is worth one more
 * try.  Pending clients settle first (they take their answers or stay
 * plain), so that the reap below closes their offers. */
static int retry_without_reserves(int r)
{
    if (r >= 0 || (errno != EMFILE && errno != ENFILE))
        return 0;
    int e = errno, held = ownfd_count();
    pending_settle_all();   /* an answer taken closes its offer at once */
    int freed = reap_now() + spare_drop() + link_drop_idle() + handshake_kept_drop() +
                (held > ownfd_count());
    errno = e;
    return freed > 0;
}

LF_EXPORT int socket(int domain, int type, int protocol)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    static int (*real_socket)(int, int, int);
    __typeof__(real_socket) real_socket_now;
    *(void **)&real_socket_now = dlsym_next_cached((void **)&real_socket, "socket");
    int fd = real_socket_now(domain, type, protocol);
    if (retry_without_reserves(fd))
        fd = real_socket_now(domain, type, protocol);
    fd_number_fresh(fd);
    bufsize_socket_made(fd, 1);
    if (fd >= 0 && lf_config.mode == LF_MODE_ALL && (domain == AF_INET || domain == AF_INET6) &&
        (type & 0xf) == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP)) {
        struct lf_sock *s = sock_new(LF_OPTIN);
        if (s) {
            sock_born_here(s, (type & SOCK_NONBLOCK) != 0, SOCK_OPTIONS_NONE);
            fdtable_set(fd, s);
            sock_put(s);
        }
    }
    return fd;
}

/* SO_PEEK_OFF makes each MSG_PEEK start where the last one ended; peeks on
 * a ring always start at its tail.  So a socket given a peek offset before
 * its switch stays on TCP (the kernel keeps the offset), and so do the
 * connections of a listener that has one (accepted sockets inherit it).
 * Set after the switch it is not followed (docs/design.md, 10). */
static int peek_offset_used;   /* this image set SO_PEEK_OFF on some socket */

static void peek_offset_set(int fd, const void *val, socklen_t len)
{
    __atomic_store_n(&peek_offset_used, 1, __ATOMIC_RELAXED);
    int off = -1;
    if (val && len >= sizeof off)
        memcpy(&off, val, sizeof off);
    if (off >= 0)
        pending_stay_plain(fd);
}

static int peek_offset_on(int listen_fd)
{
    int off = -1;
    socklen_t len = sizeof off;
    return __atomic_load_n(&peek_offset_used, __ATOMIC_RELAXED) && !lf_confined &&
           getsockopt(listen_fd, SOL_SOCKET, SO_PEEK_OFF, &off, &len) == 0 && off >= 0;
}

/* Socket buffer sizes bound the rings too (bufsize.c); the call is the
 * kernel's.  An upper layer protocol (kernel TLS) on a connection already
 * on its rings fails as on a kernel without that module (ENOENT): OpenSSL
 * and GnuTLS then do TLS themselves, on the ring; one set before the
 * switch keeps the connection plain (pending_before_ulp). */
LF_EXPORT int setsockopt(int fd, int level, int optname, const void *val, socklen_t len)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    if (level == IPPROTO_TCP && optname == TCP_ULP && pending_before_ulp(fd))
        return errno = ENOENT, -1;
    static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
    __typeof__(real_setsockopt) real_setsockopt_now;
    *(void **)&real_setsockopt_now = dlsym_next_cached((void **)&real_setsockopt, "setsockopt");
    int r = real_setsockopt_now(fd, level, optname, val, len);
    if (r == 0)
        cmsg_option_set(level, optname);
    if (r == 0 && level == SOL_SOCKET) {
        int e = errno;
        bufsize_set(fd, level, optname);
        sock_options_changed(fd, optname);
        sock_rcvlowat_changed(fd, optname);
        if (optname == SO_PEEK_OFF)
            peek_offset_set(fd, val, len);
        errno = e;
    }
    return r;
}

/* TCP_INFO and SO_ERROR of a fast connection: the kernel's, with the state
 * and error kernel TCP would give (its FINs may have gone on the rings:
 * conn_tcp_state, conn_kernel_error). */
LF_EXPORT int getsockopt(int fd, int level, int optname, void *val, socklen_t *len)
{
    static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
    __typeof__(real_getsockopt) real_getsockopt_now;
    *(void **)&real_getsockopt_now = dlsym_next_cached((void **)&real_getsockopt, "getsockopt");
    int r = real_getsockopt_now(fd, level, optname, val, len);
    int info = level == IPPROTO_TCP && optname == TCP_INFO;
    int error = level == SOL_SOCKET && optname == SO_ERROR;
    if (r != 0 || !(info || error) || !val || !len || *len < (error ? sizeof(int) : 1))
        return r;
    struct lf_sock *s = ours(fd);
    if (s) {
        struct tcp_info *ti = val;   /* tcpi_state is its first byte */
        if (sock_kind(s) == LF_FAST && info)
            ti->tcpi_state = (uint8_t)conn_tcp_state(s->conn, ti->tcpi_state);
        if (sock_kind(s) == LF_FAST && error)
            *(int *)val = conn_kernel_error(s->conn, *(int *)val);
        if (sock_kind(s) == LF_FAST && error && *(int *)val == 0)
            *(int *)val = conn_take_reset_error(s->conn);
        int later = error ? sock_take_later_error(s) : 0;
        if (later)
            *(int *)val = later;
        sock_put(s);
    }
    return r;
}

/* A fast connection both ends shut down is closed, as the kernel's
 * (conn_closed): ENOTCONN. */
LF_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
    __typeof__(real_getpeername) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real_getpeername, "getpeername");
    struct lf_sock *s = ours(fd);
    if (s) {
        int closed = sock_kind(s) == LF_FAST && conn_closed(s->conn, fd);
        sock_put(s);
        if (closed)
            return errno = ENOTCONN, -1;
    }
    return real_now(fd, addr, len);
}

LF_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct lf_sock *s = ours(fd);
    if (!s)
        return libc.connect(fd, addr, len);
    lf_lock(&s->lock);
    if (sock_kind(s) == LF_OPTIN && addr && len >= sizeof(sa_family_t))
        handshake_offer(s, fd, addr);
    int plain = sock_kind(s) == LF_PLAIN;
    lf_unlock(&s->lock);
    if (plain)
        fdtable_clear(fd);   /* never fast: let its calls go straight to libc */
    int r = libc.connect(fd, addr, len);
    sock_put(s);
    return r;
}

/* The listener, if accept() on it answers offers (held: sock_put it). */
static struct lf_sock *answering(int listen_fd)
{
    struct lf_sock *l = ours(listen_fd);
    if (l && (sock_kind(l) != LF_OPTIN || lf_config.mode == LF_MODE_OFF)) {
        sock_put(l);
        l = NULL;
    }
    return l;
}

/* The listener's address is every accepted connection's local address,
 * unless it is a wildcard: asked once, it spares the answer a getsockname. */
static void listener_address(struct lf_sock *l, int listen_fd, struct sockaddr_storage *local)
{
    lf_lock(&l->lock);
    if (l->bound_state == BOUND_UNKNOWN) {
        socklen_t n = sizeof l->bound;
        int ok = getsockname(listen_fd, (struct sockaddr *)&l->bound, &n) == 0;
        l->bound_state = ok && !is_wildcard((struct sockaddr *)&l->bound) ? BOUND_SPECIFIC
                                                                            : BOUND_WILDCARD;
    }
    if (l->bound_state == BOUND_SPECIFIC)
        *local = l->bound;
    lf_unlock(&l->lock);
}

/* Whether no other process accepts this listener's connections: none
 * shares the socket (it was made after this process's last fork) nor its
 * port (SO_REUSEPORT, asked once).  Then a client may ask for its later
 * connections in its region (request.c) instead of offering. */
static int listener_alone(struct lf_sock *l, int listen_fd)
{
    if (l->born_forks != __atomic_load_n(&lf_forks, __ATOMIC_RELAXED))
        return 0;
    lf_lock(&l->lock);
    if (l->reuseport < 0) {
        int on = 1;
        socklen_t n = sizeof on;
        l->reuseport = getsockopt(listen_fd, SOL_SOCKET, SO_REUSEPORT, &on, &n) < 0 || on;
    }
    int alone = !l->reuseport;
    lf_unlock(&l->lock);
    return alone;
}

/* accept() or accept4(): the answer's memory and doorbells are made before
 * it waits, not between the client's SYN and its reply (spare.c), and
 * leftovers of closed connections go then too (reap.c).  The peer's address
 * the answer needs is the one accept() returns: read from the caller's
 * buffer when the kernel filled it whole, else asked into ours. */
static int accept_any(int listen_fd, struct sockaddr *addr, socklen_t *len, int flags, int is4)
{
    reap_now();
    struct lf_sock *l = answering(listen_fd);
    if (l && peek_offset_on(listen_fd)) {
        sock_put(l);
        l = NULL;
    }
    if (l)
        spare_prepare();
    struct sockaddr_storage ends[2] = { { 0 }, { 0 } };   /* local, peer */
    socklen_t own = sizeof ends[1], given = addr && len ? *len : 0;
    struct sockaddr *a = addr || !l ? addr : (struct sockaddr *)&ends[1];
    socklen_t *n = addr || !l ? len : &own;
    int c = is4 ? libc.accept4(listen_fd, a, n, flags) : libc.accept(listen_fd, a, n);
    if (retry_without_reserves(c))
        c = is4 ? libc.accept4(listen_fd, a, n, flags) : libc.accept(listen_fd, a, n);
    fd_number_fresh(c);
    if (c >= 0 && l) {
        int e = errno;
        if (addr && *len <= given && *len <= sizeof ends[1])
            memcpy(&ends[1], addr, *len);
        listener_address(l, listen_fd, &ends[0]);
        handshake_answer(c, ends, listener_alone(l, listen_fd));
        bufsize_inherit(l, c);
        struct lf_sock *s = fdtable_acquire(c);
        if (s) {   /* a new file; its timeouts and SO_LINGER are the listener's */
            sock_born_here(s, is4 && (flags & SOCK_NONBLOCK), sock_options_inherited(l, listen_fd));
            sock_put(s);
        }
        errno = e;
    }
    if (l)
        sock_put(l);
    return c;
}

LF_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    return accept_any(fd, addr, len, 0, 0);
}

LF_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return accept_any(fd, addr, len, flags, 1);
}

LF_EXPORT int shutdown(int fd, int how)
{
    struct lf_sock *s = ours(fd);
    if (!s)
        return libc.shutdown(fd, how);
    int r;
    if (sock_kind(s) == LF_FAST && (how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR))
        r = conn_shutdown(s, fd, how);
    else if (sock_kind(s) == LF_PENDING)
        r = pending_shutdown(s, fd, how);
    else
        r = libc.shutdown(fd, how);
    sock_put(s);
    return r;
}

/* ---- descriptors ---- */

/* Forgets what we keep under fd's number: a tracked socket, or an epoll
 * set of ours.  On the last descriptor of a connection in this process the
 * peer is told first; `still_ours`: the number still names that socket (it
 * is about to be closed), so its SO_LINGER and unread bytes may be asked. */
/* entomb: the slot keeps a tombstone until the caller's kernel close. */
static void forget_number(int fd, int still_ours, int entomb)
{
    bufsize_socket_made(fd, 0);
    struct lf_sock *s = ours(fd);
    if (s) {
        int left = entomb ? fdtable_entomb(fd) : fdtable_clear(fd);
        if (left == 0 && sock_kind(s) == LF_FAST) {
            quick_wait_hazards(s);   /* a quick write's bytes go before our end */
            if (!still_ours || !conn_close_deferred(s, fd))
                conn_close(s, still_ours ? fd : -1);
        }
        sock_put(s);
    }
    epoll_forget_fd(fd, still_ours);
}

/* What close() forgets, before the kernel closes fd. */
static void forget_any(int fd)
{
    forget_number(fd, 1, 0);
}

/* Does loopfast keep anything under fd's number? */
static int fd_has_state(int fd)
{
    struct lf_sock *s = ours(fd);
    if (s)
        sock_put(s);
    return s || bufsize_noted(fd) || epoll_knows_fd(fd);
}

/* The kernel has just given out fd's number (socket, accept, dup,
 * epoll_create), so anything we still keep under it belongs to a
 * descriptor closed past us, by a system call of the program's own: it is
 * stale, and the new file would be answered from a dead connection's
 * state.  Forgotten as close() forgets, without a call on the number, which
 * names the new file now.  (A vfork child's numbers are not its parent's
 * records.) */
void fd_number_fresh(int fd)
{
    /* inside a section of ours (lf_signal_hold): a socket loopfast makes
     * for itself, with its locks held, which the epoll table's would invert */
    if (fd < 0 || lf_signal_hold || !fd_has_state(fd) || lf_vfork_child())
        return;
    int e = errno;
    forget_number(fd, 0, 0);
    errno = e;
}

/* A vfork() child about to close or duplicate numbers we keep state under:
 * the state is its parent's, the numbers are its own (exec.c).  The
 * system call that tells is made only then. */
static int vfork_child_touches(int fd, int other)
{
    return (fd_has_state(fd) || (other >= 0 && fd_has_state(other))) && lf_vfork_child();
}

/* Another thread's call on fd between our forgetting the socket and the
 * kernel's close reached the kernel's socket, still open: a write went on
 * TCP after the ring's end, where the peer never reads it, and failed with
 * ECONNRESET where the kernel says EBADF (tests/thread_quick.c).  So the
 * slot holds a tombstone meanwhile, and such a call waits for the close,
 * then gets the kernel's answer.  Signals are held, so that a handler of
 * ours never waits for its own thread; the kernel's close is then no
 * cancellation point of its own (looked at before). */
static int close_threaded(int fd)
{
    pthread_testcancel();
    signals_hold();
    forget_number(fd, 1, 1);
    int old = nocancel_begin();
    int r = libc.close(fd), e = errno;
    fdtable_unentomb(fd);
    nocancel_end(old);
    signals_release();
    errno = e;
    return r;
}

LF_EXPORT int close(int fd)
{
    if (libc_closing_own())   /* one of ours, through TSan's close() (libc.c) */
        return libc.close(fd);
    if (ownfd_is_ours(fd))   /* not the program's: as the kernel would say */
        return errno = EBADF, -1;
    if (vfork_child_touches(fd, -1))
        return libc.close(fd);
    if (!__libc_single_threaded)
        return close_threaded(fd);
    forget_any(fd);
    return libc.close(fd);
}

/* syscall(SYS_close, fd): libuv (node.js) closes descriptors so, past
 * close().  Their numbers stayed in our tables, and the next socket the
 * kernel gave such a number was answered from a dead connection's state (a
 * node server's second connection read EOF after its first 8 bytes).  So
 * syscall() is ours: SYS_close goes to close(), and every other number to
 * the kernel, as libc's syscall() sends it.  It is variadic, and a caller
 * passes only the arguments its call takes, so C could not forward them
 * without reading some that do not exist; a few instructions do it with
 * the registers as they came.  Nor may it look libc's up: jemalloc calls
 * syscall() while it sets itself up, inside malloc's lock, and dlsym()
 * would call malloc() (redis hung before its first line).  Elsewhere than
 * x86-64 the stale numbers are caught when the kernel gives them out again
 * (fd_number_fresh). */
#if defined(__x86_64__)
__attribute__((used)) long syscall_failed(long r);
__attribute__((used)) long syscall_failed(long r)
{
    errno = (int)-r;
    return -1;
}

/* Before loopfast has set itself up it keeps nothing under any number, and
 * must not set itself up here: jemalloc's own start-up reads a /proc file
 * with syscall(SYS_open, SYS_read, SYS_close), inside malloc's lock. */
__attribute__((used)) long close_by_syscall(long number, long fd);
__attribute__((used)) long close_by_syscall(long number, long fd)
{
    if (__atomic_load_n(&lf_initialised, __ATOMIC_ACQUIRE))
        return close((int)fd);
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"(number), "D"(fd) : "rcx", "r11", "memory");
    return r < 0 && r > -4096 ? syscall_failed(r) : r;
}

/* syscall(SYS_clone) that copies the process as fork() does (no CLONE_VM,
 * no stack of its own; the asm below sends only those here): libc's
 * handlers never run for it, so ours run here (forks.c), and the child is
 * a forked child of ours, its own pid, its tables its own (vsftpd's
 * sessions, made so with new namespaces: their closes were taken for a
 * vfork child's, a reused number stayed a socket, and uploads failed with
 * ENOTSOCK). */
struct raw_clone {
    long flags, ptid, ctid, tls;
};

static pid_t fork_with(pid_t (*make)(void *), void *arg);

static long clone_syscall(const struct raw_clone *a)
{
    long r;
    register long r10 __asm__("r10") = a->ctid;
    register long r8 __asm__("r8") = a->tls;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "0"((long)SYS_clone), "D"(a->flags), "S"(0L), "d"(a->ptid), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return r;
}

static pid_t clone_copy(void *arg)
{
    forks_prepare();
    long r = clone_syscall(arg);
    if (r == 0)
        forks_child();
    else
        forks_parent();
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return (pid_t)r;
}

__attribute__((used)) long clone_by_syscall(long number, long flags, long stack, long ptid,
                                            long ctid, long tls);
__attribute__((used)) long clone_by_syscall(long number, long flags, long stack, long ptid,
                                            long ctid, long tls)
{
    (void)number;
    (void)stack;
    struct raw_clone a = { flags, ptid, ctid, tls };
    if (!__atomic_load_n(&lf_initialised, __ATOMIC_ACQUIRE)) {
        long r = clone_syscall(&a);
        return r < 0 && r > -4096 ? syscall_failed(r) : r;
    }
    return fork_with(clone_copy, &a);
}

#define LF_STR(x) #x
#define LF_XSTR(x) LF_STR(x)
__asm__(".text\n"
        ".globl syscall\n"
        ".type syscall, @function\n"
        "syscall:\n"
        /* unwind information: a thread cancelled in a system call made
         * here (the futex sleep, design 6.2) unwinds through this frame */
        "    .cfi_startproc\n"
        "    endbr64\n"
        "    cmpq $" LF_XSTR(SYS_close) ", %rdi\n"
        "    je close_by_syscall\n"
        "    cmpq $" LF_XSTR(SYS_clone) ", %rdi\n"
        "    jne 2f\n"
        "    testq $" LF_XSTR(CLONE_VM) ", %rsi\n"   /* a thread's: not a copy */
        "    jnz 2f\n"
        "    testq %rdx, %rdx\n"                     /* a stack of its own */
        "    jz clone_by_syscall\n"
        "2:\n"
        /* (number, a1..a6) in rdi, rsi, rdx, rcx, r8, r9, the stack; the
         * kernel takes them in rax, rdi, rsi, rdx, r10, r8, r9 */
        "    movq %rdi, %rax\n"
        "    movq %rsi, %rdi\n"
        "    movq %rdx, %rsi\n"
        "    movq %rcx, %rdx\n"
        "    movq %r8, %r10\n"
        "    movq %r9, %r8\n"
        "    movq 8(%rsp), %r9\n"
        "    syscall\n"
        "    cmpq $-4095, %rax\n"
        "    jae 1f\n"
        "    ret\n"
        "1:  movq %rax, %rdi\n"
        "    jmp syscall_failed\n"
        "    .cfi_endproc\n"
        ".size syscall, .-syscall\n");
#endif

/* close_range() and closefrom() close the program's descriptors in the
 * range, around loopfast's own (ownfd.c).  Tracked sockets and epoll sets in
 * the range are forgotten as close() would; leftovers waiting to be closed
 * go now, as they may as well. */
static void before_close_range(unsigned first, unsigned last)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    reap_now();
    fdtable_for_each_fd(first, last, forget_any);
    epoll_forget_range(first, last);
}

static int (*real_close_range)(unsigned, unsigned, int);

static __typeof__(real_close_range) find_close_range(void)
{
    __typeof__(real_close_range) real_close_range_now;
    *(void **)&real_close_range_now = dlsym_next_cached((void **)&real_close_range, "close_range");
    return real_close_range_now;
}

LF_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
    __typeof__(real_close_range) real = find_close_range();
    if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last && !lf_vfork_child())
        before_close_range(first, last);
    return ownfd_close_range(first, last, flags, real);
}

/* One piece of closefrom(): a kernel without close_range gets libc's own
 * closefrom for the open-ended piece and close() for the others. */
static int closefrom_piece(unsigned first, unsigned last, int flags)
{
    static void (*real_closefrom)(int);
    if (find_close_range()(first, last, flags) == 0 || errno != ENOSYS)
        return 0;
    if (last == ~0u) {
        __typeof__(real_closefrom) real_closefrom_now;
        *(void **)&real_closefrom_now = dlsym_next_cached((void **)&real_closefrom, "closefrom");
        real_closefrom_now((int)first);
    } else
        for (unsigned fd = first; fd <= last; fd++)
            libc.close((int)fd);
    return 0;
}

LF_EXPORT void closefrom(int lowfd)
{
    if (!lf_vfork_child())
        before_close_range(lowfd < 0 ? 0 : (unsigned)lowfd, ~0u);
    int e = errno;
    ownfd_close_range(lowfd < 0 ? 0 : (unsigned)lowfd, ~0u, 0, closefrom_piece);
    errno = e;
}

static int track_dup(int oldfd, int newfd)
{
    if (newfd < 0)
        return newfd;
    fd_number_fresh(newfd);
    struct lf_sock *s = ours(oldfd);
    if (s) {
        fdtable_set(newfd, s);
        if (newfd == STDOUT_FILENO || newfd == STDERR_FILENO)
            sock_tx_back(s);   /* stdio may write it past us */
        sock_put(s);
        if (newfd == STDIN_FILENO) {
            pending_on_stdin(newfd);   /* stdio may read it past us */
            stdio_stdin_through_us();  /* unless it cannot be held: then through us */
        }
    }
    return newfd;
}

/* In a vfork child: what newfd is now, for its exec (exec.c). */
static int vfork_dup(int oldfd, int newfd)
{
    if (newfd >= 0)
        vfork_note_dup(oldfd, newfd);
    return newfd;
}

LF_EXPORT int dup(int fd)
{
    if (vfork_child_touches(fd, -1))
        return vfork_dup(fd, libc.dup(fd));
    return track_dup(fd, libc.dup(fd));
}

/* dup2()/dup3() onto a number of loopfast's own: ours moves away first. */
LF_EXPORT int dup2(int oldfd, int newfd)
{
    if (oldfd != newfd && vfork_child_touches(oldfd, newfd))
        return vfork_dup(oldfd, libc.dup2(oldfd, newfd));
    if (oldfd != newfd)
        forget_any(newfd);   /* as close() would */
    int ours = oldfd != newfd && ownfd_vacate(newfd);
    int r = libc.dup2(oldfd, newfd);
    if (ours && r < 0)
        ownfd_vacate_failed(newfd);
    return oldfd == newfd ? r : track_dup(oldfd, r);
}

LF_EXPORT int dup3(int oldfd, int newfd, int flags)
{
    if (oldfd != newfd && vfork_child_touches(oldfd, newfd))
        return vfork_dup(oldfd, libc.dup3(oldfd, newfd, flags));
    if (oldfd != newfd)
        forget_any(newfd);   /* as close() would */
    int ours = oldfd != newfd && ownfd_vacate(newfd);
    int r = libc.dup3(oldfd, newfd, flags);
    if (ours && r < 0)
        ownfd_vacate_failed(newfd);
    return track_dup(oldfd, r);
}

/* A socket given to stdio may be written past us (conn.c, sock_stdio_may_write),
 * and read past us: one not switched yet stays on TCP.  One switched gets
 * a stream that reads and writes through us (stdio.c). */
LF_EXPORT FILE *fdopen(int fd, const char *mode)
{
    struct lf_sock *s = ours(fd);
    if (s && mode && sock_kind(s) == LF_FAST) {
        sock_put(s);
        return stdio_stream_open(fd, mode);
    }
    static FILE *(*real)(int, const char *);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "fdopen");
    FILE *f = real_now(fd, mode);
    if (!s)
        return f;
    if (f) {
        __atomic_store_n(&s->stdio, 1, __ATOMIC_RELAXED);
        if (!mode || strpbrk(mode, "wa+"))
            sock_tx_back(s);
    }
    sock_put(s);
    if (f && mode && (strchr(mode, 'r') || strchr(mode, '+')))
        pending_stay_plain(fd);   /* its reads too pass us by */
    return f;
}

/* glibc reopens only its own FILEs: ours (stdio.c) it crashed on.  `name`:
 * libc's entry, whose address is cached in *real. */
static FILE *reopen(void **real, const char *name, const char *path, const char *mode, FILE *fp)
{
    FILE *r;
    if (fp && mode && stdio_stream_reopen(path, mode, fp, &r))
        return r;
    FILE *(*real_now)(const char *, const char *, FILE *);
    *(void **)&real_now = dlsym_next_cached(real, name);
    return real_now(path, mode, fp);
}

LF_EXPORT FILE *freopen(const char *path, const char *mode, FILE *fp)
{
    static void *real;
    return reopen(&real, "freopen", path, mode, fp);
}

LF_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *fp)
{
    static void *real;
    return reopen(&real, "freopen64", path, mode, fp);
}

/* O_NONBLOCK as the program sets it, for conn.c's must_not_wait(). */
static void note_nonblock(int fd, int on)
{
    struct lf_sock *s = ours(fd);
    if (s) {
        __atomic_store_n(&s->nonblock_seen, on, __ATOMIC_RELAXED);
        sock_put(s);
    }
}

static int fcntl_common(int fd, int cmd, void *arg)
{
    int r = libc.fcntl(fd, cmd, arg);
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0 && vfork_child_touches(fd, -1))
        return vfork_dup(fd, r);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        return track_dup(fd, r);
    if (cmd == F_SETFL && r == 0)
        note_nonblock(fd, ((int)(intptr_t)arg & O_NONBLOCK) != 0);
    if (cmd == F_SETFL && r == 0 && ((int)(intptr_t)arg & O_ASYNC))
        pending_stay_plain(fd);
    return r;
}

LF_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(fd, cmd, arg);
}

LF_EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(fd, cmd, arg);
}

/* ---- processes ---- */

/* Counts fork() calls (twice for one that failed): the holder walk marks
 * each sock once a call, and a listener older than the count is shared. */
unsigned lf_forks;
unsigned lf_shares;

/* A forked child holds every connection too: count it before it exists. */
static void count_holder(struct lf_sock *s, void *arg)
{
    int delta = *(int *)arg;
    unsigned gen = __atomic_load_n(&lf_forks, __ATOMIC_RELAXED);
    if (sock_kind(s) != LF_FAST || s->fork_gen == gen)
        return;
    s->fork_gen = gen;
    __atomic_add_fetch(&s->conn->sh->side[s->conn->me].holders, (uint32_t)delta, __ATOMIC_ACQ_REL);
    if (delta > 0)
        __atomic_store_n(&s->conn->shared_end, 1, __ATOMIC_RELAXED);
    if (s->conn->leased_by == lf_pid)
        link_hold(s->conn, delta);   /* the child lets go of the slot on its own */
}

static void reset_locks(struct lf_sock *s, void *arg)
{
    (void)arg;
    pthread_mutex_init(&s->lock, NULL);
    if (sock_kind(s) == LF_FAST) {
        pthread_mutex_init(&s->conn->rx_lock, NULL);
        pthread_mutex_init(&s->conn->tx_lock, NULL);
        quick_bias_reset(&s->conn->bias[0]);   /* their owners are not in the child */
        quick_bias_reset(&s->conn->bias[1]);
        if (s->conn->leased_by == *(pid_t *)arg) {
            s->conn->leased_by = lf_pid;   /* counted for us before the fork */
            conn_holder_note(s->conn, lf_pid);
        }
    }
}

/* fork(), with the process copied by make(arg). */
static pid_t fork_with(pid_t (*make)(void *), void *arg)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    int plus = 1, minus = -1;
    pid_t parent = lf_pid;
    pending_settle_all();
    __atomic_add_fetch(&lf_forks, 1, __ATOMIC_RELAXED);
    fdtable_for_each(count_holder, &plus);
    epoll_before_fork();
    fdtable_lock();
    pid_t pid = make(arg);
    if (pid == 0) {
        fdtable_unlock();   /* the forking thread holds it in the child too */
        fdtable_for_each(reset_locks, &parent);
        fdtable_kept_after_fork_child();
        /* The parent's reserves are its own: the child closes its copies now,
         * while their numbers are still ours (a child that closes every
         * descriptor and opens files must not have them closed later). */
        reap_now();
        spare_drop();
        handshake_kept_after_fork_child();
        link_after_fork_child();
        return 0;
    }
    fdtable_unlock();
    if (pid < 0) {
        int e = errno;
        __atomic_add_fetch(&lf_forks, 1, __ATOMIC_RELAXED);
        fdtable_for_each(count_holder, &minus);
        errno = e;
    } else {
        link_after_fork_parent();
    }
    return pid;
}

static pid_t libc_fork(void *arg)
{
    (void)arg;
    return libc.fork();
}

LF_EXPORT pid_t fork(void)
{
    return fork_with(libc_fork, NULL);
}

static int libc_ioctl_int(int fd, unsigned long req, int *out)
{
    return libc.ioctl(fd, req, out);
}

/* ---- ioctl: the queue sizes of a fast connection live in its rings ---- */

static int queue_size(struct lf_sock *s, int fd, unsigned long req, int *out)
{
    struct lf_conn *c = s->conn;
    const struct lf_side *me = &c->sh->side[c->me];
    ssize_t n;
    if (req == SIOCINQ) {
        /* Until our reader has seen the peer switch, TCP holds what the
         * peer wrote before it, which comes first, and the ring the rest;
         * after the peer went back to TCP, the ring's bytes come first.
         * All of them are readable: a read runs on from one into the
         * other, and nginx takes a read longer than FIONREAD said for
         * news whose edge is yet to come (it counted only TCP's 1.5 KB of
         * 1 MB, and waited for ever). */
        uint32_t state = __atomic_load_n(&me->rx_state, __ATOMIC_ACQUIRE);
        uint32_t peer = __atomic_load_n(&conn_peer(c)->tx_state, __ATOMIC_ACQUIRE);
        if (peer == TX_TCP || state == RX_BACK)
            return libc_ioctl_int(fd, req, out);
        int on_tcp = 0;
        if ((state != RX_RING || peer == TX_BACK) && libc_ioctl_int(fd, req, &on_tcp) < 0)
            return -1;
        n = ring_readable(&c->rx);
        n = n < 0 ? n : n + on_tcp;
    } else {
        uint32_t state = __atomic_load_n(&me->tx_state, __ATOMIC_ACQUIRE);
        if (state == TX_TCP)
            return libc_ioctl_int(fd, req, out);
        n = ring_readable(&c->tx);
        int on_tcp = 0;   /* back on TCP: the ring's unread bytes, then TCP's */
        if (state == TX_BACK && n >= 0 && libc_ioctl_int(fd, req, &on_tcp) < 0)
            return -1;
        n = n < 0 ? n : n + on_tcp;
    }
    if (n < 0) {
        errno = ECONNRESET;
        return -1;
    }
    *out = n > INT32_MAX ? INT32_MAX : (int)n;
    return 0;
}

/* SIOCATMARK: urgent data comes on TCP, after the ring's bytes (socket.c,
 * urgent_to_tcp), so while the ring holds some the mark is not reached,
 * whatever TCP says (telnet discards what comes before the mark). */
static int urgent_mark(struct lf_sock *s, int fd, int *out)
{
    if (out && ring_readable(&s->conn->rx) > 0) {
        *out = 0;
        return 0;
    }
    return libc_ioctl_int(fd, SIOCATMARK, out);
}

LF_EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req == SIOCINQ || req == SIOCOUTQ || req == SIOCATMARK) {
        struct lf_sock *s = ours(fd);
        if (s) {
            int r = sock_kind(s) != LF_FAST ? libc.ioctl(fd, req, arg)
                    : req == SIOCATMARK   ? urgent_mark(s, fd, arg)
                                          : queue_size(s, fd, req, arg);
            sock_put(s);
            return r;
        }
    }
    int r = libc.ioctl(fd, req, arg);
    if (req == FIONBIO && r == 0 && arg)
        note_nonblock(fd, *(int *)arg != 0);
    if (req == FIOASYNC && r == 0 && arg && *(int *)arg)
        pending_stay_plain(fd);
    return r;
}

/* ---- affinity: wait.c looks at ours again at the next set-up ---- */

LF_EXPORT int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set)
{
    static int (*real)(pid_t, size_t, const cpu_set_t *);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "sched_setaffinity");
    int r = real_now(pid, size, set);
    affinity_changed();
    return r;
}

LF_EXPORT int pthread_setaffinity_np(pthread_t thread, size_t size, const cpu_set_t *set)
{
    static int (*real)(pthread_t, size_t, const cpu_set_t *);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "pthread_setaffinity_np");
    int r = real_now(thread, size, set);
    affinity_changed();
    return r;
}
