/* A program may close a descriptor past close(): libuv (node.js) calls
 * syscall(SYS_close, fd), and a program may make the system call itself.
 * loopfast kept the closed connection under the number, and the next
 * socket the kernel gave that number was answered from the dead
 * connection's state: a node server's second connection read EOF after its
 * first 8 bytes.  Each case makes a fast connection, closes the server's
 * end past close(), and then uses a new connection (from a plain client,
 * so that it stays on TCP) whose descriptors take the freed numbers:
 * its bytes, EOF and readiness must be the kernel's.  Kernel TCP and
 * loopfast (both ends opted in): the transcripts must be the same. */
#include <poll.h>
#include <sys/syscall.h>

#include "helpers.h"
#include "transcript.h"

enum { BY_SYSCALL_FUNCTION, BY_RAW_INSTRUCTION };

static long close_past_libc(int fd, int how)
{
    if (how == BY_SYSCALL_FUNCTION)
        return syscall(SYS_close, fd);
#if defined(__x86_64__)
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_close), "D"((long)fd) : "rcx", "r11", "memory");
    return r;
#else
    return syscall(SYS_close, fd);
#endif
}

static void run(int optin, int how, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int c1, s1, l = accepted_pair(AF_INET, optin, &c1, &s1);
    CHECK(getsockname(l, (struct sockaddr *)&addr, &len) == 0, "getsockname");
    char b[64];
    CHECK(write_full(c1, "a", 1) == 1 && read_full(s1, b, 1) == 1, "first exchange c->s");
    /* the server's end switches at its first write after the client's
     * proof, and reads the ring once it has read the client's TCP bytes */
    CHECK(write_full(s1, "b", 1) == 1 && read_full(c1, b, 1) == 1, "exchange s->c");
    CHECK(write_full(c1, "c", 1) == 1 && read_full(s1, b, 1) == 1, "exchange c->s");
    CHECK(write_full(s1, "d", 1) == 1 && read_full(c1, b, 1) == 1, "exchange s->c");
    if (optin)
        CHECK(loopfast_fd_is_fast(s1) == 1, "the first connection is not fast");
    CHECK(write_full(c1, "unread", 6) == 6, "write");
    CHECK(close_past_libc(s1, how) == 0, "raw close: %s", strerror(errno));
    close(c1);

    /* a plain client: its socket, then the accepted end, take the freed numbers */
    int c2 = connect_to(&addr, len, 0), s2 = accept(l, NULL, NULL);
    CHECK(s2 >= 0, "accept: %s", strerror(errno));
    note(" fast:%d/%d", loopfast_fd_is_fast(c2), loopfast_fd_is_fast(s2));
    note_result("c2-write", write(c2, "hello world", 11));
    struct pollfd p = { .fd = s2, .events = POLLIN };
    note(" s2-poll:%d", poll(&p, 1, 2000));
    ssize_t n = read(s2, b, sizeof b);
    note_result("s2-read", n);
    if (n > 0)
        note(":%.*s", (int)n, b);
    note_result("s2-write", write(s2, "back", 4));
    n = read_full(c2, b, 4);
    note_result("c2-read", n);
    if (n > 0)
        note(":%.*s", (int)n, b);
    shutdown(c2, SHUT_WR);
    note(" s2-poll-end:%d", poll(&p, 1, 2000));
    note_result("s2-eof", read(s2, b, sizeof b));
    note_readiness("s2", s2);
    close(l);
    case_end(c2, s2, out, size);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(30);
    static const char *const names[] = { "syscall(SYS_close, fd)", "the syscall instruction" };
    int bad = 0;
    for (int how = BY_SYSCALL_FUNCTION; how <= BY_RAW_INSTRUCTION; how++) {
        char kernel[4096], fast[4096];
        run(0, how, kernel, sizeof kernel);
        run(1, how, fast, sizeof fast);
        bad |= transcripts_differ(names[how], kernel, fast);
    }
    return bad;
}
