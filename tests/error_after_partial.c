/* A call that moved some bytes and then met the connection's reset
 * returns its count, and Linux keeps the error for the next call.  A
 * blocking send is done in pieces under loopfast (socket.c: send_whole),
 * and the piece that met the reset took the error: python's writer, its
 * first 2 KiB sent, then blocked, got EPIPE (and SIGPIPE, which ends a C
 * program) from its next send() when its reader was killed with bytes
 * unread, where Linux says ECONNRESET.  The same for a MSG_WAITALL read cut
 * short.  Both ways, kernel TCP the reference:
 * - a blocking writer (SIGPIPE left at its default) whose reader never
 *   read (the connection stays on TCP) or read a byte and answered one
 *   (the connection switches), then is killed: the writer's first error;
 * - the same writer by sendfile() (8 MiB a call) or splice() (1 MiB a
 *   call): the kernel's splice drops the error for its short count, and the
 *   next call raises SIGPIPE (ours said ECONNRESET, without the signal);
 * - a MSG_WAITALL read of 100000 bytes whose peer wrote 10000 and was
 *   killed with our bytes unread: the read's count, then the next read's
 *   result and error. */
#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/wait.h>

#include "helpers.h"

#define PIECE 65536

/* The reader end: in `exchange` mode a byte read and one answered, then
 * it sleeps until it is killed. */
static int exchange;

static void sleeping_reader(int l)
{
    int c = accept(l, NULL, NULL);
    char b;
    if (c < 0 || (exchange && (read_full(c, &b, 1) != 1 || write_full(c, "y", 1) != 1)))
        _exit(2);
    for (;;)
        pause();
}

/* How the writer writes: write(), sendfile() or splice() from a file. */
enum how { BY_WRITE, BY_SENDFILE, BY_SPLICE };
static enum how how;

/* One blocking call of the writer's kind: its count, or -1 and errno.  A
 * sendfile() asks for 8 MiB, a splice() for 1 MiB: more than the reader's
 * side holds, so the call that waits has moved bytes when the reset comes. */
static ssize_t write_piece(int fd, int file, off_t *pos, int pipe_fds[2])
{
    static char buf[PIECE];
    if (how == BY_WRITE)
        return write(fd, buf, sizeof buf);
    if (how == BY_SENDFILE)
        return sendfile(fd, file, pos, 8u << 20);
    ssize_t in = splice(file, pos, pipe_fds[1], NULL, 1u << 20, 0);
    if (in <= 0)
        _exit(4);
    ssize_t n = splice(pipe_fds[0], NULL, fd, NULL, (size_t)in, 0);
    static char drain[1u << 20];   /* what the socket did not take */
    if (n >= 0 && n < in && read_full(pipe_fds[0], drain, (size_t)(in - n)) != in - n)
        _exit(5);
    return n;
}

/* The writer: a megabyte and a little written (then it says so on
 * `ready`), then blocking calls of its kind until one fails; exits with its
 * errno (or is ended by SIGPIPE). */
static void writer(const struct sockaddr_storage *addr, socklen_t len, int optin, int ready)
{
    signal(SIGPIPE, SIG_DFL);
    int fd = connect_to(addr, len, optin);
    char b;
    if (exchange && (write_full(fd, "x", 1) != 1 || read_full(fd, &b, 1) != 1))
        _exit(2);
    int file = temp_file(), pipe_fds[2];
    if (file < 0 || ftruncate(file, 1ll << 30) != 0 || pipe(pipe_fds) != 0 ||
        fcntl(pipe_fds[1], F_SETPIPE_SZ, 1 << 20) < 0)
        _exit(6);
    static char first[(1u << 20) + 1000];
    if (write_full(fd, first, sizeof first) != sizeof first || write(ready, "r", 1) != 1)
        _exit(3);
    off_t pos = 0;
    for (;;)
        if (write_piece(fd, file, &pos, pipe_fds) < 0)
            _exit(errno);
}

/* The writer's exit status once its reader was killed. */
static int writer_status(int optin)
{
    return writer_status_after_kill(optin, sleeping_reader, writer);
}

static void sends(const char *what, int expected)
{
    int k = writer_status(0), f = writer_status(1);
    printf("%s: the writer's status, kernel %d, loopfast %d (%d: ECONNRESET, %d: SIGPIPE)\n", what,
           k, f, ECONNRESET, 128 + SIGPIPE);
    CHECK(k == expected, "%s: over kernel TCP the writer exited %d", what, k);
    CHECK(f == k, "%s: with loopfast the writer exited %d, over kernel TCP %d", what, f, k);
}

/* The dying end of the read: a byte read and one answered, 10000 bytes
 * written, then asleep with the reader's 1000 unread. */
static void dying_writer(int l)
{
    int c = accept(l, NULL, NULL);
    static char buf[10000];
    char b;
    if (c < 0 || read_full(c, &b, 1) != 1 || write_full(c, "y", 1) != 1 ||
        write_full(c, buf, sizeof buf) != sizeof buf)
        _exit(2);
    for (;;)
        pause();
}

struct waitall {
    ssize_t first, second;
    int second_err;
};

static struct waitall waitall_cut_short(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t peer = fork_serving(optin, &addr, &len, dying_writer);
    int fd = connect_to(&addr, len, optin);
    static char unread[1000], buf[100000];
    char b;
    CHECK(write_full(fd, "x", 1) == 1 && read_full(fd, &b, 1) == 1, "exchange");
    CHECK(write_full(fd, unread, sizeof unread) == sizeof unread, "write");
    pid_t killer = fork();
    CHECK(killer >= 0, "fork");
    if (killer == 0) {
        sleep_ms(300);   /* the read below waits for more by then */
        kill(peer, SIGKILL);
        _exit(0);
    }
    struct waitall w;
    w.first = recv(fd, buf, sizeof buf, MSG_WAITALL);
    w.second = recv(fd, buf, sizeof buf, 0);
    w.second_err = w.second < 0 ? errno : 0;
    child_status(killer);
    child_status(peer);
    close(fd);
    return w;
}

static void waitall_reads(void)
{
    struct waitall k = waitall_cut_short(0), f = waitall_cut_short(1);
    printf("MSG_WAITALL read cut short: kernel %zd, then %zd (%s); loopfast %zd, then %zd (%s)\n",
           k.first, k.second, strerror(k.second_err), f.first, f.second, strerror(f.second_err));
    CHECK(k.first == 10000 && k.second == -1 && k.second_err == ECONNRESET,
          "over kernel TCP: %zd, then %zd (%s)", k.first, k.second, strerror(k.second_err));
    CHECK(f.first == k.first && f.second == k.second && f.second_err == k.second_err,
          "with loopfast: %zd, then %zd (%s)", f.first, f.second, strerror(f.second_err));
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    exchange = 0;
    sends("reader that never read (TCP)", ECONNRESET);
    exchange = 1;
    sends("reader that read and answered a byte (switched)", ECONNRESET);
    how = BY_SENDFILE;   /* the kernel's splice drops the error for its count */
    sends("sendfile, reader switched", 128 + SIGPIPE);
    how = BY_SPLICE;
    sends("splice, reader switched", 128 + SIGPIPE);
    waitall_reads();
    return 0;
}
