/* A server that execs right after accept(), before its client proved
 * itself (an inetd shape): the new image must check the client's proof
 * against the verdicts its old image's answer left in the region, under
 * the key passed across exec (design 4.7).  Without it the new image
 * would refuse the client, whose writes are then on a ring nobody reads.
 * Run both ways; bytes, end of stream and the fast path checked. */
#include "helpers.h"

#define ROUNDS 40

static void run(char *self, int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(2);
        char num[16];
        snprintf(num, sizeof num, "%d", c);
        execl(self, self, "serve", num, (char *)NULL);
        _exit(3);
    }
    int fd = connect_to(&addr, len, optin);
    client_echo_rounds(fd, ROUNDS, optin ? "loopfast" : "kernel");
    int fast = loopfast_fd_is_fast(fd);
    close(fd);
    int st = child_status(pid);
    fprintf(stderr, "%s: client fast %d, server exited %d\n", optin ? "loopfast" : "kernel", fast,
            st);
    CHECK(st == 10 + optin && fast == optin, "%s: expected both ends %s",
          optin ? "loopfast" : "kernel", optin ? "fast" : "plain");
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "serve"))
        return echo_until_eof(atoi(argv[2]));
    alarm(20);
    run(argv[0], 0);
    run(argv[0], 1);
    return 0;
}
