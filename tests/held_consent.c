/* sshd's shape: the server re-execs onto its connection on stdin (its
 * offer is held until the new image reads it through us), writes its
 * banner, reads the client's (which gives the offer), and its pre-auth
 * child lowers RLIMIT_NOFILE at once, which settles every answer not taken.
 * The client asked while the offer was held, then waits in poll() for the
 * server's reply: it must come back for the answer in time, or the
 * connection stays on TCP (half of all ssh sessions did).  Run both ways;
 * bytes checked, and both ends fast with loopfast. */
#include "helpers.h"
#include <poll.h>
#include <sys/resource.h>

#define ROUNDS 20

/* The new image: stdin is the connection. */
static int serve(void)
{
    char b;
    if (write_full(0, "S", 1) != 1 || read_full(0, &b, 1) != 1 || b != 'C')
        return 2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 3;
    int lowest = dup(0);   /* no number below the limit left free, as sshd's child does */
    if (lowest < 0 || close(lowest) != 0)
        return 3;
    rl.rlim_cur = (rlim_t)lowest;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 3;
    if (write_full(0, "R", 1) != 1)
        return 4;
    return echo_until_eof(0);
}

static void run(char *self, int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0) {
        int c = accept(l, NULL, NULL);
        if (c < 0 || dup2(c, 0) != 0)
            _exit(2);
        close(c);
        close(l);
        execl(self, self, "serve", (char *)NULL);
        _exit(3);
    }
    const char *mode = optin ? "loopfast" : "kernel";
    int fd = connect_to(&addr, len, optin);
    char b;
    CHECK(read_full(fd, &b, 1) == 1 && b == 'S', "%s: banner", mode);
    CHECK(write_full(fd, "C", 1) == 1, "%s: our banner", mode);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN), "%s: poll for the reply", mode);
    CHECK(read_full(fd, &b, 1) == 1 && b == 'R', "%s: reply", mode);
    client_echo_rounds(fd, ROUNDS, mode);
    int fast = loopfast_fd_is_fast(fd);
    close(fd);
    int st = child_status(pid);
    CHECK(st == 10 + optin && fast == optin, "%s: client fast %d, server exit %d (expected %d)",
          mode, fast, st, 10 + optin);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "serve"))
        return serve();
    alarm(20);
    for (int i = 0; i < 3; i++) {
        run(argv[0], 0);
        run(argv[0], 1);
    }
    return 0;
}
