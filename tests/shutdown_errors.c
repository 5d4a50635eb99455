/* Shutdowns, resets and zero-length calls answer as kernel TCP's do; each
 * case was a difference a differential fuzzer found (a random script of
 * socket calls run both ways), and each is run both ways here, the
 * transcripts compared:
 * - `request_then_half_close`: the usual one-request client (`nc -N`): it
 *   writes and shuts its writing down; the server reads to EOF, answers,
 *   then shutdown(SHUT_RDWR) said ENOTCONN (the refusal had shut TCP both
 *   ways, and the SHUT_WR after it found the socket closed);
 * - `both_shut`: shutdown() of a connection both ends shut down says
 *   ENOTCONN, as the kernel's closed socket does (ours said 0);
 * - `zero_length`: read(fd, buf, 0) with bytes waiting says 0 (it waited
 *   for ever on a ring); send(fd, buf, 0) says EPIPE after our shutdown and
 *   the peer's reset after its close (ours said 0);
 * - `reset_after_our_shutdown`: after our shutdown(SHUT_RDWR) the peer's
 *   bytes make the kernel reset us: our next send says ECONNRESET without
 *   SIGPIPE, then reads say EOF (ours said EPIPE, raised SIGPIPE, and the
 *   read said ECONNRESET);
 * - `unread_then_both_shut`: bytes unread when both ends shut down are no
 *   reset (ours said POLLERR, SO_ERROR EPIPE);
 * - `reset_after_shut_rd`: a peer that closes with our bytes unread resets
 *   us after our shutdown(SHUT_RD) too: a read says ECONNRESET, then EOF
 *   (ours said EOF at once);
 * - `reset_after_our_shut_wr`: the peer's SO_LINGER 0 close after our
 *   shutdown(SHUT_WR): our write says ECONNRESET, as the kernel's error
 *   before its shutdown (ours said EPIPE, with SIGPIPE);
 * - `refused_then_peer_shut_wr`: our bytes unread when we shut down both
 *   ways, then the peer shuts its writing down: no reset (its TCP FIN was
 *   taken for a close owing one: POLLERR, SO_ERROR EPIPE);
 * - `both_shut_then_close`: a close with our bytes unread after both ends
 *   shut down sends no reset (the kernel's connection is closed then; ours
 *   reset, and we said POLLERR, SO_ERROR EPIPE);
 * - `shut_rd_after_peer_both`: the peer's shutdown(SHUT_RD) after ours of
 *   both ways leaves us in FIN_WAIT2, its end open (ours took its SHUT_RD
 *   for a refusal, the peer for gone: CLOSE);
 * - `shut_both_before_switch`: a client's shutdown(SHUT_RDWR) on TCP before
 *   its switch refuses the server's later bytes: the kernel resets both
 *   (POLLERR, ECONNRESET at the client, EPIPE at the server; ours put them
 *   on the ring, where the client read them);
 * - `reset_after_trunc_read`: a MSG_TRUNC read that takes the last bytes
 *   of a peer that closed with ours unread leaves its reset pending, as one
 *   tcp_recvmsg stops at it: POLLERR, SO_ERROR ECONNRESET (ours took it in
 *   a second read of its own, and said neither);
 * - `kept_reset_after_shut_rd`: after our SHUT_RD, a read after one that
 *   took the last bytes before the peer's reset says ECONNRESET, as the
 *   kernel's (ours found the kept error, and read again: EOF);
 * - `peek_all_after_shut_rd`: recv(MSG_PEEK|MSG_WAITALL) after our
 *   SHUT_RD returns the bytes there are, as the kernel's, which waits no
 *   more then (ours slept for good);
 * - `both_shut_then_linger0_close`: a close with SO_LINGER 0 after both
 *   ends shut down sends no reset (the kernel's connection is closed; ours
 *   was open, the FINs on the rings, and its close reset the peer: POLLERR,
 *   SO_ERROR EPIPE);
 * - `zero_length_file`: sendfile() and splice() of 0 bytes say 0 after
 *   our shutdown, as the kernel's, which never looks at the socket then
 *   (ours said EPIPE, with SIGPIPE);
 * - `fin_then_reset_after_shut_rd`: after our SHUT_RD, the peer's close
 *   (a FIN) and the reset our later bytes bring: a read says EOF, the FIN
 *   before the error, which poll and SO_ERROR still tell (EPIPE); ours
 *   said EPIPE;
 * - `zero_length_vectors`: readv() and writev() of no bytes say 0 in any
 *   state, as the kernel's, which stops before the socket (ours, taking
 *   them for recvmsg and sendmsg, said EAGAIN, EPIPE, ECONNRESET);
 * - `zero_length_split`: a zero-length recv() while the peer's bytes from
 *   before its switch are unread on TCP says 0 (ours took TCP's 0 for the
 *   peer's FIN: ECONNRESET, and the connection was broken);
 * - `child_reads_before_reset`: a forked child's non-blocking MSG_WAITALL
 *   read takes the bytes a peer sent before its reset and leaves the reset
 *   on the socket, for the parent's poll and SO_ERROR (ours took it in a
 *   second read and kept it in the child, which exited); before and after
 *   the switch;
 * - `zero_length_refused`: after our shutdown of both ways and the reset
 *   the peer's later bytes bring, a zero-length read with bytes unread
 *   says 0 and leaves the reset (ours took it: ECONNRESET, no POLLERR);
 * - `zero_length_waitall`: recv(fd, buf, 0, MSG_DONTWAIT|MSG_WAITALL) with
 *   nothing there says EAGAIN, as without MSG_WAITALL (ours said 0), before
 *   and after the switch;
 * - `zero_length_read`: read(fd, buf, 0) says 0 in any state, as the
 *   kernel's (sock_read_iter): blocking with nothing there (ours waited
 *   for the peer's bytes, for good), non-blocking (ours: EAGAIN), after a
 *   reset (ours: ECONNRESET);
 * - `zero_length_send_gone`: a send of nothing after our shutdown says
 *   EPIPE once the peer has gone too, as the kernel's (SEND_SHUTDOWN);
 *   ours sent it on our TCP socket, whose FIN was on the ring: 0;
 * - `rdhup_before_read`: a client that switched before its server (its
 *   first bytes on TCP, unread) shuts its writing down: the server's poll
 *   says POLLRDHUP at once, as the kernel's FIN behind unread bytes (ours
 *   waited for the read). */
#include <sys/wait.h>
#include <sys/uio.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/sendfile.h>

#include "helpers.h"
#include "transcript.h"

static volatile sig_atomic_t pipes;

static void on_pipe(int sig)
{
    (void)sig;
    pipes++;
}

/* TCP_INFO's state, FIN_WAIT1 and FIN_WAIT2 as one (the peer's ACK is
 * timing) */
static void note_state(const char *what, int fd)
{
    struct tcp_info ti;
    socklen_t l = sizeof ti;
    int st = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 ? ti.tcpi_state : -1;
    note(" %s:%d", what, st == TCP_FIN_WAIT1 ? TCP_FIN_WAIT2 : st);
}

static void note_error(const char *what, int fd)
{
    int e = 0;
    socklen_t l = sizeof e;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
    note(" %s:%s", what, e ? strerror(e) : "0");
}

static void request_then_half_close(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int c = connect_to(&addr, len, optin);
        char b[64];
        ssize_t n, got = 0;
        if (write_full(c, "request", 7) != 7 || shutdown(c, SHUT_WR) != 0)
            _exit(2);
        while ((n = read(c, b, sizeof b)) > 0)
            got += n;
        _exit(got == 6 && n == 0 ? 0 : 3);
    }
    int s = accept(l, NULL, NULL);
    char b[64];
    note_result("read", read(s, b, sizeof b));
    note_result("read", read(s, b, sizeof b));
    note_result("write", write(s, "answer", 6));
    note_result("shutdown-rdwr", shutdown(s, SHUT_RDWR));
    note(" client:%d", child_status(pid));
    close(l);
    case_end(s, -1, out, size);
}

static void both_shut(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    sleep_ms(50);
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    sleep_ms(50);
    note_result("s-shut-rd", shutdown(s, SHUT_RD));
    note_result("s-shut-wr", shutdown(s, SHUT_WR));
    note_result("c-shut-rdwr", shutdown(c, SHUT_RDWR));
    case_end(c, s, out, size);
}

static void zero_length(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    char buf[16];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("recv0-nb", recv(s, buf, 0, MSG_DONTWAIT));
    CHECK(write_full(c, "hello", 5) == 5, "write");
    sleep_ms(10);
    alarm(5);   /* a read that waits for ever ends the test */
    note_result("read0", read(s, buf, 0));
    note_result("recv0", recv(s, buf, 0, 0));
    note_result("recv0-peek-trunc", recv(c, buf, 0, MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC));
    alarm(60);
    shutdown(c, SHUT_WR);
    note_result("send0-after-shutdown", send(c, buf, 0, 0));
    close(s);
    sleep_ms(20);
    note_result("send0-after-reset", send(c, buf, 0, 0));
    note_result("recv0-nb", recv(c, buf, 0, MSG_DONTWAIT));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    case_end(c, -1, out, size);
}

static void reset_after_our_shutdown(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    char buf[64] = { 0 };
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    note_result("c-send", send(c, buf, 40, MSG_DONTWAIT));
    sleep_ms(50);
    note_readiness("s", s);
    note_result("s-send", send(s, buf, 10, 0));
    note(" sigpipe:%d", (int)pipes);
    note_result("s-read", read(s, buf, sizeof buf));
    note_result("s-read", read(s, buf, sizeof buf));
    note_result("s-send", send(s, buf, 10, 0));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    case_end(c, s, out, size);
}

static void unread_then_both_shut(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-send", send(c, buf, 863, 0));
    note_result("c-shut-rdwr", shutdown(c, SHUT_RDWR));
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    sleep_ms(50);
    note_readiness("c", c);
    note_error("c-so-error", c);
    note_result("c-read", read(c, buf, sizeof buf));
    case_end(c, s, out, size);
}

static void reset_after_shut_rd(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-write", write(s, buf, 843));
    sleep_ms(20);
    note_result("s-shut-rd", shutdown(s, SHUT_RD));
    close(c);
    sleep_ms(50);
    note_readiness("s", s);
    note_result("s-read", read(s, buf, 6));
    note_result("s-read", read(s, buf, 6));
    case_end(s, -1, out, size);
}

static void reset_after_our_shut_wr(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[2048];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    struct linger now = { 1, 0 };
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &now, sizeof now) == 0, "SO_LINGER");
    close(s);
    sleep_ms(50);
    note_result("c-write", write(c, buf, 1228));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    note_result("c-write", write(c, buf, 1228));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    case_end(c, -1, out, size);
}

static void refused_then_peer_shut_wr(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[16384];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-write", write(s, buf, 14951));
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    sleep_ms(20);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    sleep_ms(50);
    note_readiness("s", s);
    note_error("s-so-error", s);
    case_end(c, s, out, size);
}

static void both_shut_then_close(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    note_result("s-write", write(s, "1", 1));
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    sleep_ms(20);
    close(c);
    sleep_ms(50);
    note_readiness("s", s);
    note_error("s-so-error", s);
    case_end(s, -1, out, size);
}

static void shut_rd_after_peer_both(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    sleep_ms(20);
    note_result("c-shut-rd", shutdown(c, SHUT_RD));
    sleep_ms(50);
    note_readiness("s", s);
    note_readiness("c", c);
    note_state("s-state", s);
    note_state("c-state", c);
    case_end(c, s, out, size);
}

static void shut_both_before_switch(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    char buf[64];
    int l = listen_on(AF_INET, optin, &addr, &len);
    int c = connect_to(&addr, len, optin);
    note_result("c-shut-rdwr", shutdown(c, SHUT_RDWR));   /* before the server's answer */
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept: %s", strerror(errno));
    close(l);
    sleep_ms(20);
    note_result("s-read", read(s, buf, sizeof buf));   /* the server used it: it may switch */
    note_readiness("c", c);   /* the client takes the answer */
    sleep_ms(20);
    note_readiness("s", s);   /* and the server switches */
    CHECK(!optin || (loopfast_fd_is_fast(c) == 1 && loopfast_fd_is_fast(s) == 1), "not switched");
    note_result("s-send", send(s, "abc", 3, MSG_NOSIGNAL));
    sleep_ms(50);
    note_readiness("c", c);
    note_readiness("s", s);
    note_error("c-so-error", c);
    note_error("s-so-error", s);
    note_result("c-read", read(c, buf, sizeof buf));
    case_end(c, s, out, size);
}

static void reset_after_trunc_read(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-write", write(s, buf, 758));
    note_result("c-write", write(c, buf, 86));   /* unread: s's close resets */
    sleep_ms(20);
    close(s);
    sleep_ms(50);
    note_result("c-recv-trunc", recv(c, NULL, 849, MSG_TRUNC));
    note_readiness("c", c);
    note_error("c-so-error", c);
    note_result("c-read", read(c, buf, sizeof buf));
    case_end(c, -1, out, size);
}

static void kept_reset_after_shut_rd(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-write", write(c, buf, 7));
    note_result("s-write", write(s, buf, 5));   /* unread: c's close resets */
    note_result("s-shut-rd", shutdown(s, SHUT_RD));
    sleep_ms(20);
    close(c);
    sleep_ms(50);
    note_result("s-recv-waitall", recv(s, buf, 849, MSG_DONTWAIT | MSG_WAITALL));
    note_result("s-read", read(s, buf, sizeof buf));
    note_result("s-read", read(s, buf, sizeof buf));
    case_end(s, -1, out, size);
}

static void peek_all_after_shut_rd(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[4096];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-shut-rd", shutdown(c, SHUT_RD));
    note_result("s-write", write(s, buf, 1357));
    sleep_ms(20);
    alarm(5);   /* a peek that waits for ever ends the test */
    note_result("c-peek-waitall", recv(c, buf, 3220, MSG_PEEK | MSG_WAITALL));
    alarm(60);
    note_result("c-read", read(c, buf, sizeof buf));
    case_end(c, s, out, size);
}

static void both_shut_then_linger0_close(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-shut-wr", shutdown(s, SHUT_WR));
    sleep_ms(20);
    note_result("c-shut-rdwr", shutdown(c, SHUT_RDWR));
    sleep_ms(20);
    struct linger now = { 1, 0 };
    CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &now, sizeof now) == 0, "SO_LINGER");
    close(c);
    sleep_ms(50);
    note_readiness("s", s);
    note_error("s-so-error", s);
    case_end(s, -1, out, size);
}

static void zero_length_file(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s, p[2];
    fast_pair(AF_INET, optin, &c, &s);
    FILE *f = tmpfile();
    CHECK(f && fputs("file", f) >= 0 && fflush(f) == 0 && pipe(p) == 0, "file and pipe");
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    note_result("c-sendfile0", sendfile(c, fileno(f), &(off_t){ 0 }, 0));
    note_result("c-splice0", splice(p[0], NULL, c, NULL, 0, SPLICE_F_NONBLOCK));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    fclose(f);
    close(p[0]);
    close(p[1]);
    case_end(c, s, out, size);
}

static void fin_then_reset_after_shut_rd(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    close(accepted_pair(AF_INET, optin, &c, &s));   /* the peer ends before its switch */
    note_result("s-shut-rd", shutdown(s, SHUT_RD));
    close(c);
    sleep_ms(50);
    note_result("s-write", send(s, buf, 245, MSG_NOSIGNAL));
    sleep_ms(50);
    note_result("s-read", read(s, buf, sizeof buf));
    note_readiness("s", s);
    note_error("s-so-error", s);
    case_end(s, -1, out, size);
}

static void zero_length_vectors(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    struct iovec none = { buf, 0 };
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    note_result("c-readv0", readv(c, &none, 1));
    note_result("c-write", write(c, buf, 100));
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    note_result("c-writev0", writev(c, &none, 1));
    sleep_ms(20);
    close(s);   /* its bytes unread: a reset */
    sleep_ms(50);
    note_result("c-readv0", readv(c, &none, 1));
    note_result("c-writev0", writev(c, &none, 1));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    case_end(c, -1, out, size);
}

static void zero_length_split(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[16384];
    close(accepted_pair(AF_INET, optin, &c, &s));
    note_result("s-write", write(s, buf, 1132));   /* on TCP, before the switch */
    sleep_ms(20);
    note_readiness("c", c);   /* the client takes the answer */
    sleep_ms(20);
    note_readiness("s", s);   /* and the server switches */
    note_result("c-send", send(c, buf, 5, MSG_DONTWAIT));
    sleep_ms(20);
    note_readiness("s", s);
    note_result("s-write", write(s, buf, 15634));
    sleep_ms(20);
    CHECK(!optin || (loopfast_fd_is_fast(c) == 1 && loopfast_fd_is_fast(s) == 1), "not switched");
    note_result("c-recv0-trunc", recv(c, NULL, 0, MSG_DONTWAIT | MSG_TRUNC));
    note_result("c-recv0", recv(c, buf, 0, MSG_DONTWAIT));
    note_readiness("c", c);
    ssize_t n, got = 0;
    while ((n = recv(c, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        got += n;
    note(" c-got:%zd", got);
    note_result("c-recv", n);
    case_end(c, s, out, size);
}

static void child_reads_before_reset(int optin, int switched, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[16384];
    if (switched)
        fast_pair(AF_INET, optin, &c, &s);
    else
        close(accepted_pair(AF_INET, optin, &c, &s));
    note_result("c-write", write(c, buf, 1382));
    struct linger now = { 1, 0 };
    CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &now, sizeof now) == 0, "SO_LINGER");
    close(c);
    sleep_ms(50);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        _exit(recv(s, buf, sizeof buf, MSG_DONTWAIT | MSG_WAITALL) == 1382 ? 0 : 1);
    note(" child:%d", child_status(pid));
    note_readiness("s", s);
    note_error("s-so-error", s);
    case_end(s, -1, out, size);
}

static void child_reads_before_switch(int optin, char *out, size_t size)
{
    child_reads_before_reset(optin, 0, out, size);
}

static void child_reads_after_switch(int optin, char *out, size_t size)
{
    child_reads_before_reset(optin, 1, out, size);
}

static void zero_length_refused(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("s-write", write(s, buf, 625));
    note_result("c-shut-rdwr", shutdown(c, SHUT_RDWR));
    sleep_ms(20);
    note_result("s-send", send(s, buf, 268, MSG_DONTWAIT | MSG_NOSIGNAL));
    sleep_ms(50);
    note_result("c-recv0", recv(c, buf, 0, MSG_DONTWAIT));
    note_readiness("c", c);
    note_error("c-so-error", c);
    case_end(c, s, out, size);
}

static void zero_length_waitall(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    char buf[16];
    close(accepted_pair(AF_INET, optin, &c, &s));
    note_result("c-recv0-waitall", recv(c, buf, 0, MSG_DONTWAIT | MSG_WAITALL));
    note_result("c-recv0-waitall-trunc", recv(c, NULL, 0, MSG_DONTWAIT | MSG_WAITALL | MSG_TRUNC));
    case_end(c, s, out, size);
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-recv0-waitall", recv(c, buf, 0, MSG_DONTWAIT | MSG_WAITALL));
    case_end(c, s, out, size);
}

static void zero_length_read(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[1024];
    fast_pair(AF_INET, optin, &c, &s);
    alarm(5);   /* a read that waits for ever ends the test */
    note_result("c-read0", read(c, buf, 0));
    alarm(60);
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    note_result("c-read0-nb", read(c, buf, 0));
    note_result("c-write", write(c, buf, 100));   /* unread: s's close resets */
    sleep_ms(20);
    close(s);
    sleep_ms(50);
    note_result("c-read0", read(c, buf, 0));
    note_error("c-so-error", c);
    case_end(c, -1, out, size);
}

static void zero_length_send_gone(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    char buf[16];
    fast_pair(AF_INET, optin, &c, &s);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    sleep_ms(20);
    note_result("s-shut-rdwr", shutdown(s, SHUT_RDWR));
    sleep_ms(50);
    note_result("c-send0", send(c, buf, 0, MSG_NOSIGNAL));
    note_result("c-write0", write(c, buf, 0));
    note(" sigpipe:%d", (int)pipes);
    pipes = 0;
    case_end(c, s, out, size);
}

static void rdhup_before_read(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    static char buf[4096];
    close(accepted_pair(AF_INET, optin, &c, &s));
    note_result("c-send", send(c, buf, 2610, MSG_DONTWAIT));
    note_result("s-write", write(s, "sixsix", 6));
    sleep_ms(50);
    note_readiness("s", s);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    sleep_ms(50);
    note_readiness("s", s);
    note_result("s-recv", recv(s, buf, sizeof buf, 0));
    note_readiness("s", s);
    case_end(c, s, out, size);
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, on_pipe);
    int differ = transcripts_of("request_then_half_close", request_then_half_close);
    differ += transcripts_of("both_shut", both_shut);
    differ += transcripts_of("zero_length", zero_length);
    differ += transcripts_of("reset_after_our_shutdown", reset_after_our_shutdown);
    differ += transcripts_of("unread_then_both_shut", unread_then_both_shut);
    differ += transcripts_of("reset_after_shut_rd", reset_after_shut_rd);
    differ += transcripts_of("reset_after_our_shut_wr", reset_after_our_shut_wr);
    differ += transcripts_of("refused_then_peer_shut_wr", refused_then_peer_shut_wr);
    differ += transcripts_of("both_shut_then_close", both_shut_then_close);
    differ += transcripts_of("shut_rd_after_peer_both", shut_rd_after_peer_both);
    differ += transcripts_of("shut_both_before_switch", shut_both_before_switch);
    differ += transcripts_of("reset_after_trunc_read", reset_after_trunc_read);
    differ += transcripts_of("kept_reset_after_shut_rd", kept_reset_after_shut_rd);
    differ += transcripts_of("peek_all_after_shut_rd", peek_all_after_shut_rd);
    differ += transcripts_of("both_shut_then_linger0_close", both_shut_then_linger0_close);
    differ += transcripts_of("zero_length_file", zero_length_file);
    differ += transcripts_of("fin_then_reset_after_shut_rd", fin_then_reset_after_shut_rd);
    differ += transcripts_of("zero_length_vectors", zero_length_vectors);
    differ += transcripts_of("zero_length_split", zero_length_split);
    differ += transcripts_of("child_reads_before_switch", child_reads_before_switch);
    differ += transcripts_of("child_reads_after_switch", child_reads_after_switch);
    differ += transcripts_of("zero_length_refused", zero_length_refused);
    differ += transcripts_of("zero_length_waitall", zero_length_waitall);
    differ += transcripts_of("zero_length_read", zero_length_read);
    differ += transcripts_of("zero_length_send_gone", zero_length_send_gone);
    differ += transcripts_of("rdhup_before_read", rdhup_before_read);
    return differ ? 1 : 0;
}
