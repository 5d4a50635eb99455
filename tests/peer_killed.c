/* The peer dies by SIGKILL: a survivor blocked in read sees EOF or
 * ECONNRESET, one blocked in write on a full ring sees EPIPE or ECONNRESET,
 * both promptly, never a hang. */
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
        if (peer_reads)
            read(c, b, 1);
        pause();
        _exit(0);
    }
    int a = accept(l, NULL, NULL);
    close(l);
    char b;
    CHECK(read_full(a, &b, 1) == 1, "first byte");
    CHECK(write_full(a, "y", 1) == 1, "reply");
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

    a = connected_pair(&child, 1);
    pid_t killer = fork();
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
    return 0;
}
