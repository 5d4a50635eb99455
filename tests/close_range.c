/* Programs that close descriptors wholesale: close_range() on a fast socket
 * ends its connection as close() would (the peer sees EOF, the number is
 * free for an unrelated socket), and neither closefrom() in this process
 * nor a forked child's loop of close() lets loopfast later close a number
 * the program has opened since (its spare answer and closed connections'
 * leftovers were released first). */
#include <fcntl.h>
#include <poll.h>

#include "helpers.h"

#define PIPES 20

/* Opens PIPES pipes (taking the lowest numbers), lets loopfast run its
 * pre-wait work (a poll with a timeout), and checks every pipe still works. */
static int pipes_survive(void)
{
    int p[PIPES][2];
    for (int i = 0; i < PIPES; i++)
        if (pipe(p[i]) < 0)
            return 0;
    poll(NULL, 0, 1);
    for (int i = 0; i < PIPES; i++) {
        char b = (char)i;
        if (write(p[i][1], &b, 1) != 1 || read(p[i][0], &b, 1) != 1 || b != (char)i)
            return 0;
    }
    return 1;
}

/* A closed fast connection and a spare answer: what loopfast holds. */
static void make_reserves(void)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0 && accept(l, NULL, NULL) < 0 && errno == EAGAIN,
          "accept on an empty listener");
    close(c);
    close(s);
}

int main(void)
{
    alarm(30);
    signal(SIGPIPE, SIG_IGN);   /* a pipe closed behind us fails a check, not the process */
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    CHECK(close_range((unsigned)c, (unsigned)c, 0) == 0, "close_range: %s", strerror(errno));
    char b;
    CHECK(read(s, &b, 1) == 0, "the peer did not see the end");
    int fresh = socket(AF_INET, SOCK_STREAM, 0);
    int n = fresh == c ? fresh : fcntl(fresh, F_DUPFD, c);   /* lowest free from c's on */
    if (n != fresh)
        close(fresh);
    CHECK(n == c, "F_DUPFD gave %d, not %d", n, c);
    CHECK(loopfast_fd_is_fast(n) == 0, "the number came back as a fast socket");
    close(n);
    close(s);

    make_reserves();
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {   /* old-style daemon: closes every descriptor one by one */
        for (int fd = 3; fd < 256; fd++)
            close(fd);
        _exit(pipes_survive() ? 0 : 1);
    }
    CHECK(child_status(pid) == 0, "a forked child's new descriptors were closed behind it");

    closefrom(3);
    CHECK(pipes_survive(), "descriptors opened after closefrom() were closed behind the program");
    return 0;
}
