/* An edge-triggered record's report is the socket's whole readiness, as
 * the kernel's wake-up reports what it finds: bytes coming to a writable
 * socket are EPOLLIN|EPOLLOUT, where ours said EPOLLIN alone (the largest
 * class of differences a differential fuzzer found).  Both ways, compared:
 * the first report after the ADD, then one after the peer's bytes, one
 * after a wait with nothing new, one after the peer's shutdown. */
#include "helpers.h"
#include "transcript.h"

static void note_wait(const char *what, int ep)
{
    struct epoll_event ev[2];
    char text[16];
    int n = epoll_wait(ep, ev, 2, 100);
    events_text(text, sizeof text, n == 1 ? ev[0].events : 0);
    note(" %s:%d:%s", what, n, text);
}

static void whole_mask(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0, "epoll");
    note_wait("added", ep);
    note_wait("nothing", ep);
    CHECK(write_full(c, "bytes", 5) == 5, "write");
    note_wait("bytes", ep);
    note_wait("nothing", ep);
    CHECK(shutdown(c, SHUT_WR) == 0, "shutdown");
    note_wait("shutdown", ep);
    note_wait("nothing", ep);
    close(ep);
    case_end(c, s, out, size);
}

int main(void)
{
    alarm(60);
    return transcripts_of("an ET record's reports", whole_mask) ? 1 : 0;
}
