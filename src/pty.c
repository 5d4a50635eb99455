/*
 * pty.c - login_tty() and forkpty() through loopfast's own dup2() and
 * close().
 *
 * glibc's login_tty() moves a terminal onto descriptors 0, 1 and 2 with its
 * internal __dup2, past our dup2(), and its forkpty() calls it so in the
 * child.  A server whose connection was on 0 and 1 (inetd's shape: telnetd
 * under tcpserver) then still had them in our table as the fast socket: in
 * the same image read(0) was served from the ring, and an exec handed the
 * connection to the shell as its stdin, which read the client's bytes while
 * telnetd's poll of the socket never saw them.  So both are done here, as
 * glibc does them, with the interposed calls: the numbers the terminal
 * takes are forgotten as a dup2() onto them forgets them.
 */
#include <errno.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <utmp.h>

#include "internal.h"

LF_EXPORT int login_tty(int fd)
{
    setsid();   /* (fails in a process group leader, as glibc lets it) */
    if (ioctl(fd, TIOCSCTTY, (char *)NULL) == -1)
        return -1;
    for (int target = 0; target <= 2; target++)
        while (dup2(fd, target) == -1 && errno == EBUSY)
            ;
    if (fd > 2)
        close(fd);
    return 0;
}

LF_EXPORT pid_t forkpty(int *amaster, char *name, const struct termios *termp,
                        const struct winsize *winp)
{
    int master, slave;
    if (openpty(&master, &slave, name, termp, winp) == -1)
        return -1;
    pid_t pid = fork();
    if (pid == -1) {
        int e = errno;
        close(master);
        close(slave);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        close(master);
        if (login_tty(slave))
            _exit(1);
        return 0;
    }
    *amaster = master;
    close(slave);
    return pid;
}
