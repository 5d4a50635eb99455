/* splice() and sendfile() with a socket on one end wait, or not, as the
 * kernel's do (Linux 6.18): on the pipe only without SPLICE_F_NONBLOCK and
 * the pipe's O_NONBLOCK, on the socket only without the socket's
 * O_NONBLOCK; they move what fits and take from the source only what was
 * delivered.  Each case runs on kernel TCP (no opt-in) and on a fast pair;
 * both must give the outcome written here, which is the kernel's.
 * HAProxy's `option splice-response` hung on the old code: socket to a
 * half-full blocking pipe with SPLICE_F_NONBLOCK blocked (case A5). */
#include "helpers.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>

enum { OK_BYTES, ZERO, E_AGAIN, E_PIPE, BLOCKS };
static const char *const names[] = { "bytes", "0", "EAGAIN", "EPIPE", "blocks" };

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) { (void)sig; alarmed = 1; }

static char buf[1 << 16];

/* The outcome of one call that may block: a blocked call is interrupted
 * after half a second (no SA_RESTART) and reported as BLOCKS. */
#define OUTCOME(res, expr) do { alarmed = 0; ualarm(500000, 0); errno = 0; \
        ssize_t r_ = (expr); int e_ = errno; ualarm(0, 0); \
        *(res) = r_ > 0 ? r_ : 0; \
        outcome_ = alarmed && r_ < 0 && e_ == EINTR ? BLOCKS : r_ > 0 ? OK_BYTES : r_ == 0 ? ZERO : \
                   e_ == EAGAIN ? E_AGAIN : e_ == EPIPE ? E_PIPE : -e_; } while (0)

static int outcome_;
static const char *mode;

static void expect(const char *what, int want)
{
    if (outcome_ != want)
        FAIL("%s (%s): got %s, the kernel gives %s", what, mode,
             outcome_ < 0 ? strerror(-outcome_) : names[outcome_], names[want]);
}

static void set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static void fill_pipe(int w)
{
    set_nonblock(w, 1);
    while (write(w, buf, sizeof buf) > 0)
        ;
    while (write(w, buf, 1) > 0)
        ;
    set_nonblock(w, 0);
}

/* Until the socket takes no more without blocking, for 10 looks 20 ms
 * apart in a row (kernel TCP moves segments to the reader in the
 * background, later on a loaded machine: 3 looks 10 ms apart left room a
 * run in three there). */
static void fill_sock(int fd)
{
    for (int quiet = 0; quiet < 10;) {
        if (send(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
            quiet = 0;
            continue;
        }
        usleep(20000);
        quiet++;
    }
}

static int pipe_queued(int fd)
{
    int n = -1;
    CHECK(ioctl(fd, FIONREAD, &n) == 0, "FIONREAD on a pipe");
    return n;
}

/* The byte at stream offset i of the pattern the tests send. */
static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + i / 251); }

static void send_pattern(int fd, size_t from, size_t len)
{
    unsigned char b[4096];
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof b ? len - done : sizeof b;
        for (size_t i = 0; i < n; i++)
            b[i] = pattern(from + done + i);
        CHECK(write_full(fd, b, n) == (ssize_t)n, "send pattern");
        done += n;
    }
}

static void check_pattern(const unsigned char *b, size_t from, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != pattern(from + i))
            FAIL("%s (%s): byte %zu differs", what, mode, from + i);
}

struct ends { int c, s, p[2]; };

static void open_ends(int optin, struct ends *e)
{
    fast_pair(AF_INET, optin, &e->c, &e->s);
    CHECK(pipe(e->p) == 0, "pipe");
}

static void close_ends(struct ends *e)
{
    close(e->c);
    close(e->s);
    close(e->p[0]);
    close(e->p[1]);
}

/* Socket to pipe. */
static void socket_to_pipe(int optin)
{
    struct ends e;
    ssize_t n;
    /* A: a full pipe, data on the socket */
    for (int v = 0; v < 4; v++) {
        open_ends(optin, &e);
        send_pattern(e.c, 0, 1000);
        fill_pipe(e.p[1]);
        if (v == 0) {
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, SPLICE_F_NONBLOCK));
            expect("A1 full pipe, SPLICE_F_NONBLOCK", E_AGAIN);
        } else if (v == 1) {
            set_nonblock(e.p[1], 1);
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, 0));
            expect("A2 full O_NONBLOCK pipe", E_AGAIN);
        } else if (v == 2) {
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, 0));
            expect("A3 full blocking pipe", BLOCKS);
        } else {
            set_nonblock(e.s, 1);
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, 0));
            expect("A4 full blocking pipe, O_NONBLOCK socket", BLOCKS);
        }
        /* nothing was taken from the socket */
        set_nonblock(e.s, 1);
        unsigned char b[2000];
        CHECK(read(e.s, b, sizeof b) == 1000, "A%d: the socket lost bytes (%s)", v + 1, mode);
        check_pattern(b, 0, 1000, "A: socket after a refused splice");
        close_ends(&e);
    }

    /* A5: HAProxy's case: with nobody reading the pipe, SPLICE_F_NONBLOCK
     * calls end in EAGAIN; every byte arrives in order afterwards. */
    open_ends(optin, &e);
    size_t total = 512 << 10, moved = 0, got = 0;
    send_pattern(e.c, 0, total);
    int tries = 0;
    do {
        OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, SPLICE_F_NONBLOCK));
        moved += (size_t)n;
        CHECK(outcome_ == OK_BYTES || outcome_ == E_AGAIN, "A5 splice (%s): %d", mode, outcome_);
    } while (outcome_ == OK_BYTES && ++tries < 64);
    expect("A5 SPLICE_F_NONBLOCK into a pipe nobody reads", E_AGAIN);
    CHECK(moved > 0 && (int)moved == pipe_queued(e.p[0]), "A5 (%s): moved %zu, the pipe holds %d",
          mode, moved, pipe_queued(e.p[0]));
    static unsigned char big[512 << 10];
    while (got < total) {
        size_t queued = (size_t)pipe_queued(e.p[0]);
        CHECK(read_full(e.p[0], big + got, queued) == (ssize_t)queued, "A5 read pipe");
        got += queued;
        if (got < total) {
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, total - got, SPLICE_F_NONBLOCK));
            expect("A5 splice after the pipe was read", OK_BYTES);
        }
    }
    check_pattern(big, 0, total, "A5 stream through the pipe");
    close_ends(&e);

    /* B: an empty socket, an empty pipe */
    for (int v = 0; v < 5; v++) {
        open_ends(optin, &e);
        if (v == 0) {
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, SPLICE_F_NONBLOCK));
            expect("B1 empty blocking socket, SPLICE_F_NONBLOCK", BLOCKS);
        } else if (v == 1) {
            set_nonblock(e.p[1], 1);
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, 0));
            expect("B2 empty blocking socket, O_NONBLOCK pipe", BLOCKS);
        } else if (v == 2) {
            set_nonblock(e.s, 1);
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, 0));
            expect("B3 empty O_NONBLOCK socket", E_AGAIN);
        } else if (v == 3) {
            shutdown(e.c, SHUT_WR);
            usleep(20000);
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, SPLICE_F_NONBLOCK));
            expect("B4 end of stream", ZERO);
        } else {
            send_pattern(e.c, 0, 100);
            close(e.p[0]);
            e.p[0] = open("/dev/null", O_RDONLY);
            signal(SIGPIPE, SIG_IGN);
            OUTCOME(&n, splice(e.s, NULL, e.p[1], NULL, 65536, 0));
            signal(SIGPIPE, SIG_DFL);
            expect("B5 a pipe nobody reads", E_PIPE);
        }
        close_ends(&e);
    }
}

/* Pipe to socket. */
static void pipe_to_socket(int optin)
{
    struct ends e;
    ssize_t n;
    for (int v = 0; v < 8; v++) {
        open_ends(optin, &e);
        if (v == 0) {
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 65536, SPLICE_F_NONBLOCK));
            expect("C1 empty pipe, SPLICE_F_NONBLOCK", E_AGAIN);
        } else if (v == 1) {
            set_nonblock(e.p[0], 1);
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 65536, 0));
            expect("C2 empty O_NONBLOCK pipe", E_AGAIN);
        } else if (v == 2) {
            set_nonblock(e.c, 1);
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 65536, 0));
            expect("C3 empty blocking pipe, O_NONBLOCK socket", BLOCKS);
        } else if (v == 3) {
            close(e.p[1]);
            e.p[1] = open("/dev/null", O_WRONLY);
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 65536, SPLICE_F_NONBLOCK));
            expect("C4 a pipe nobody writes", ZERO);
        } else if (v == 4 || v == 5) {
            write_full(e.p[1], buf, 4096);
            fill_sock(e.c);
            if (v == 5)
                set_nonblock(e.p[0], 1);
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 65536, v == 4 ? SPLICE_F_NONBLOCK : 0));
            expect("C5 full blocking socket, non-blocking pipe", BLOCKS);
            CHECK(pipe_queued(e.p[0]) == 4096, "C5 (%s): the pipe lost bytes", mode);
        } else if (v == 6) {
            write_full(e.p[1], buf, 4096);
            fill_sock(e.c);
            set_nonblock(e.c, 1);
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 65536, SPLICE_F_NONBLOCK));
            /* the kernel's socket may take a page more than send() did */
            CHECK(outcome_ == E_AGAIN || outcome_ == OK_BYTES, "C6 (%s): %d", mode, outcome_);
            CHECK(pipe_queued(e.p[0]) == 4096 - (int)n, "C6 (%s): took %zd, the pipe holds %d",
                  mode, n, pipe_queued(e.p[0]));
        } else {
            write_full(e.p[1], buf, 4096);
            close(e.s);
            e.s = open("/dev/null", O_RDONLY);
            usleep(20000);
            signal(SIGPIPE, SIG_IGN);
            for (int k = 0; k < 10; k++) {   /* the kernel may take a write before the reset */
                OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, 100, 0));
                if (outcome_ != OK_BYTES)
                    break;
                usleep(10000);
            }
            signal(SIGPIPE, SIG_DFL);
            expect("C7 a closed peer", E_PIPE);
        }
        close_ends(&e);
    }

    /* C8: a stream through pipe and socket arrives whole and in order */
    open_ends(optin, &e);
    size_t total = 256 << 10;
    static unsigned char big[256 << 10];
    for (size_t off = 0; off < total; off += 32768) {
        send_pattern(e.p[1], off, 32768);
        for (size_t left = 32768; left;) {
            OUTCOME(&n, splice(e.p[0], NULL, e.c, NULL, left, SPLICE_F_NONBLOCK | SPLICE_F_MORE));
            expect("C8 pipe to socket", OK_BYTES);
            left -= (size_t)n;
        }
    }
    CHECK(read_full(e.s, big, total) == (ssize_t)total, "C8 read");
    check_pattern(big, 0, total, "C8 stream");
    close_ends(&e);
}

/* sendfile from a file: a non-blocking socket takes what it can. */
static void send_file(int optin, int file, size_t size)
{
    struct ends e;
    ssize_t n;
    off_t off = 0;
    open_ends(optin, &e);
    fill_sock(e.c);
    set_nonblock(e.c, 1);
    OUTCOME(&n, sendfile(e.c, file, &off, 65536));
    expect("D1 sendfile to a full O_NONBLOCK socket", E_AGAIN);
    CHECK(off == 0, "D1 (%s): the offset moved", mode);
    close_ends(&e);

    open_ends(optin, &e);
    set_nonblock(e.c, 1);
    OUTCOME(&n, sendfile(e.c, file, &off, size));
    expect("D2 sendfile more than the socket holds", OK_BYTES);
    CHECK((size_t)n < size && off == n, "D2 (%s): sent %zd of %zu, offset %lld", mode, n, size,
          (long long)off);
    static unsigned char got[1 << 16];
    CHECK(read_full(e.s, got, sizeof got) == (ssize_t)sizeof got, "D2 read");
    check_pattern(got, 0, sizeof got, "D2 file through the socket");
    off = (off_t)size;
    OUTCOME(&n, sendfile(e.c, file, &off, 100));
    expect("D3 sendfile at the file's end", ZERO);
    close_ends(&e);
}

/* E: many small moves each way, every byte in order, and the process's
 * descriptors the same after the first as after the last (loopfast keeps
 * one scratch pipe, at numbers of its own, not one per call). */
static void many_moves(int optin)
{
    struct ends e;
    static unsigned char got[1000];
    open_ends(optin, &e);
    int fds_after_first = -1;
    for (int i = 0; i < 300; i++) {
        send_pattern(e.c, (size_t)i * sizeof got, sizeof got);
        size_t moved = 0;
        while (moved < sizeof got) {
            ssize_t n = splice(e.s, NULL, e.p[1], NULL, sizeof got - moved, 0);
            CHECK(n > 0, "E1 splice %d (%s): %s", i, mode, strerror(errno));
            moved += (size_t)n;
        }
        CHECK(read_full(e.p[0], got, sizeof got) == sizeof got, "E1 pipe read");
        check_pattern(got, (size_t)i * sizeof got, sizeof got, "E1 socket to pipe");
        CHECK(write_full(e.p[1], got, sizeof got) == sizeof got, "E2 pipe write");
        for (moved = 0; moved < sizeof got;) {
            ssize_t n = splice(e.p[0], NULL, e.s, NULL, sizeof got - moved, 0);
            CHECK(n > 0, "E2 splice %d (%s): %s", i, mode, strerror(errno));
            moved += (size_t)n;
        }
        CHECK(read_full(e.c, got, sizeof got) == sizeof got, "E2 socket read");
        check_pattern(got, (size_t)i * sizeof got, sizeof got, "E2 pipe to socket");
        if (i == 0)
            fds_after_first = count_open_fds();
    }
    CHECK(count_open_fds() == fds_after_first, "E (%s): %d descriptors after 300 moves, %d after one",
          mode, count_open_fds(), fds_after_first);
    close_ends(&e);
}

int main(void)
{
#ifdef UNDER_TSAN
    SKIP("ThreadSanitizer defers signal handlers itself: a blocked call's EINTR comes before `alarmed`");
#endif
    struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    char path[] = "/tmp/loopfast-splice.XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0, "mkstemp");
    unlink(path);
    size_t size = 32 << 20;   /* more than kernel TCP or a ring holds unread */
    send_pattern(file, 0, size);
    for (int optin = 0; optin <= 1; optin++) {
        mode = optin ? "loopfast" : "kernel TCP";
        socket_to_pipe(optin);
        pipe_to_socket(optin);
        send_file(optin, file, size);
        many_moves(optin);
    }
    return 0;
}
