/* An acceptor that reads from a connection before it hands it to a worker
 * with SCM_RIGHTS (dovecot's login processes, a router that reads the
 * request line first): the connection is on its rings by then, and the
 * client's next request may wait on the ring, unread.  The worker must get
 * every byte and serve the connection on the fast path; before, it read
 * TCP while the client wrote the ring, and the exchange hung.  Also a
 * connection sent twice (one end, two numbers), a client end handed to
 * another process, and a worker that dies with bytes unread (the client's
 * ECONNRESET).  Each case run both ways, kernel TCP and loopfast. */
#include "helpers.h"

#define MSG 300
#define ROUNDS 10

static void fill(char *b, int seed)
{
    for (int i = 0; i < MSG; i++)
        b[i] = (char)(seed * 7 + i);
}

enum { CLOSES, KEEPS, TWICE, DIES };

/* The worker: takes the connection (twice: two numbers, the first closed)
 * and echoes until the end; DIES: reads a third of a request and exits. */
static void worker(int u, int how)
{
    int c = recv_fd(u);
    if (how == TWICE) {
        int again = recv_fd(u);
        if (again < 0 || c < 0)
            _exit(6);
        close(c);
        c = again;
    }
    if (c < 0)
        _exit(6);
    if (how == DIES) {
        char b[MSG / 3];
        _exit(read_full(c, b, sizeof b) == sizeof b ? 20 + loopfast_fd_is_fast(c) : 7);
    }
    _exit(echo_until_eof(c));
}

/* The acceptor: three echoes (the switch), then reads the first of two
 * requests that came together and hands the connection over. */
static void acceptor(int l, int u, int how)
{
    int c = accept(l, NULL, NULL);
    char b[MSG];
    if (c < 0)
        _exit(2);
    server_switch(c);
    if (read_full(c, b, MSG) != MSG || write_full(c, b, MSG) != MSG)
        _exit(3);
    if (send_fd(u, c) != 0 || (how == TWICE && send_fd(u, c) != 0))
        _exit(5);
    if (how == KEEPS)
        sleep_ms(300);   /* still holding it while the worker serves */
    close(c);
    _exit(0);
}

/* What the client saw when the worker died: 0 (end of stream) or errno. */
static int server_end(int optin, int how)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t w = fork();
    CHECK(w >= 0, "fork");
    if (w == 0) {
        close(l);
        worker(sv[1], how);
    }
    pid_t a = fork();
    CHECK(a >= 0, "fork");
    if (a == 0)
        acceptor(l, sv[0], how);
    close(l);
    close(sv[0]);
    close(sv[1]);
    int fd = connect_to(&addr, len, optin);
    const char *mode = optin ? "loopfast" : "kernel";
    client_switch(fd);
    char two[2 * MSG], in[MSG];
    fill(two, 1);
    fill(two + MSG, 2);
    CHECK(write_full(fd, two, sizeof two) == sizeof two, "%s: two requests", mode);
    CHECK(read_full(fd, in, MSG) == MSG && !memcmp(in, two, MSG), "%s: the acceptor's echo", mode);
    int seen = 0;
    if (how == DIES) {
        int st = child_status(w);
        CHECK(st == 20 + optin, "%s: worker exit %d (%d: it read, %s)", mode, st, 20 + optin,
              optin ? "fast" : "plain");
        ssize_t n = read(fd, in, MSG);
        seen = n < 0 ? errno : 0;
        CHECK(n <= 0, "%s: bytes after the worker's death", mode);
    } else {
        CHECK(read_full(fd, in, MSG) == MSG && !memcmp(in, two + MSG, MSG),
              "%s: the request left on the connection, echoed by the worker", mode);
        client_echo_rounds(fd, ROUNDS, mode);
        shutdown(fd, SHUT_WR);
        CHECK(read(fd, in, 1) == 0, "%s: end of stream after the worker's", mode);
        int st = child_status(w);
        CHECK(st == 10 + optin, "%s, case %d: worker exit %d (%d: %s)", mode, how, st,
              10 + optin, optin ? "it served the connection fast" : "a plain connection");
    }
    CHECK(child_status(a) == 0, "%s: acceptor", mode);
    close(fd);
    return seen;
}

/* A client that switched hands its connection to a helper process, which
 * finishes the exchange. */
static void client_end(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t server = fork();
    CHECK(server >= 0, "fork");
    if (server == 0) {
        close(sv[0]);
        close(sv[1]);
        echo_server(l);
    }
    close(l);
    pid_t h = fork();
    CHECK(h >= 0, "fork");
    if (h == 0) {
        int c = recv_fd(sv[1]);
        char first[MSG], want[MSG];
        fill(want, 3);
        /* the echo of what the client wrote before the hand-off first */
        if (c < 0 || read_full(c, first, MSG) != MSG || memcmp(first, want, MSG))
            _exit(6);
        client_echo_rounds(c, ROUNDS, "helper");
        shutdown(c, SHUT_WR);
        char b;
        _exit(read(c, &b, 1) == 0 ? 10 + loopfast_fd_is_fast(c) : 7);
    }
    int fd = connect_to(&addr, len, optin);
    client_switch(fd);
    char out[MSG];
    fill(out, 3);
    CHECK(write_full(fd, out, MSG) == MSG, "write before the hand-off");
    CHECK(send_fd(sv[0], fd) == 0, "send the client end");
    close(fd);
    close(sv[0]);
    close(sv[1]);
    int st = child_status(h);
    const char *mode = optin ? "loopfast" : "kernel";
    CHECK(st == 10 + optin, "%s: helper exit %d (%d: it finished the exchange, %s)", mode, st,
          10 + optin, optin ? "fast" : "plain");
    st = child_status(server);
    CHECK(st == 10 + optin, "%s: server exit %d", mode, st);
}

int main(void)
{
    alarm(40);
    for (int how = CLOSES; how <= TWICE; how++) {
        server_end(0, how);
        server_end(1, how);
    }
    int kernel = server_end(0, DIES), fast = server_end(1, DIES);
    CHECK(kernel == fast, "the worker died with bytes unread: the client read %s over the "
          "kernel, %s with loopfast", strerror(kernel), strerror(fast));
    client_end(0);
    client_end(1);
    return 0;
}
