/* What a server holds per client process (design 10, 11): its clients are
 * separate processes, each with one long fast connection; the server's
 * descriptors grow by the accepted sockets plus four per peer process (the
 * region's memfd, its two doorbells, its channel) and nothing more: the
 * verdicts on the clients' proofs live in the region (4.7), where they
 * were a fifth descriptor.  Run both ways: over kernel TCP the growth is
 * the accepted sockets alone.  A process also makes, once and on first
 * need, the sock_diag socket and a wait epoll per thread that sleeps on a
 * doorbell (design 10): those may fall among the clients measured. */
#include <poll.h>

#include "helpers.h"

#define FIRST 3
#define MORE 8
#define CLIENTS (FIRST + MORE)
#define ONCE 2   /* descriptors a process makes once, on first need */

static int go[CLIENTS][2];

/* A client process: waits for its turn, connects, echoes until the server
 * closes. */
static void client(int i, const struct sockaddr_storage *addr, socklen_t len, int optin)
{
    char b;
    if (read(go[i][0], &b, 1) != 1)
        _exit(2);
    int fd = connect_to(addr, len, optin);
    while (read_full(fd, &b, 1) == 1)
        if (write_full(fd, &b, 1) != 1)
            _exit(3);
    _exit(0);
}

/* Lets clients [from, to) connect; accepts and switches each (two echoes). */
static void serve(int listener, int from, int to, int *conns, int optin)
{
    for (int i = from; i < to; i++) {
        CHECK(write(go[i][1], "g", 1) == 1, "go");
        int c = accept(listener, NULL, NULL);
        CHECK(c >= 0, "accept: %s", strerror(errno));
        for (int k = 0; k < 2; k++) {
            char b = (char)('a' + k);
            CHECK(write_full(c, &b, 1) == 1 && read_full(c, &b, 1) == 1 && b == 'a' + k,
                  "echo %d of client %d", k, i);
        }
        CHECK(loopfast_fd_is_fast(c) == optin, "client %d: fast %d, expected %d", i,
              loopfast_fd_is_fast(c), optin);
        conns[i] = c;
    }
}

/* The server's descriptors beyond its accepted sockets, for MORE clients. */
static int growth(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int listener = listen_on(AF_INET, optin, &addr, &len);
    pid_t pids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        CHECK(pipe(go[i]) == 0, "pipe");
    for (int i = 0; i < CLIENTS; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0, "fork");
        if (pids[i] == 0) {
            close(listener);
            client(i, &addr, len, optin);
        }
    }
    int conns[CLIENTS];
    serve(listener, 0, FIRST, conns, optin);
    int before = count_open_fds();
    serve(listener, FIRST, CLIENTS, conns, optin);
    int after = count_open_fds();
    for (int i = 0; i < CLIENTS; i++) {
        close(conns[i]);
        close(go[i][0]);
        close(go[i][1]);
        CHECK(child_status(pids[i]) == 0, "client %d", i);
    }
    close(listener);
    return after - before - MORE;
}

int main(void)
{
    alarm(30);
    int kernel = growth(0), fast = growth(1);
    fprintf(stderr, "descriptors for %d peer processes beyond their sockets: kernel %d, loopfast %d\n",
            MORE, kernel, fast);
    CHECK(kernel == 0, "over kernel TCP the server holds only its sockets (%d more)", kernel);
    CHECK(fast <= 4 * MORE + ONCE, "loopfast holds %d descriptors for %d peer processes, at most "
          "4 each and %d once expected", fast, MORE, ONCE);
    return 0;
}
