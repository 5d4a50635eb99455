/*
 * stdio.c - stdio streams on switched sockets.
 *
 * glibc's stdio reads and writes a FILE made by fdopen() with its own
 * internal read() and write(), which no interposition sees.  On a socket
 * whose peer already writes the ring, fgets() then waited on TCP for ever:
 * the bytes were in the ring.  Writes can go back to TCP without the peer
 * (conn.c, TX_BACK), reads cannot (docs/design.md, 4.4).  So fdopen() of a
 * switched socket makes its FILE with fopencookie(), whose reads and writes
 * are our read() and write(): the stream reads the ring, and its writes stay
 * there too.  The FILE carries the descriptor in glibc's _fileno, as the
 * one fdopen() makes does, so that fileno() answers it and fclose() ends in
 * close() of it (glibc closes a cookie stream only while that field is not
 * -1).  A socket not switched yet keeps libc's own FILE (interpose.c's
 * fdopen: it then stays on TCP for what stdio does past us).
 *
 * The same for stdin: a connection that comes onto descriptor 0 and cannot
 * be held on TCP there (its client took the answer: a server read the
 * request through us, then runs a stdio handler on the socket, in a new
 * image, as a CGI reads its POST body, or in a forked child after dup2())
 * is read by a stream of ours that becomes stdin: in a new image before
 * main() uses it, in a running one when libc's stdin holds no byte read
 * ahead (else those would be lost; the old FILE is left as it is: closing
 * it would close descriptor 0).  One held stays libc's (pending.c, 4.3).
 * Our stream reads descriptor 0 whatever comes there later: read() passes
 * a file that is not ours to libc.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Our streams, for freopen() (glibc's own reopens only its FILEs: a
 * cookie stream's wide-character part is -1 by design, it crashed) and
 * for stdin. */
struct stream {
    int fd;
    FILE *f;
    struct stream *next;
};
static struct stream *streams;
static pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;

/* f's record, or NULL when f is not one of ours. */
static struct stream *stream_of(FILE *f)
{
    lf_lock(&streams_lock);
    struct stream *st = streams;
    while (st && st->f != f)
        st = st->next;
    lf_unlock(&streams_lock);
    return st;
}

static ssize_t stream_read(void *cookie, char *buf, size_t len)
{
    return read(((struct stream *)cookie)->fd, buf, len);
}

/* All of it, as libc's write of a FILE does, which also stops at the
 * first error (EINTR too): what went before it counts, and stdio marks
 * the stream's error. */
static ssize_t stream_write(void *cookie, const char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(((struct stream *)cookie)->fd, buf + done, len - done);
        if (n <= 0)
            return done ? (ssize_t)done : -1;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* lseek(): ESPIPE on the socket, a position once freopen() put a file
 * there. */
static int stream_seek(void *cookie, off64_t *pos, int whence)
{
    off64_t at = lseek64(((struct stream *)cookie)->fd, *pos, whence);
    if (at < 0)
        return -1;
    *pos = at;
    return 0;
}

static int stream_close(void *cookie)
{
    struct stream *st = cookie;
    lf_lock(&streams_lock);
    for (struct stream **p = &streams; *p; p = &(*p)->next)
        if (*p == st) {
            *p = st->next;
            break;
        }
    lf_unlock(&streams_lock);
    int fd = st->fd;
    free(st);
    return close(fd);
}

FILE *stdio_stream_open(int fd, const char *mode)
{
    struct stream *st = malloc(sizeof *st);
    if (!st)
        return errno = ENOMEM, NULL;
    st->fd = fd;
    cookie_io_functions_t io = {
        .read = stream_read, .write = stream_write, .seek = stream_seek, .close = stream_close,
    };
    FILE *f = fopencookie(st, mode, io);
    if (!f) {
        free(st);
        return NULL;
    }
#ifdef __GLIBC__
    f->_fileno = fd;
#endif
    st->f = f;
    lf_lock(&streams_lock);
    st->next = streams;
    streams = st;
    lf_unlock(&streams_lock);
    int fl = mode[0] == 'a' ? fcntl(fd, F_GETFL) : -1;
    if (fl >= 0 && !(fl & O_APPEND))   /* as glibc's fdopen("a") sets it */
        fcntl(fd, F_SETFL, fl | O_APPEND);
    return f;
}

/* stdin's FILE holds no byte read ahead, nor one pushed back (glibc's
 * backup area, _IO_IN_BACKUP in its libio.h): replaced, it loses nothing. */
static int stdin_drained(void)
{
#ifdef __GLIBC__
    return stdin->_IO_read_ptr == stdin->_IO_read_end && !(stdin->_flags & 0x0100);
#else
    return 0;
#endif
}

void stdio_stdin_through_us(void)
{
    struct lf_sock *s = fdtable_acquire(STDIN_FILENO);
    int fast = s && sock_kind(s) == LF_FAST && !__atomic_load_n(&s->conn->held, __ATOMIC_RELAXED);
    if (s)
        sock_put(s);
    FILE *f = fast && !stream_of(stdin) && stdin_drained() ? stdio_stream_open(STDIN_FILENO, "r") : NULL;
    if (f)
        stdin = f;
}

/* fopen()'s flags for a mode: its first letter, '+', 'x', 'e'. */
static int open_flags(const char *mode)
{
    int rw = strchr(mode, '+') ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;
    int f = mode[0] == 'w' ? O_CREAT | O_TRUNC : mode[0] == 'a' ? O_CREAT | O_APPEND : 0;
    return rw | f | (strchr(mode, 'x') ? O_EXCL : 0) | (strchr(mode, 'e') ? O_CLOEXEC : 0);
}

/* freopen() of one of our streams, as glibc's does it for its own FILEs:
 * the new file opened, then moved onto the stream's descriptor (a NULL
 * name opens /proc/self/fd/N, which a socket refuses), the stream's
 * buffer and flags reset; on failure the old descriptor closed.  The
 * stream keeps the read and write rights of its first mode.  0: fp is not
 * ours, *out untouched. */
int stdio_stream_reopen(const char *path, const char *mode, FILE *fp, FILE **out)
{
    struct stream *st = stream_of(fp);
    if (!st)
        return 0;
    fflush(fp);
    char self[64];
    if (!path) {
        snprintf(self, sizeof self, "/proc/self/fd/%d", st->fd);
        path = self;
    }
    int nfd = open(path, open_flags(mode), 0666);
    if (nfd < 0 || (nfd != st->fd && dup3(nfd, st->fd, strchr(mode, 'e') ? O_CLOEXEC : 0) < 0)) {
        int e = errno;
        if (nfd >= 0)
            close(nfd);
        close(st->fd);
        errno = e;
        *out = NULL;
        return 1;
    }
    if (nfd != st->fd)
        close(nfd);
    __fpurge(fp);
    clearerr(fp);
    *out = fp;
    return 1;
}
