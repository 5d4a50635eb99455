/* sendfile() onto a fast connection reads the file straight into the ring
 * (one copy, not two through a buffer).  What the program sees must stay
 * the kernel's: counts, the offset it passed or the file's position when
 * it passed none, the file's end, a file it may not read or that is not a
 * file, a peer that stops reading (non-blocking: a short count, then
 * EAGAIN), a peer gone (EPIPE), and every byte in order at the other end.
 * Runs over kernel TCP and over loopfast; the transcripts must be equal. */
#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>

#include "helpers.h"
#include "transcript.h"

#define FILE_SIZE ((3u << 20) + 12345)   /* not a multiple of a page or a chunk */

static unsigned char byte_at(size_t pos)
{
    return (unsigned char)((pos * 2654435761u) >> 13);
}

static int make_file(void)
{
    int fd = temp_file();
    static unsigned char buf[1 << 16];
    for (size_t at = 0; at < FILE_SIZE; at += sizeof buf) {
        size_t n = FILE_SIZE - at < sizeof buf ? FILE_SIZE - at : sizeof buf;
        for (size_t k = 0; k < n; k++)
            buf[k] = byte_at(at + k);
        CHECK(write_full(fd, buf, n) == (ssize_t)n, "write file");
    }
    return fd;
}

/* Reads `want` bytes and checks they are the file's from `from`. */
static int reads_file_bytes(int fd, size_t from, size_t want)
{
    static unsigned char buf[1 << 16];
    for (size_t got = 0; got < want;) {
        size_t ask = want - got < sizeof buf ? want - got : sizeof buf;
        if (read_full(fd, buf, ask) != (ssize_t)ask)
            return 0;
        for (size_t k = 0; k < ask; k++)
            if (buf[k] != byte_at(from + got + k))
                return 0;
        got += ask;
    }
    return 1;
}

/* A blocking socket: with an offset, without one (the file's position),
 * past and at the file's end, and a count larger than the ring (the call
 * waits for a reader in another process). */
static void blocking_parts(int c, int s, int file)
{
    off_t off = 100;
    note_result("with-offset", sendfile(c, file, &off, 1u << 20));
    note(" off:%lld pos:%lld", (long long)off, (long long)lseek(file, 0, SEEK_CUR));
    note(" bytes:%d", reads_file_bytes(s, 100, 1u << 20));

    CHECK(lseek(file, 5000, SEEK_SET) == 5000, "lseek");
    note_result("no-offset", sendfile(c, file, NULL, 70000));
    note(" pos:%lld bytes:%d", (long long)lseek(file, 0, SEEK_CUR), reads_file_bytes(s, 5000, 70000));

    off = FILE_SIZE - 1000;
    note_result("past-end", sendfile(c, file, &off, 1u << 20));
    note(" off:%lld bytes:%d", (long long)off, reads_file_bytes(s, FILE_SIZE - 1000, 1000));
    note_result("at-end", sendfile(c, file, &off, 4096));
    note_result("zero", sendfile(c, file, &off, 0));

    off = 0;   /* the whole file in one call (the ring is smaller: it waits for the reader) */
    pid_t reader = fork();
    CHECK(reader >= 0, "fork");
    if (reader == 0)
        _exit(reads_file_bytes(s, 0, FILE_SIZE) ? 0 : 1);
    note_result("whole", sendfile(c, file, &off, FILE_SIZE));
    note(" reader:%d", child_status(reader));
}

static void bad_sources(int c)
{
    char path[] = "/tmp/loopfast-sendfile-XXXXXX";
    int wronly = mkstemp(path);
    CHECK(wronly >= 0, "mkstemp");
    CHECK(write_full(wronly, "abc", 3) == 3, "write");
    int w = open(path, O_WRONLY);
    unlink(path);
    off_t off = 0;
    note_result("write-only", sendfile(c, w, &off, 3));
    note_result("bad-fd", sendfile(c, 999, &off, 3));
    close(w), close(wronly);
}

/* The peer stops reading: a non-blocking socket takes what fits, then
 * EAGAIN; once the peer is gone, EPIPE. */
static void stalled_then_gone(int c, int s, int file)
{
    fcntl(c, F_SETFL, O_NONBLOCK);
    off_t off = 0;
    long total = 0;
    ssize_t n;
    int calls = 0;
    while ((n = sendfile(c, file, &off, 1u << 20)) > 0 && calls++ < 10000) {
        total += n;
        if (off >= (off_t)FILE_SIZE)
            off = 0;
    }
    note(" stalled:%s", n < 0 && errno == EAGAIN ? "EAGAIN" : strerror(errno));
    note(" some:%d", total > 0);
    close(s);
    usleep(20000);
    signal(SIGPIPE, SIG_IGN);
    n = sendfile(c, file, &off, 4096);
    if (n > 0)   /* the kernel's first write after a close may be taken */
        n = sendfile(c, file, &off, 4096);
    note_result("gone", n);
}

static void run(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s, file = make_file();
    fast_pair(AF_INET, optin, &c, &s);
    blocking_parts(c, s, file);
    bad_sources(c);
    stalled_then_gone(c, s, file);
    note(" fast:%d", loopfast_fd_is_fast(c));
    close(c), close(file);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    alarm(60);
    char kernel[sizeof transcript], fast[sizeof transcript];
    run(0, kernel, sizeof kernel);
    run(1, fast, sizeof fast);
    /* the last word differs by design: whether the socket is fast */
    char *k = strstr(kernel, " fast:0"), *f = strstr(fast, " fast:1");
    CHECK(k && f, "fast path: kernel %s, loopfast %s", k ? "ok" : "fast?", f ? "yes" : "no");
    *k = *f = 0;
    return transcripts_differ("sendfile onto a connection", kernel, fast);
}
