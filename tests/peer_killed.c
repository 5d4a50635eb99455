/* The peer dies by SIGKILL: a survivor blocked in read sees EOF or
 * ECONNRESET, one polling in short sleeps sees POLLIN, one blocked in
 * write on a full ring sees EPIPE or ECONNRESET, all promptly, never a
 * hang. */
#include <poll.h>
#include <sys/time.h>

#include "helpers.h"

static int connected_pair(pid_t *child, int peer_reads)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    *child = fork();
    CHECK(*child >= 0, "fork");
    if (*child == 0) {
        int c = connect_to(&addr, len, 1);
        char b[64];
        write_full(c, "x", 1);
        if (peer_reads && read(c, b, 1) == 1)
            write_full(c, "z", 1);   /* the second exchange: the client switches */
        pause();
        _exit(0);
    }
    int a = accept(l, NULL, NULL);
    close(l);
    char b;
    CHECK(read_full(a, &b, 1) == 1, "first byte");
    CHECK(write_full(a, "y", 1) == 1, "reply");
    CHECK(!peer_reads || read_full(a, &b, 1) == 1, "second byte");
    usleep(100000);
    return a;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(20);
    pid_t child;
    int a = connected_pair(&child, 1);
    CHECK(loopfast_fd_is_fast(a) == 1, "not fast");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    char buf[64];
    ssize_t n = read(a, buf, sizeof buf);
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET), "blocked read after death: %zd %s", n, strerror(errno));
    close(a);

    /* A poll of one connection in short sleeps, as an event loop with a
     * timer makes: its answer comes from shared memory and its sleeps end
     * before they watch TCP (poll.c, memory_answers), so only the look due
     * every millisecond can see the death; the kernel sees it at once. */
    a = connected_pair(&child, 1);
    struct pollfd p = { .fd = a, .events = POLLIN };
    CHECK(poll(&p, 1, 10) == 0, "poll before the death");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    int polls = 0;
    while (polls < 100 && poll(&p, 1, 10) == 0)
        polls++;
    CHECK(polls < 100 && (p.revents & POLLIN), "polls of 10 ms after death: none saw it in %d",
          polls);
    n = read(a, buf, sizeof buf);
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET), "read after a poll saw death: %zd %s", n,
          strerror(errno));
    close(a);

    /* A reader blocked past its futex sleep, on its wake socket and TCP,
     * when the peer dies (wait.c): only TCP can tell it. */
    a = connected_pair(&child, 1);
    pid_t killer = fork();
    if (killer == 0) {
        usleep(500000);
        kill(child, SIGKILL);
        _exit(0);
    }
    n = read(a, buf, sizeof buf);
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET), "long blocked read after death: %zd %s", n,
          strerror(errno));
    close(a);
    waitpid(child, NULL, 0);
    waitpid(killer, NULL, 0);

    a = connected_pair(&child, 1);
    killer = fork();
    if (killer == 0) {
        usleep(300000);   /* the writer has filled the ring and sleeps by now */
        kill(child, SIGKILL);
        _exit(0);
    }
    static char big[1 << 16];
    for (;;) {
        n = write(a, big, sizeof big);
        if (n < 0)
            break;
    }
    CHECK(errno == EPIPE || errno == ECONNRESET, "write after death: %s", strerror(errno));
    waitpid(child, NULL, 0);
    waitpid(killer, NULL, 0);

    /* The hard case: the server wrote before the client took its answer (so
     * its direction is still on TCP and its FIN could be a shutdown), a
     * forked child of it left without close(), and then it dies while the
     * client is blocked on a full ring. */
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    pid_t server = fork();
    if (server == 0) {
        int s = accept(l, NULL, NULL);
        write_full(s, "hi", 2);
        if (fork() == 0)
            _exit(0);   /* a holder that never closes */
        pause();
        _exit(0);
    }
    close(l);
    int c = connect_to(&addr, len, 1);
    char hi[2];
    CHECK(read_full(c, hi, 2) == 2, "greeting");
    CHECK(loopfast_fd_is_fast(c) == 1, "client not fast");
    killer = fork();
    if (killer == 0) {
        usleep(300000);
        kill(server, SIGKILL);
        _exit(0);
    }
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    pid_t w = 0;
    for (;;) {
        n = write(c, big, sizeof big);
        if (n < 0)
            break;
        if (!w)
            w = waitpid(server, NULL, WNOHANG);
    }
    gettimeofday(&t1, NULL);
    CHECK(errno == EPIPE || errno == ECONNRESET, "write after a murky death: %s", strerror(errno));
    CHECK(t1.tv_sec - t0.tv_sec < 3, "took %ld s to notice", (long)(t1.tv_sec - t0.tv_sec));
    if (!w)
        waitpid(server, NULL, 0);
    waitpid(killer, NULL, 0);
    return 0;
}
