/* A server that dies (SIGKILL or exit) after accept() and before its first
 * byte, while its client has filled the connection with bytes it never
 * read: the client's poll, epoll, non-blocking and blocking (SO_SNDTIMEO)
 * writes see the reset at once, as over kernel TCP.  And a server that shut
 * its side down first (a FIN that is not a close) and stays alive: a
 * client waiting for room waits without spinning (CPU time used over a
 * 1 s poll), then sees the reset when the server dies.  Kernel TCP and
 * loopfast transcripts must be equal. */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "helpers.h"
#include "transcript.h"


static void note_events(const char *what, int n, unsigned ev)
{
    note(" %s:%d:%s%s%s%s", what, n, ev & POLLIN ? "I" : "", ev & POLLOUT ? "O" : "",
         ev & POLLERR ? "E" : "", ev & POLLHUP ? "H" : "");
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Waits for room as the program would: poll (0) or epoll (1). */
static int wait_room(int fd, int use_epoll, int ms, unsigned *ev)
{
    if (!use_epoll) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int n = poll(&p, 1, ms);
        *ev = (unsigned)p.revents;
        return n;
    }
    int ep = epoll_create1(0);
    struct epoll_event e = { .events = EPOLLOUT }, out = { 0 };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0, "epoll_ctl");
    int n = epoll_wait(ep, &out, 1, ms);
    close(ep);
    *ev = out.events;
    return n;
}

/* Until a pass 20 ms after the last finds no room: the kernel may take
 * more after its first EAGAIN, and loopfast's window for a writer that
 * must not wait grows while its reader takes nothing (design 5). */
static void fill(int fd)
{
    static char big[1 << 16];
    for (int added = 1; added;) {
        added = 0;
        while (send(fd, big, sizeof big, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
            added = 1;
        CHECK(errno == EAGAIN, "fill: %s", strerror(errno));
        usleep(20000);
    }
}

enum end { KILLED, EXITS, SHUT_THEN_KILLED };

/* blocking: the last write blocks with SO_SNDTIMEO instead of MSG_DONTWAIT */
static void one_case(int optin, enum end end, int use_epoll, int blocking, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), go[2], ready[2];
    CHECK(pipe(go) == 0 && pipe(ready) == 0, "pipe");
    pid_t server = fork();
    CHECK(server >= 0, "fork");
    if (server == 0) {
        close(go[1]);   /* a parent that failed ends the wait below */
        close(ready[0]);
        int s = accept(l, NULL, NULL);
        char b;
        /* a look that finds nothing: the program reads the connection through
         * loopfast, so its client, which only writes, may switch */
        (void)!recv(s, &b, 1, MSG_DONTWAIT);
        if (end == SHUT_THEN_KILLED)
            shutdown(s, SHUT_WR);
        (void)!write(ready[1], "r", 1);
        if (read(go[0], &b, 1) != 1)
            _exit(2);
        if (end == EXITS)
            _exit(0);
        raise(SIGKILL);
    }
    close(l);
    int c = connect_to(&addr, len, optin);
    char b;
    CHECK(read(ready[0], &b, 1) == 1, "server ready");
    usleep(20000);   /* its FIN, if any, has come */
    fill(c);
    CHECK(loopfast_fd_is_fast(c) == optin, "fast: %d", loopfast_fd_is_fast(c));
    unsigned ev;
    if (end == SHUT_THEN_KILLED) {
        double t0 = cpu_seconds();
        int n = wait_room(c, use_epoll, 1000, &ev);
        double used = cpu_seconds() - t0;
        note_events("alive", n, ev);
        CHECK(used < 0.1, "%s: %.3f s of CPU in a 1 s wait for room: a busy loop",
              optin ? "loopfast" : "kernel", used);
    }
    CHECK(write(go[1], "g", 1) == 1, "go");
    waitpid(server, NULL, 0);
    if (blocking) {
        struct timeval tv = { .tv_sec = 2 };
        CHECK(setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
        note_result("blocking send", send(c, "z", 1, MSG_NOSIGNAL));
    } else {
        int n = wait_room(c, use_epoll, 5000, &ev);
        note_events("dead", n, ev);
    }
    note_result("send", send(c, "z", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    note_result("send", send(c, "z", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
    char buf[16];
    note_result("recv", recv(c, buf, sizeof buf, MSG_DONTWAIT));
    close(c);
    close(go[0]), close(go[1]), close(ready[0]), close(ready[1]);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(28);
    static const char *ends[] = { "killed", "exits", "shuts down, then killed" };
    int bad = 0;
    for (int end = KILLED; end <= SHUT_THEN_KILLED; end++)
        for (int way = 0; way < 3; way++) {   /* poll, epoll, a blocking send */
            char kernel[2048], fast[2048];
            one_case(0, end, way == 1, way == 2, kernel, sizeof kernel);
            one_case(1, end, way == 1, way == 2, fast, sizeof fast);
            int same = !strcmp(kernel, fast);
            printf("%s: server %s, %s\n  kernel  :%s\n", same ? "same" : "DIFFERENT", ends[end],
                   way == 0 ? "poll" : way == 1 ? "epoll" : "blocking send", kernel);
            if (!same)
                printf("  loopfast:%s\n", fast), bad++;
        }
    CHECK(!bad, "%d cases differ", bad);
    return 0;
}
