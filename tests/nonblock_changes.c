/* O_NONBLOCK on a fast socket, however it changes: a read with no data fails
 * with EAGAIN as soon as the flag is set (fcntl, ioctl FIONBIO, or another
 * process sharing the socket, whose change loopfast cannot see), and blocks
 * until data comes once it is cleared (the same three ways). */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "helpers.h"

/* In a child: sets or clears O_NONBLOCK on the shared socket. */
static void flag_from_child(int fd, int on)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int fl = fcntl(fd, F_GETFL);
        _exit(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) == 0 ? 0 : 1);
    }
    CHECK(child_status(pid) == 0, "child fcntl");
}

static void expect_eagain(int fd, const char *how)
{
    char b;
    CHECK(read(fd, &b, 1) == -1 && errno == EAGAIN, "%s: read gave %s", how, strerror(errno));
}

/* The peer writes one byte 100 ms from now; the read must wait for it. */
static void expect_blocking(int fd, int peer, const char *how)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        usleep(100000);
        _exit(write_full(peer, "k", 1) == 1 ? 0 : 1);
    }
    char b = 0;
    ssize_t n = read(fd, &b, 1);
    CHECK(n == 1 && b == 'k', "%s: read gave %zd (%s)", how, n, strerror(errno));
    CHECK(child_status(pid) == 0, "writer");
}

int main(void)
{
    alarm(30);
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    expect_blocking(c, s, "blocking from the start");

    CHECK(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK) == 0, "fcntl");
    expect_eagain(c, "after fcntl O_NONBLOCK");
    CHECK(fcntl(c, F_SETFL, fcntl(c, F_GETFL) & ~O_NONBLOCK) == 0, "fcntl");
    expect_blocking(c, s, "after fcntl cleared it");

    int on = 1;
    CHECK(ioctl(c, FIONBIO, &on) == 0, "FIONBIO");
    expect_eagain(c, "after FIONBIO 1");
    on = 0;
    CHECK(ioctl(c, FIONBIO, &on) == 0, "FIONBIO");
    expect_blocking(c, s, "after FIONBIO 0");

    flag_from_child(c, 1);
    expect_eagain(c, "after another process set it");
    expect_eagain(c, "after another process set it, again");
    flag_from_child(c, 0);
    expect_blocking(c, s, "after another process cleared it");
    CHECK(loopfast_fd_is_fast(c) == 1, "not fast");
    return 0;
}
