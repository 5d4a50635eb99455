/* A client whose offer no one answers (the server did not opt in) waits on
 * TCP as a plain read would: SO_RCVTIMEO times out with EAGAIN, O_NONBLOCK
 * fails at once, a signal with SA_RESTART does not end the read, one
 * without it does (EINTR); and the byte that finally comes is delivered, on
 * a connection that stays plain. */
#include <fcntl.h>
#include <sys/time.h>

#include "helpers.h"

static volatile sig_atomic_t hits;
static void on_alarm(int sig) { (void)sig; hits++; }

static void alarm_in_100ms(int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
    struct itimerval it = { { 0, 0 }, { 0, 100000 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 0, &addr, &len);   /* the server does not opt in */
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {   /* accepts, then writes one byte per byte on `go` */
        alarm(30);
        close(go[1]);
        int c = accept(l, NULL, NULL);
        char b;
        while (c >= 0 && read(go[0], &b, 1) == 1)
            write_full(c, &b, 1);
        _exit(0);
    }
    close(l);
    close(go[0]);
    int fd = connect_to(&addr, len, 1);
    char b;

    struct timeval tv = { 0, 100000 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    CHECK(read(fd, &b, 1) == -1 && errno == EAGAIN, "SO_RCVTIMEO: %s", strerror(errno));
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    CHECK(read(fd, &b, 1) == -1 && errno == EAGAIN, "O_NONBLOCK: %s", strerror(errno));
    CHECK(fcntl(fd, F_SETFL, 0) == 0, "blocking again");

    alarm_in_100ms(0);
    CHECK(read(fd, &b, 1) == -1 && errno == EINTR && hits == 1, "no SA_RESTART: %s",
          strerror(errno));

    pid_t sender = fork();
    if (sender == 0) {   /* the byte comes after the signal */
        usleep(300000);
        write_full(go[1], "z", 1);
        _exit(0);
    }
    alarm_in_100ms(1);
    ssize_t n = read(fd, &b, 1);
    CHECK(n == 1 && b == 'z' && hits == 2, "SA_RESTART: read gave %zd (%s), %d signals", n,
          strerror(errno), (int)hits);
    CHECK(child_status(sender) == 0, "sender");
    CHECK(loopfast_fd_is_fast(fd) == 0, "a connection no one answered is fast");
    close(go[1]);
    close(fd);
    int st = child_status(pid);
    CHECK(st == 0, "server: %d", st);
    return 0;
}
