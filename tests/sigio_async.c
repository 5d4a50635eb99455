/* O_ASYNC: the kernel sends SIGIO to the socket's owner when data comes,
 * which it cannot see on a ring.  A client that sets O_ASYNC (by fcntl or
 * by ioctl FIOASYNC) before its connection switched keeps it on TCP, so
 * that each of the server's messages brings its SIGIO, as over kernel TCP
 * (before, only the first one did).  Over kernel TCP and with both ends
 * opted in; the client counts a SIGIO per message. */
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>

#include "helpers.h"

#define MESSAGES 3

static volatile sig_atomic_t sigios;

static void on_sigio(int sig)
{
    (void)sig;
    sigios++;
}

static void server(int l)
{
    int c = accept(l, NULL, NULL);
    char b;
    if (c < 0)
        _exit(2);
    for (int i = 0; i < MESSAGES; i++)
        if (read_full(c, &b, 1) != 1 || (usleep(50000), write_full(c, "data", 4)) != 4)
            _exit(3);
    _exit(read_full(c, &b, 1) == 0 ? 0 : 4);
}

static void run(int optin, int by_ioctl)
{
    pid_t pid;
    int fd = connect_to_forked(optin, server, &pid);
    CHECK(fcntl(fd, F_SETOWN, getpid()) == 0, "F_SETOWN");
    if (by_ioctl) {
        int on = 1;
        CHECK(ioctl(fd, FIOASYNC, &on) == 0, "FIOASYNC");
    } else {
        CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC) == 0, "O_ASYNC");
    }
    int heard = 0;
    for (int i = 0; i < MESSAGES; i++) {
        int before = sigios;
        char b[4];
        CHECK(write_full(fd, "g", 1) == 1, "go");
        for (int t = 0; t < 200 && sigios == before; t++)
            usleep(5000);
        heard += sigios > before;
        CHECK(read_full(fd, b, sizeof b) == sizeof b, "message %d", i);
    }
    close(fd);
    int st = child_status(pid);
    fprintf(stderr, "%s (%s): SIGIO for %d of %d messages\n", optin ? "loopfast" : "kernel",
            by_ioctl ? "FIOASYNC" : "O_ASYNC", heard, MESSAGES);
    CHECK(st == 0, "server exit %d", st);
    CHECK(heard == MESSAGES, "%s (%s): SIGIO for %d of %d messages", optin ? "loopfast" : "kernel",
          by_ioctl ? "FIOASYNC" : "O_ASYNC", heard, MESSAGES);
}

int main(void)
{
    alarm(30);
    struct sigaction sa = { .sa_handler = on_sigio, .sa_flags = SA_RESTART };
    sigaction(SIGIO, &sa, NULL);
    for (int optin = 0; optin < 2; optin++)
        for (int by_ioctl = 0; by_ioctl < 2; by_ioctl++)
            run(optin, by_ioctl);
    return 0;
}
