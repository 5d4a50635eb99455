/* O_NONBLOCK and SO_RCVTIMEO changed where loopfast does not make the call.
 * A socket this process made and never shared has its flags answered from
 * what our fcntl/ioctl/setsockopt saw (no system call before each sleep or
 * EAGAIN); these cases make the flag change elsewhere, and each read must
 * then behave as the kernel's: EAGAIN at once on a socket another process
 * made non-blocking, a timeout once SO_RCVTIMEO is set.  The other process
 * gets the file by fork() after the socket was made, by SCM_RIGHTS, and by
 * posix_spawn (this program run again as "setfl FD").  Run over kernel TCP
 * and over loopfast, on the accepted end (made by accept()) and the
 * connecting end (made by socket(), opted in with loopfast_ioctl), and
 * again with LOOPFAST_MODE=all (the program runs itself again), where
 * socket() makes it ours at once. */
#include <fcntl.h>
#include <spawn.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

extern char **environ;
static char *self;   /* argv[0] (not /proc/self/exe: valgrind's under valgrind) */

/* A blocking read that finds nothing must not block for good. */
static void expect_eagain(int fd, const char *how)
{
    char b;
    alarm(10);
    ssize_t n = read(fd, &b, 1);
    alarm(0);
    CHECK(n < 0 && errno == EAGAIN, "%s: read %zd (%s), EAGAIN expected", how, n,
          n < 0 ? strerror(errno) : "data");
}

static int receiver = -1;   /* a process that sets O_NONBLOCK on what it is sent */

/* 0 when O_NONBLOCK is now set on fd's file, 1 when not */
static int set_nonblocking(int fd)
{
    return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 ? 0 : 1;
}

static void receive_and_set(int sock)
{
    for (;;) {
        int got = recv_fd(sock);
        if (got < 0)
            _exit(0);
        char b = (char)set_nonblocking(got);
        close(got);
        if (write(sock, &b, 1) != 1)
            _exit(1);
    }
}

static void start_receiver(void)
{
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(sp[0]);
        receive_and_set(sp[1]);
    }
    close(sp[1]);
    receiver = sp[0];
}

static void make_nonblocking_elsewhere(int fd, int how)
{
    if (how == 0) {   /* a child forked after the socket was made */
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0)
            _exit(set_nonblocking(fd));
        CHECK(child_status(pid) == 0, "child fcntl");
    } else if (how == 1) {   /* sent with SCM_RIGHTS to a process forked before it was made */
        char b;
        CHECK(send_fd(receiver, fd) == 0, "sendmsg: %s", strerror(errno));
        CHECK(read(receiver, &b, 1) == 1 && b == 0, "receiver's fcntl");
    } else {   /* posix_spawn'ed image */
        char num[16];
        snprintf(num, sizeof num, "%d", fd);
        char *argv[] = { self, "setfl", num, NULL };
        pid_t pid;
        CHECK(posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0, "posix_spawn");
        CHECK(child_status(pid) == 0, "spawned fcntl");
    }
}

static const char *const shapes[] = { "fork", "SCM_RIGHTS", "posix_spawn" };

/* A connected pair in a child-free state: *mine is the end under test. */
static void pair(int optin, int accepted_end, int *mine, int *other)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    *mine = accepted_end ? s : c;
    *other = accepted_end ? c : s;
}

static void run(int optin, int accepted_end)
{
    const char *how = optin ? "loopfast" : "kernel";
    for (int shape = 0; shape < 3; shape++) {
        int fd, other;
        pair(optin, accepted_end, &fd, &other);
        char b;
        /* a blocking read that sleeps once: its flags are noted now */
        CHECK(write_full(other, "1", 1) == 1 && read(fd, &b, 1) == 1, "%s: first read", how);
        make_nonblocking_elsewhere(fd, shape);
        char what[96];
        snprintf(what, sizeof what, "%s, %s end, O_NONBLOCK set by %s", how,
                 accepted_end ? "accepted" : "connecting", shapes[shape]);
        expect_eagain(fd, what);
        close(fd), close(other);
    }
    /* SO_RCVTIMEO set after blocking reads noted "no timeout" */
    int fd, other;
    pair(optin, accepted_end, &fd, &other);
    char b;
    CHECK(write_full(other, "1", 1) == 1 && read(fd, &b, 1) == 1, "%s: first read", how);
    struct timeval tv = { 0, 200000 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    char what[64];
    snprintf(what, sizeof what, "%s, %s end, SO_RCVTIMEO", how, accepted_end ? "accepted" : "connecting");
    expect_eagain(fd, what);
    CHECK(loopfast_fd_is_fast(fd) == optin, "%s: fast %d", what, loopfast_fd_is_fast(fd));
    close(fd), close(other);
}

/* The file is shared before loopfast knows the socket: a child forked
 * between socket() and the opt-in sets O_NONBLOCK once told to. */
static void run_forked_before_optin(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0, "pipe");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        char b;
        if (read(go[0], &b, 1) != 1)
            _exit(2);
        b = (char)set_nonblocking(fd);
        _exit(write(done[1], &b, 1) == 1 ? 0 : 3);
    }
    if (optin)
        CHECK(opt_in(fd) == 0, "opt in");
    CHECK(connect(fd, (struct sockaddr *)&addr, len) == 0, "connect");
    int other = accept(l, NULL, NULL);
    CHECK(other >= 0, "accept");
    char b;
    for (int i = 0; i < 3; i++)   /* both ways switched, as fast_pair's */
        CHECK(write_full(fd, "a", 1) == 1 && read_full(other, &b, 1) == 1 &&
              write_full(other, "b", 1) == 1 && read_full(fd, &b, 1) == 1, "exchange %d", i);
    CHECK(loopfast_fd_is_fast(fd) == optin, "fast %d", loopfast_fd_is_fast(fd));
    CHECK(write_full(other, "1", 1) == 1 && read(fd, &b, 1) == 1, "first read");
    CHECK(write(go[1], "g", 1) == 1 && read(done[0], &b, 1) == 1 && b == 0, "child's fcntl");
    CHECK(child_status(pid) == 0, "child");
    expect_eagain(fd, optin ? "loopfast, forked before the opt-in" : "kernel, forked before the opt-in");
    close(fd), close(other), close(l);
    close(go[0]), close(go[1]), close(done[0]), close(done[1]);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "setfl")) {
        return set_nonblocking(atoi(argv[2]));
    }
    self = argv[0];
    start_receiver();   /* before any socket under test is made */
    const char *mode = getenv("LOOPFAST_MODE");
    if (mode && !strcmp(mode, "all")) {   /* every TCP socket is loopfast's */
        run(1, 1);
        run(1, 0);
        return 0;
    }
    for (int optin = 0; optin < 2; optin++) {
        run(optin, 1);
        run(optin, 0);   /* opted in with loopfast_ioctl after socket() */
        run_forked_before_optin(optin);
    }
    /* again with every socket ours from socket() on */
    setenv("LOOPFAST_MODE", "all", 1);
    close(receiver);   /* it exits */
    execv(self, argv);
    FAIL("execv: %s", strerror(errno));
}
