/* A socket given to fdopen() after its switch: stdio reads and writes with
 * libc's internal read() and write(), which pass us by, so fgets() on it
 * waited on TCP for ever while the peer's bytes sat on the ring (a C client
 * that talks with read() and write() first, then hands its socket to
 * stdio for a line protocol).  Its stream now reads and writes through
 * loopfast (src/stdio.c).  Over kernel TCP and over loopfast, with the
 * transcripts compared: lines and a tail read back, EOF, fileno(), ftell()'s
 * error, fclose() closing the descriptor (the peer's EOF), stdio's writes
 * in order with write()'s, "a"'s O_APPEND, and an fgets() that waits for a
 * line a forked peer writes later; freopen() of the stream (glibc crashed on
 * a cookie stream). */
#include <fcntl.h>
#include <sys/wait.h>

#include "helpers.h"
#include "transcript.h"

static void note_line(const char *what, const char *got)
{
    note(" %s:%s", what, got ? got : "(null)");
}

/* Lines, a tail without a newline, then the peer's EOF. */
static void reading(int optin, char *out, size_t size)
{
    int a, b;
    char line[64];
    transcript[0] = 0;
    fast_pair(AF_INET, optin, &a, &b);
    int fd = dup(a);
    FILE *f = fdopen(fd, "r");
    CHECK(f, "fdopen: %s", strerror(errno));
    note(" fileno-same:%d", fileno(f) == fd);
    CHECK(write_full(b, "one\ntwo\ntail", 12) == 12, "peer write");
    CHECK(shutdown(b, SHUT_WR) == 0, "shutdown");
    note_line("fgets", fgets(line, sizeof line, f));
    note_line("fgets", fgets(line, sizeof line, f));
    size_t n = fread(line, 1, sizeof line - 1, f);
    line[n] = 0;
    note(" fread:%zu:%s eof:%d", n, line, feof(f) != 0);
    errno = 0;
    note_result("ftell", ftell(f));
    note(" fclose:%d", fclose(f));
    note_result("fcntl-after-fclose", fcntl(fd, F_GETFD));
    close(a);
    close(b);
    snprintf(out, size, "%s", transcript);
}

/* "r+": a greeting read, an answer written with fprintf, fclose as the
 * last close (the peer reads EOF). */
static void both_ways(int optin, char *out, size_t size)
{
    int a, b;
    char line[64];
    transcript[0] = 0;
    fast_pair(AF_INET, optin, &a, &b);
    FILE *f = fdopen(a, "r+");
    CHECK(f, "fdopen: %s", strerror(errno));
    CHECK(write_full(b, "hello\n", 6) == 6, "greeting");
    note_line("fgets", fgets(line, sizeof line, f));
    fprintf(f, "answer %d\n", 42);
    note(" fflush:%d", fflush(f));
    ssize_t n = read(b, line, sizeof line - 1);
    line[n > 0 ? n : 0] = 0;
    note(" peer-read:%zd:%s", n, line);
    if (optin)
        CHECK(loopfast_fd_is_fast(a) == 1, "the stream's socket left the fast path");
    note(" fclose:%d", fclose(f));
    note_result("peer-eof", read(b, line, sizeof line));
    close(b);
    snprintf(out, size, "%s", transcript);
}

/* "w": stdio's bytes and write()'s on one socket arrive in order. */
static void writing(int optin, char *out, size_t size)
{
    int a, b;
    static char big[100000], got[100100];
    transcript[0] = 0;
    fast_pair(AF_INET, optin, &a, &b);
    FILE *f = fdopen(dup(a), "w");
    CHECK(f, "fdopen: %s", strerror(errno));
    memset(big, 'x', sizeof big);
    fputs("[stdio]", f);
    fflush(f);
    CHECK(write_full(a, "[write]", 7) == 7, "write");
    fwrite(big, 1, sizeof big, f);
    fputs("[end]", f);
    note(" fclose:%d", fclose(f));
    FILE *g = fdopen(dup(a), "a");   /* glibc sets O_APPEND, even on a socket */
    CHECK(g, "fdopen a: %s", strerror(errno));
    note(" append:%d", (fcntl(fileno(g), F_GETFL) & O_APPEND) != 0);
    fclose(g);
    close(a);
    size_t want = 7 + 7 + sizeof big + 5, have = 0;
    ssize_t r;
    while (have < want && (r = read(b, got + have, sizeof got - have)) > 0)
        have += (size_t)r;
    note(" peer-read:%zu order:%d", have,
         !memcmp(got, "[stdio][write]", 14) && !memcmp(got + 14 + sizeof big, "[end]", 5));
    note_result("peer-eof", read(b, got, 1));
    close(b);
    snprintf(out, size, "%s", transcript);
}

/* freopen() of the stream onto a file (a daemon's freopen of stdin), then
 * of a fresh stream with no name (a socket cannot be reopened so: the
 * descriptor is closed, NULL). */
static void reopening(int optin, char *out, size_t size)
{
    int a, b;
    char line[64], path[] = "/tmp/loopfast-fdopen-XXXXXX";
    transcript[0] = 0;
    int tmp = mkstemp(path);
    CHECK(tmp >= 0 && write_full(tmp, "from the file\nsecond\n", 21) == 21, "temp file");
    close(tmp);
    fast_pair(AF_INET, optin, &a, &b);
    int fd = dup(a);
    FILE *f = fdopen(fd, "r");
    CHECK(f && write_full(b, "first\nunread\n", 14) == 14, "fdopen, peer write");
    note_line("fgets", fgets(line, sizeof line, f));
    FILE *g = freopen(path, "r", f);
    note(" freopen:%d fileno-kept:%d", g == f, g && fileno(g) == fd);
    note_line("fgets-file", g ? fgets(line, sizeof line, g) : NULL);
    errno = 0;
    note_result("ftell", g ? ftell(g) : -1);
    note(" fclose:%d", g ? fclose(g) : -2);
    FILE *h = fdopen(dup(a), "r");
    CHECK(h, "fdopen: %s", strerror(errno));
    errno = 0;
    FILE *r = freopen(NULL, "r", h);
    note(" freopen-null:%s", r ? "stream" : strerror(errno));
    if (r)
        fclose(r);
    close(a);
    close(b);
    unlink(path);
    snprintf(out, size, "%s", transcript);
}

/* fgets() waits for a line a forked peer writes 50 ms later. */
static void waiting(int optin, char *out, size_t size)
{
    int a, b;
    char line[64];
    transcript[0] = 0;
    fast_pair(AF_INET, optin, &a, &b);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(a);
        usleep(50000);
        _exit(write_full(b, "late line\n", 10) == 10 ? 0 : 1);
    }
    close(b);
    FILE *f = fdopen(a, "r");
    CHECK(f, "fdopen: %s", strerror(errno));
    note_line("fgets", fgets(line, sizeof line, f));
    note_line("fgets-eof", fgets(line, sizeof line, f));
    note(" peer:%d fclose:%d", child_status(pid), fclose(f));
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(30);   /* a hang (fgets on TCP while the bytes are on the ring) is a failure */
    int differ = transcripts_of("reading", reading);
    differ |= transcripts_of("both ways", both_ways);
    differ |= transcripts_of("writing", writing);
    differ |= transcripts_of("reopening", reopening);
    differ |= transcripts_of("waiting", waiting);
    return differ;
}
