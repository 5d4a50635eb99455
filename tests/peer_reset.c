/* A peer that closes, exits or is killed while bytes we sent it are unread
 * resets the connection: the survivor reads what it had been sent, then
 * ECONNRESET once, then EOF; its writes fail with EPIPE; poll and epoll
 * report POLLERR until the error is read.  A peer that leaves with nothing
 * unread ends the stream with a FIN: EOF, and the first write after it is
 * accepted (the kernel answers it with a reset), later ones fail with EPIPE.
 * Each case runs over kernel TCP and over loopfast; the transcripts of
 * results must be the same. */
#include <poll.h>
#include <sys/epoll.h>

#include "helpers.h"
#include "transcript.h"

enum how { CLOSE, EXIT, KILL };


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

static void survey(int fd)
{
    char b[64];
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
}

/* One case: the survivor (here, the client) and the peer (a server process)
 * first exchange a byte each way, so that both directions are on the rings. */
static void one_case(int optin, int peer_sends, int we_send, enum how how, char *out, size_t size)
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
        if (how == EXIT)
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
    if (how == CLOSE)
        CHECK(read(done[0], &b, 1) == 1, "peer closed");
    else
        waitpid(peer, NULL, 0);
    usleep(20000);   /* what the kernel sends for the peer's socket has come */
    survey(c);
    close(c);
    kill(peer, SIGKILL);
    waitpid(peer, NULL, 0);
    close(go[0]), close(go[1]), close(done[0]), close(done[1]);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(25);
    static const char *hows[] = { "close", "exit", "kill" };
    int bad = 0;
    for (int how = CLOSE; how <= KILL; how++)
        for (int unread = 0; unread < 4; unread++) {
            char kernel[4096], fast[4096];
            one_case(0, unread & 1, unread & 2, how, kernel, sizeof kernel);
            one_case(1, unread & 1, unread & 2, how, fast, sizeof fast);
            int same = !strcmp(kernel, fast);
            printf("%s %s, peer sent %d, we sent %d\n  kernel  :%s\n", same ? "same" : "DIFFERENT",
                   hows[how], unread & 1, (unread & 2) != 0, kernel);
            if (!same)
                printf("  loopfast:%s\n", fast), bad++;
        }
    CHECK(!bad, "%d cases differ", bad);
    return 0;
}
