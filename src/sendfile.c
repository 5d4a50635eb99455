/*
 * sendfile.c - sendfile() and splice() with a fast connection on one end.
 *
 * The kernel would move the bytes onto the TCP socket, where a fast peer
 * never reads them, so for our descriptors the data is copied through user
 * space onto the ring instead.  No byte is taken from the source that could
 * not be delivered: file positions are moved by what was sent, pipe data is
 * looked at with tee() and socket data peeked before either is consumed.
 * Whether a call waits, and for which end, is the kernel's rule (below).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK (1 << 16)

static ssize_t (*real_sendfile)(int, int, off_t *, size_t);
static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned);

static __typeof__(real_splice) real_splice_fn(void)
{
    __typeof__(real_splice) f;
    *(void **)&f = dlsym_next_cached((void **)&real_splice, "splice");
    return f;
}

static int is_ours(struct lf_sock *s)
{
    int k = sock_kind(s);
    return k == LF_FAST || k == LF_PENDING;
}

/* The socket's own send of bytes read from a file or a pipe.  The kernel's
 * splice into a socket sends in pieces, and the piece that meets the
 * connection's error (a reset) takes it and drops it for the count, so the
 * next call says EPIPE and raises SIGPIPE, where a write's next call says
 * ECONNRESET (socket.c keeps the error for it): so a short count drops a
 * kept error. */
static ssize_t send_buf(struct lf_sock *s, int fd, const void *buf, size_t len, int flags)
{
    struct iovec iov = { (void *)buf, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t r = sock_send(s, fd, &m, flags);
    if (r > 0 && (size_t)r < len)
        sock_take_later_error(s);
    return r;
}

/* What a non-blocking fast socket takes from sendfile() in one call, and in
 * one turn of its thread's event loop (turn_over).  The kernel's queues
 * page references; ours copies every byte, so an event loop asking for
 * 2 MiB a connection (nginx's sendfile_max_chunk) spent ~1 ms on each
 * before it looked at its other clients: with 100 busy downloads a small
 * request took 35-1660 ms (the kernel: 1-12 ms), and HAProxy took a healthy
 * backend for dead.  A short count is what a non-blocking socket may always
 * return. */
#define NONBLOCK_TURN (256u << 10)

/* (at a regular file's end the kernel's sendfile says 0, not EAGAIN) */
static int file_has_bytes_at(int fd, off_t pos)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > pos;
}

/* A fast socket's turn in its thread's event loop: NONBLOCK_TURN bytes
 * between two of the thread's waits, in any number of calls.  A short count
 * does not end an event loop's turn (nginx 1.22 calls again until EAGAIN or
 * its sendfile_max_chunk, 2 MiB, which the kernel's page references move in
 * 80 us and our copy in 400): with 100 busy downloads one loop took ~35 ms,
 * ~300 ms on a loaded machine, and nginx, accepting one connection a loop,
 * left a new client in its accept queue for 0.7-6 s (the kernel: 5-100 ms).
 * So the turn ends in EAGAIN, once, while the ring still has room, and the
 * next wait says writable again at once (conn_turn_refuse); a program that
 * calls again without a wait is served.  1: refuse this call. */
static int turn_over(struct lf_sock *s, int fd, int in_fd, off_t pos, size_t *count)
{
    unsigned waits = lf_thread_waits;
    if (__atomic_load_n(&s->turn_waits, __ATOMIC_RELAXED) != waits) {
        __atomic_store_n(&s->turn_waits, waits, __ATOMIC_RELAXED);
        __atomic_store_n(&s->turn_sent, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->turn_refused, 0, __ATOMIC_RELAXED);
    }
    uint32_t sent = __atomic_load_n(&s->turn_sent, __ATOMIC_RELAXED);
    if (sent < NONBLOCK_TURN || __atomic_load_n(&s->turn_refused, __ATOMIC_RELAXED) ||
        !file_has_bytes_at(in_fd, pos) || !conn_turn_refuse(s->conn, fd)) {
        size_t left = sent < NONBLOCK_TURN ? NONBLOCK_TURN - sent : NONBLOCK_TURN;
        *count = *count < left ? *count : left;
        return 0;
    }
    __atomic_store_n(&s->turn_refused, 1, __ATOMIC_RELAXED);
    return 1;
}

static void turn_took(struct lf_sock *s, ssize_t n)
{
    uint32_t sent = __atomic_load_n(&s->turn_sent, __ATOMIC_RELAXED);
    if (n > 0)
        __atomic_store_n(&s->turn_sent, sent + (uint32_t)n < sent ? UINT32_MAX : sent + (uint32_t)n,
                         __ATOMIC_RELAXED);
}

/* Copies from in_fd at *pos: returns bytes sent, or -1 with errno.  On the
 * ring the file is read straight into it (conn_send_file); else, and when
 * that declines, through a buffer of ours, by the socket's own send. */
static ssize_t file_to_sock(struct lf_sock *s, int out_fd, int in_fd, off_t *pos, size_t count)
{
    int nonblocking = sock_nonblocking(s, out_fd);
    if (count > NONBLOCK_TURN && nonblocking)
        count = NONBLOCK_TURN;
    if (sock_kind(s) == LF_FAST) {
        if (nonblocking && count && turn_over(s, out_fd, in_fd, *pos, &count))
            return errno = EAGAIN, -1;
        ssize_t r = conn_send_file(s, out_fd, in_fd, *pos, count);
        if (nonblocking)
            turn_took(s, r);
        if (r != CONN_DECLINED) {
            if (r > 0)
                *pos += r;
            return r < 0 ? (errno = (int)-r, -1) : r;
        }
    }
    char *buf = malloc(CHUNK);
    if (!buf)
        return errno = ENOMEM, -1;
    size_t done = 0;
    ssize_t err = 0;
    while (done < count) {
        size_t want = count - done < CHUNK ? count - done : CHUNK;
        ssize_t n = pread(in_fd, buf, want, *pos);
        if (n <= 0) {
            err = n;
            break;
        }
        ssize_t w = send_buf(s, out_fd, buf, (size_t)n, 0);
        if (w <= 0) {
            err = w;
            break;
        }
        done += (size_t)w;
        *pos += w;
        if (w < n)
            break;   /* a non-blocking socket took what it could */
    }
    free(buf);
    return done ? (ssize_t)done : err;
}

LF_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    __typeof__(real_sendfile) real_sendfile_now;
    *(void **)&real_sendfile_now = dlsym_next_cached((void **)&real_sendfile, "sendfile");
    /* Nothing to send is the kernel's 0 whatever the socket's state (its
     * splice loop never looks at it): ours said EPIPE after our shutdown */
    struct lf_sock *s = count ? fdtable_acquire(out_fd) : NULL;
    if (!s || !is_ours(s)) {
        if (s)
            sock_put(s);
        return real_sendfile_now(out_fd, in_fd, offset, count);
    }
    int before = errno;
    off_t pos = offset ? *offset : lseek(in_fd, 0, SEEK_CUR);
    ssize_t r = pos < 0 ? -1 : file_to_sock(s, out_fd, in_fd, &pos, count);
    int e = r >= 0 ? before : errno;   /* a wait's sleeps leave theirs */
    if (r > 0) {
        if (offset)
            *offset = pos;
        else
            lseek(in_fd, pos, SEEK_SET);
    }
    sock_put(s);
    errno = e;
    return r;
}

LF_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
    return sendfile(out_fd, in_fd, offset, count);
}

/* Splice waits as the kernel's does, each end by its own rule (measured on
 * Linux 6.18): on the pipe when SPLICE_F_NONBLOCK and the pipe's O_NONBLOCK
 * are both absent, on the socket when the socket's O_NONBLOCK is (and for
 * its timeouts).  The program's pipe is touched only by the real tee() and
 * splice(), given the program's flags, through a scratch pipe of our own:
 * they wait, or not, and move what fits, as the kernel would, and no file
 * status flag the program can see is changed.  The scratch pipe is
 * blocking: an O_NONBLOCK of its own would make those calls non-blocking.
 *
 * One scratch pipe is kept for the process at numbers of ours (ownfd.c),
 * used by one call at a time: a pipe made and closed per call cost four
 * system calls of eight, and lighttpd proxying a 3 MB body from a fast
 * backend ran at 0.5-0.7x the kernel's rate.  A call that finds it taken
 * (another thread's, a handler's, a child forked while it was) or our
 * share of descriptors crowded makes its own, as before. */
struct scratch {
    int r, w;
    size_t size;   /* smaller than a chunk once the user's pipe quota is spent */
    size_t left;   /* bytes put in it and not taken out: read out before it is kept */
    int kept;      /* the process's kept pipe, its lock held */
};

static int kept_r = -1, kept_w = -1;
static size_t kept_size;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static int pipe_make(int *r, int *w, size_t *size)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    int n = libc.fcntl(p[1], F_GETPIPE_SZ);
    *r = p[0];
    *w = p[1];
    *size = n > 0 && n < CHUNK ? (size_t)n : CHUNK;
    return 0;
}

/* The kept pipe, its lock held; -1 (unlocked) when it is taken or cannot be. */
static int kept_take(struct scratch *sp)
{
    if (pthread_mutex_trylock(&kept_lock) != 0)
        return -1;
    if (kept_r < 0 && !ownfd_crowded() && pipe_make(&kept_r, &kept_w, &kept_size) == 0)
        ownfd_adopt((int *const[]){ &kept_r, &kept_w }, 2, NULL, 0);
    if (kept_r < 0 || kept_w < 0) {
        pthread_mutex_unlock(&kept_lock);
        return -1;
    }
    *sp = (struct scratch){ kept_r, kept_w, kept_size, 0, 1 };
    return 0;
}

static int scratch_open(struct scratch *sp)
{
    if (kept_take(sp) == 0)
        return 0;
    sp->left = 0;
    sp->kept = 0;
    return pipe_make(&sp->r, &sp->w, &sp->size);
}

static void read_known(int fd, char *buf, size_t len);

static void scratch_close(struct scratch *sp, char *buf)
{
    if (!sp->kept) {
        libc.close_own(sp->r);
        libc.close_own(sp->w);
        return;
    }
    if (sp->left)   /* (only a call that had a buffer put bytes in it) */
        read_known(sp->r, buf, sp->left);
    pthread_mutex_unlock(&kept_lock);
}

static int is_pipe(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* Reads exactly len bytes that are known to be in the pipe. */
static void read_known(int fd, char *buf, size_t len)
{
    while (len) {
        ssize_t n = libc.read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        len -= (size_t)n;
    }
}

/* Pipe to socket: tee() shows the pipe's bytes without taking them; only
 * what the socket took is then read out of the pipe.  Chunk after chunk,
 * as the kernel's splice moves what the pipe holds, up to len, in one
 * call: waiting for the pipe only before its first byte, ending at a
 * short send (one chunk a call made a blocking 1 MiB splice whose reader
 * was killed say ECONNRESET where the kernel's returns its count). */
static ssize_t pipe_to_sock(struct lf_sock *s, int out_fd, int in_fd, size_t len, unsigned flags)
{
    if (!is_pipe(in_fd))
        return errno = EINVAL, -1;
    struct scratch sp;
    if (!len || scratch_open(&sp) < 0)
        return len ? -1 : 0;
    int before = errno;
    char *buf = malloc(sp.size);
    size_t done = 0;
    ssize_t r = -1;
    if (!buf)
        errno = ENOMEM;
    while (buf && done < len) {
        size_t want = len - done < sp.size ? len - done : sp.size;
        r = tee(in_fd, sp.w, want, done ? SPLICE_F_NONBLOCK : flags & SPLICE_F_NONBLOCK);
        if (r <= 0)
            break;
        read_known(sp.r, buf, (size_t)r);
        ssize_t sent = send_buf(s, out_fd, buf, (size_t)r, (flags & SPLICE_F_MORE) ? MSG_MORE : 0);
        if (sent > 0) {
            read_known(in_fd, buf, (size_t)sent);
            done += (size_t)sent;
        }
        if (sent < r) {
            r = sent;
            break;
        }
    }
    int e = done ? before : errno;   /* (a later chunk's EAGAIN is no error) */
    scratch_close(&sp, buf);
    free(buf);
    errno = e;
    return done ? (ssize_t)done : r;
}

/* Before the socket is read: a full pipe that must not be waited for is
 * EAGAIN, a pipe nobody reads is EPIPE (and SIGPIPE), as the kernel checks
 * the pipe first.  0: go on. */
static int pipe_refuses(int pipe_fd, unsigned flags)
{
    struct pollfd p = { .fd = pipe_fd, .events = POLLOUT };
    if (libc.poll(&p, 1, 0) < 0)
        return -1;
    if (p.revents & POLLERR) {
        raise(SIGPIPE);
        return errno = EPIPE, -1;
    }
    if (!(p.revents & POLLOUT) && ((flags & SPLICE_F_NONBLOCK) || fd_nonblocking(pipe_fd)))
        return errno = EAGAIN, -1;
    return 0;
}

/* Socket to pipe: peek, let the kernel move into the pipe what fits, then
 * consume exactly that from the socket. */
static ssize_t sock_to_pipe(struct lf_sock *s, int in_fd, int out_fd, size_t len, unsigned flags)
{
    if (!is_pipe(out_fd))
        return errno = EINVAL, -1;
    struct scratch sp;
    if (!len || pipe_refuses(out_fd, flags) < 0 || scratch_open(&sp) < 0)
        return len ? -1 : 0;
    char *buf = malloc(sp.size);
    ssize_t r = -1;
    if (!buf) {
        errno = ENOMEM;
    } else {
        struct iovec iov = { buf, len < sp.size ? len : sp.size };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
        r = sock_recv(s, in_fd, &m, MSG_PEEK);
        if (r > 0)
            r = libc.write(sp.w, buf, (size_t)r);
        if (r > 0) {
            sp.left = (size_t)r;
            r = real_splice_fn()(sp.r, NULL, out_fd, NULL, (size_t)r, flags);
        }
        if (r > 0) {
            sp.left -= (size_t)r;
            iov.iov_len = (size_t)r;
            sock_recv(s, in_fd, &m, MSG_DONTWAIT);
        }
    }
    int e = errno;
    scratch_close(&sp, buf);
    free(buf);
    errno = e;
    return r;
}

LF_EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
                         unsigned int flags)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    __typeof__(real_splice) real_splice_now;
    *(void **)&real_splice_now = dlsym_next_cached((void **)&real_splice, "splice");
    struct lf_sock *out = fdtable_acquire(fd_out), *in = fdtable_acquire(fd_in);
    ssize_t r;
    if (out && is_ours(out) && !off_in)
        r = pipe_to_sock(out, fd_out, fd_in, len, flags);
    else if (in && is_ours(in) && !off_out)
        r = sock_to_pipe(in, fd_in, fd_out, len, flags);
    else
        r = real_splice_now(fd_in, off_in, fd_out, off_out, len, flags);
    int e = errno;
    if (out)
        sock_put(out);
    if (in)
        sock_put(in);
    errno = e;
    return r;
}
