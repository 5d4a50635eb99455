/*
 * sendfile.c - sendfile() and splice() with a fast connection on one end.
 *
 * The kernel would move the bytes onto the TCP socket, where a fast peer
 * never reads them, so for our descriptors the data is copied through user
 * space onto the ring instead.  No byte is taken from the source that could
 * not be delivered: file positions are moved by what was sent, and pipe data
 * is peeked or sized to the room available before it is consumed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK (1 << 16)

static ssize_t (*real_sendfile)(int, int, off_t *, size_t);
static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned);

static int is_ours(struct lf_sock *s)
{
    int k = sock_kind(s);
    return k == LF_FAST || k == LF_PENDING;
}

static ssize_t send_buf(struct lf_sock *s, int fd, const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    return sock_send(s, fd, &m, 0);
}

/* Copies from in_fd at *pos: returns bytes sent, or -1 with errno. */
static ssize_t file_to_sock(struct lf_sock *s, int out_fd, int in_fd, off_t *pos, size_t count)
{
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
        ssize_t w = send_buf(s, out_fd, buf, (size_t)n);
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
    if (!real_sendfile)
        *(void **)&real_sendfile = dlsym_next("sendfile");
    struct lf_sock *s = fdtable_acquire(out_fd);
    if (!s || !is_ours(s)) {
        if (s)
            sock_put(s);
        return real_sendfile(out_fd, in_fd, offset, count);
    }
    off_t pos = offset ? *offset : lseek(in_fd, 0, SEEK_CUR);
    ssize_t r = pos < 0 ? -1 : file_to_sock(s, out_fd, in_fd, &pos, count);
    int e = errno;
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

/* Pipe to socket: never read more from the pipe than the socket takes. */
static ssize_t pipe_to_sock(struct lf_sock *s, int out_fd, int in_fd, size_t len, unsigned flags)
{
    char *buf = malloc(CHUNK);
    if (!buf)
        return errno = ENOMEM, -1;
    size_t want = len < CHUNK ? len : CHUNK;
    int nonblock = (flags & SPLICE_F_NONBLOCK) || fd_nonblocking(out_fd);
    if (nonblock && sock_kind(s) == LF_FAST && s->conn->sh->side[s->conn->me].tx_switched) {
        ssize_t room = ring_writable(&s->conn->tx);
        if (room <= 0) {
            free(buf);
            return errno = room < 0 ? ECONNRESET : EAGAIN, -1;
        }
        if ((size_t)room < want)
            want = (size_t)room;
    }
    ssize_t n = libc.read(in_fd, buf, want);
    ssize_t r = n;
    if (n > 0) {
        size_t done = 0;
        while (done < (size_t)n) {   /* what left the pipe must be delivered */
            ssize_t w = send_buf(s, out_fd, buf + done, (size_t)n - done);
            if (w < 0 && errno == EAGAIN) {
                struct pollfd p = { out_fd, POLLOUT, 0 };
                poll(&p, 1, -1);
                continue;
            }
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        r = done ? (ssize_t)done : -1;
    }
    free(buf);
    return r;
}

/* Socket to pipe: peek, write what the pipe takes, then consume that much. */
static ssize_t sock_to_pipe(struct lf_sock *s, int in_fd, int out_fd, size_t len, unsigned flags)
{
    char *buf = malloc(CHUNK);
    if (!buf)
        return errno = ENOMEM, -1;
    struct iovec iov = { buf, len < CHUNK ? len : CHUNK };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    int rflags = MSG_PEEK | ((flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0);
    ssize_t n = sock_recv(s, in_fd, &m, rflags);
    ssize_t r = n;
    if (n > 0) {
        r = libc.write(out_fd, buf, (size_t)n);
        if (r > 0) {
            iov.iov_len = (size_t)r;
            sock_recv(s, in_fd, &m, 0);
        }
    }
    free(buf);
    return r;
}

LF_EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
                         unsigned int flags)
{
    if (__builtin_expect(!lf_initialised, 0))
        lf_init();
    if (!real_splice)
        *(void **)&real_splice = dlsym_next("splice");
    struct lf_sock *out = fdtable_acquire(fd_out), *in = fdtable_acquire(fd_in);
    ssize_t r;
    if (out && is_ours(out) && !off_in)
        r = pipe_to_sock(out, fd_out, fd_in, len, flags);
    else if (in && is_ours(in) && !off_out)
        r = sock_to_pipe(in, fd_in, fd_out, len, flags);
    else
        r = real_splice(fd_in, off_in, fd_out, off_out, len, flags);
    int e = errno;
    if (out)
        sock_put(out);
    if (in)
        sock_put(in);
    errno = e;
    return r;
}
