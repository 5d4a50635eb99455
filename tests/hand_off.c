/* An acceptor hands each connection to a worker process with SCM_RIGHTS
 * right after accept() (prefork-by-passing servers, socket-activation
 * proxies), and keeps its own copy a while or closes it at once.  The
 * worker's copy knows nothing of rings, so the connection must stay on
 * the kernel's path: the acceptor revokes the answer its client has not
 * taken.  Before, a client that took it at its second exchange wrote to a
 * ring nobody read and the exchange hung while the acceptor kept its copy.
 * Run both ways: every echo checked, end of stream at the client. */
#include "helpers.h"

#define ROUNDS 10

static void run(int optin, int keep)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t worker = fork();
    CHECK(worker >= 0, "fork");
    if (worker == 0) {
        close(l);
        int c = recv_fd(sv[1]);
        _exit(c < 0 ? 6 : echo_until_eof(c));
    }
    pid_t acceptor = fork();
    CHECK(acceptor >= 0, "fork");
    if (acceptor == 0) {
        int c = accept(l, NULL, NULL);
        if (send_fd(sv[0], c) != 0)
            _exit(5);
        if (keep)
            usleep(300000);   /* still holding it while the client exchanges */
        close(c);
        _exit(0);
    }
    close(l);
    int fd = connect_to(&addr, len, optin);
    char what[64];
    snprintf(what, sizeof what, "%s, acceptor %s", optin ? "loopfast" : "kernel",
             keep ? "keeps its copy" : "closes at once");
    client_echo_rounds(fd, ROUNDS, what);
    CHECK(child_status(acceptor) == 0, "acceptor");
    shutdown(fd, SHUT_WR);
    char b;
    CHECK(read(fd, &b, 1) == 0, "end of stream after the worker's");
    close(fd);
    int st = child_status(worker);
    CHECK(st == 10, "%s: worker exit %d (10: a plain connection)", optin ? "loopfast" : "kernel",
          st);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    alarm(25);
    for (int keep = 0; keep < 2; keep++) {
        run(0, keep);
        run(1, keep);
    }
    return 0;
}
