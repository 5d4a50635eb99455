/* recv(MSG_PEEK | MSG_WAITALL) for more than the peer will ever send: the
 * kernel's returns what there is once the peer's stream ends (its
 * shutdown(SHUT_WR) or close()).  Ours looked again at once whenever the
 * peer's end flags were up, whatever the ring held, and so spun for ever
 * at 100% CPU (found by a helper's sweep).  Both ways, after the
 * switching echoes (server_switch: both directions on the rings): a peer
 * that writes 1000 bytes and ends its stream 300 ms into the peek
 * (shutdown, close), and one that ended it before: the peek returns the
 * 1000 bytes. */
#include <sys/wait.h>

#include "helpers.h"

static int ending;   /* 0: shutdown, 1: close */
static int ended_before;

static void peer(int l)
{
    int c = accept(l, NULL, NULL);
    static char buf[1000];
    server_switch(c);
    if (write_full(c, buf, sizeof buf) != sizeof buf)
        _exit(2);
    if (!ended_before)
        sleep_ms(300);
    if (ending ? close(c) : shutdown(c, SHUT_WR))
        _exit(3);
    sleep_ms(2000);
}

static ssize_t peeked(int optin)
{
    pid_t pid;
    int fd = switched_to_forked(optin, peer, &pid);
    if (ended_before)
        sleep_ms(300);
    static char buf[4000];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_WAITALL);
    CHECK(loopfast_fd_is_fast(fd) == optin, "fast: %d", loopfast_fd_is_fast(fd));
    kill(pid, SIGKILL);
    child_status(pid);
    close(fd);
    return n;
}

int main(void)
{
    alarm(30);   /* the old code's peek never returned */
    static const char *how[2] = { "shutdown(SHUT_WR)", "close()" };
    for (ending = 0; ending < 2; ending++)
        for (ended_before = 0; ended_before < 2; ended_before++) {
            ssize_t k = peeked(0), f = peeked(1);
            printf("peer's %s %s the peek: kernel %zd, loopfast %zd\n", how[ending],
                   ended_before ? "before" : "during", k, f);
            CHECK(k == 1000 && f == k, "peek: kernel %zd, loopfast %zd", k, f);
        }
    return 0;
}
