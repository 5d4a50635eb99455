/* A peer that closes, exits or is killed while bytes we sent it are unread
 * resets the connection: the survivor reads what it had been sent, then
 * ECONNRESET once, then EOF; its writes fail with EPIPE; poll and epoll
 * report POLLERR until the error is read.  A peer that leaves with nothing
 * unread ends the stream with a FIN: EOF, and the first write after it is
 * accepted (the kernel answers it with a reset), later ones fail with EPIPE.
 * A peer that closes or exits with SO_LINGER 0 resets it too; shutdown()
 * then fails with ENOTCONN (it succeeded on a fast connection: dnsmasq's
 * client saw no error).  The peer is another
 * process, or an end in this one.  The survivor looks
 * first with poll, or first with reads (the reset is reported once: the
 * kernel's, not also one recorded in shared memory).
 * Each case runs over kernel TCP and over loopfast; the transcripts of
 * results must be the same. */
#include <poll.h>
#include <sys/epoll.h>

#include "helpers.h"
#include "transcript.h"

enum how { CLOSE, LINGER0, EXIT, EXIT_LINGER0, KILL };


static void note_events(const char *what, unsigned ev)
{
    note(" %s:%s%s%s%s%s", what, ev & POLLIN ? "I" : "", ev & POLLOUT ? "O" : "",
         ev & POLLERR ? "E" : "", ev & POLLHUP ? "H" : "", ev & POLLRDHUP ? "R" : "");
}

static void readiness(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
    CHECK(poll(&p, 1, 0) >= 0, "poll");
    note_events("poll", (unsigned)p.revents);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP }, out;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl");
    int n = epoll_wait(ep, &out, 1, 0);
    note_events("epoll", n == 1 ? out.events : 0);
    close(ep);
}

static void survey(int fd, int recv_first)
{
    char b[64];
    if (recv_first) {   /* the error is found by reads, before any poll */
        note_result("recv", recv(fd, b, sizeof b, MSG_DONTWAIT));
        note_result("recv", recv(fd, b, sizeof b, MSG_DONTWAIT));
        note_result("recv", recv(fd, b, sizeof b, MSG_DONTWAIT));
    }
    readiness(fd);
    note_result("recv", recv(fd, b, sizeof b, MSG_DONTWAIT));
    readiness(fd);
    note_result("recv", recv(fd, b, sizeof b, MSG_DONTWAIT));
    note_result("send", send(fd, "z", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    usleep(20000);   /* the kernel's answer to that byte, if any */
    readiness(fd);
    note_result("send", send(fd, "z", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    note_result("recv", recv(fd, b, sizeof b, MSG_DONTWAIT));
    readiness(fd);
    note_result("send", send(fd, "z", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    note_result("shutdown-wr", shutdown(fd, SHUT_WR));   /* a reset connection: ENOTCONN */
    note_result("shutdown-rdwr", shutdown(fd, SHUT_RDWR));
}

/* One case: the survivor (here, the client) and the peer (a server process)
 * first exchange a byte each way, so that both directions are on the rings. */
static void one_case(int optin, int peer_sends, int we_send, enum how how, int recv_first, char *out,
                     size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0, "pipe");
    pid_t peer = fork();
    CHECK(peer >= 0, "fork");
    if (peer == 0) {
        int s = accept(l, NULL, NULL);
        char b;
        if (s < 0 || read_full(s, &b, 1) != 1 || write_full(s, "b", 1) != 1)
            _exit(2);
        if (peer_sends && write_full(s, "hello", 5) != 5)
            _exit(2);
        if (read(go[0], &b, 1) != 1)
            _exit(2);
        if (how == KILL)
            raise(SIGKILL);
        struct linger zero = { 1, 0 };
        if ((how == LINGER0 || how == EXIT_LINGER0) &&
            setsockopt(s, SOL_SOCKET, SO_LINGER, &zero, sizeof zero) != 0)
            _exit(2);
        if (how == EXIT || how == EXIT_LINGER0)
            _exit(0);
        close(s);
        (void)!write(done[1], "d", 1);
        pause();
        _exit(0);
    }
    close(l);
    int c = connect_to(&addr, len, optin);
    char b;
    CHECK(write_full(c, "a", 1) == 1 && read_full(c, &b, 1) == 1, "exchange");
    CHECK(loopfast_fd_is_fast(c) == optin, "fast: %d", loopfast_fd_is_fast(c));
    if (we_send)
        CHECK(write_full(c, "0123456789", 10) == 10, "send");
    usleep(20000);   /* the peer's bytes are on their way */
    CHECK(write(go[1], "g", 1) == 1, "go");
    if (how == CLOSE || how == LINGER0)
        CHECK(read(done[0], &b, 1) == 1, "peer closed");
    else
        waitpid(peer, NULL, 0);
    usleep(20000);   /* what the kernel sends for the peer's socket has come */
    survey(c, recv_first);
    close(c);
    kill(peer, SIGKILL);
    waitpid(peer, NULL, 0);
    close(go[0]), close(go[1]), close(done[0]), close(done[1]);
    snprintf(out, size, "%s", transcript);
}

/* The same with the peer's end in this process (closed, or with SO_LINGER 0). */
static void one_case_here(int optin, int peer_sends, int we_send, int linger0, int recv_first,
                          char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    if (peer_sends)
        CHECK(write_full(s, "hello", 5) == 5, "peer send");
    if (we_send)
        CHECK(write_full(c, "0123456789", 10) == 10, "send");
    usleep(20000);
    struct linger zero = { 1, 0 };
    CHECK(!linger0 || setsockopt(s, SOL_SOCKET, SO_LINGER, &zero, sizeof zero) == 0, "SO_LINGER");
    close(s);
    usleep(20000);
    survey(c, recv_first);
    close(c);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(50);
    static const char *hows[] = { "close", "close with SO_LINGER 0", "exit",
                                  "exit with SO_LINGER 0", "kill" };
    int bad = 0;
    for (int how = CLOSE; how <= KILL; how++)
        for (int unread = 0; unread < 8; unread++) {
            char kernel[4096], fast[4096];
            int recv_first = (unread & 4) != 0;
            one_case(0, unread & 1, unread & 2, how, recv_first, kernel, sizeof kernel);
            one_case(1, unread & 1, unread & 2, how, recv_first, fast, sizeof fast);
            int same = !strcmp(kernel, fast);
            printf("%s %s, peer sent %d, we sent %d, %s first\n  kernel  :%s\n",
                   same ? "same" : "DIFFERENT", hows[how], unread & 1, (unread & 2) != 0,
                   recv_first ? "recv" : "poll", kernel);
            if (!same)
                printf("  loopfast:%s\n", fast), bad++;
        }
    for (int k = 0; k < 16; k++) {
        char kernel[4096], fast[4096];
        int peer_sends = k & 1, we_send = (k & 2) != 0, recv_first = (k & 4) != 0, linger0 = k >= 8;
        one_case_here(0, peer_sends, we_send, linger0, recv_first, kernel, sizeof kernel);
        one_case_here(1, peer_sends, we_send, linger0, recv_first, fast, sizeof fast);
        int same = !strcmp(kernel, fast);
        printf("%s peer here, %s, peer sent %d, we sent %d, %s first\n  kernel  :%s\n",
               same ? "same" : "DIFFERENT", linger0 ? "close with SO_LINGER 0" : "close", peer_sends,
               we_send, recv_first ? "recv" : "poll", kernel);
        if (!same)
            printf("  loopfast:%s\n", fast), bad++;
    }
    CHECK(!bad, "%d cases differ", bad);
    return 0;
}
