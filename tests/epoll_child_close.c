/* A forked child's close() of a socket its parent has in an epoll set
 * leaves the parent's registration: the kernel keeps one while the file is
 * open in any process.  Ours took the parent's entries out of the set they
 * share (its inner epoll, its socket and doorbell), and the parent's
 * epoll_wait missed the socket's events (fuzzer seed 1003: a reset's
 * EPOLLHUP).  Both ways: a client that has not switched, reset by its
 * server, its bytes unread, then a child that closes it and exits; the
 * parent's set must still report it. */
#include <sys/epoll.h>
#include <sys/wait.h>

#include "helpers.h"
#include "transcript.h"

static void child_closes(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    close(accepted_pair(AF_INET, optin, &c, &s));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP }, got[2];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0, "add: %s", strerror(errno));
    note(" events:%d", epoll_wait(ep, got, 2, 0));
    struct linger now = { 1, 0 };
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &now, sizeof now) == 0, "SO_LINGER");
    close(s);
    sleep_ms(50);
    note(" events:%d", epoll_wait(ep, got, 2, 0));
    note_result("c-write", write(c, "abc", 3));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(c);
        _exit(0);
    }
    note(" child:%d", child_status(pid));
    sleep_ms(20);
    int n = epoll_wait(ep, got, 2, 0);
    char text[16];
    events_text(text, sizeof text, n == 1 ? got[0].events : 0);
    note(" events:%d:%s", n, text);
    close(ep);
    case_end(c, -1, out, size);
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    return transcripts_of("child_closes", child_closes) ? 1 : 0;
}
