/* A client that parks its connection in a cache process and takes it back
 * (postfix's smtp and scache: SCM_RIGHTS there and back, then there again).
 * Its first connection's region came back with it as a second copy, and
 * letting that copy go with the connection told the server the client held
 * the region no more: its next connection to the same server, asked for in
 * that region, went unanswered and stayed plain TCP for good.  Every
 * connection must switch, and carry the same bytes as over kernel TCP (the
 * client's echoes check them). */
#include <poll.h>
#include <sys/wait.h>

#include "helpers.h"

#define ROUNDS 10

/* The cache: keeps each descriptor it is sent; a "g" hands the oldest
 * one back. */
static void cache(int u)
{
    int held[8], n = 0;
    for (;;) {
        struct fd_message m;
        fd_message_init(&m);
        if (recvmsg(u, &m.m, 0) != 1)
            _exit(0);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m.m);
        if (cm && cm->cmsg_type == SCM_RIGHTS && n < 8) {
            memcpy(&held[n++], CMSG_DATA(cm), sizeof held[0]);
        } else if (m.b == 'g' && n > 0) {
            if (send_fd(u, held[0]) != 0)
                _exit(2);
            close(held[0]);
            memmove(held, held + 1, (size_t)--n * sizeof held[0]);
        }
    }
}

/* One process echoing on every connection at once, as the server keeps
 * the parked ones open (a forking server would not be asked in a region:
 * its listener is not its process's alone, design 4.8). */
static void poll_echo_server(int listener)
{
    struct pollfd p[8] = { { .fd = listener, .events = POLLIN } };
    int n = 1;
    static char buf[4096];
    for (;;) {
        if (poll(p, (nfds_t)n, -1) < 0)
            _exit(2);
        for (int i = n - 1; i >= 0; i--) {
            if (!p[i].revents)
                continue;
            if (i == 0) {
                int c = accept(listener, NULL, NULL);
                if (c < 0 || n == 8)
                    _exit(3);
                p[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
                continue;
            }
            ssize_t r = read(p[i].fd, buf, sizeof buf);
            if (r <= 0) {
                close(p[i].fd);
                p[i] = p[--n];
            } else if (write_full(p[i].fd, buf, (size_t)r) != r) {
                _exit(4);
            }
        }
    }
}

/* The server, its listener made after its fork: the only process that
 * accepts there, so its client's later connections are asked for in their
 * region (an answer says so), not offered. */
static pid_t serve_alone(int optin, struct sockaddr_storage *addr, socklen_t *len)
{
    int told[2];
    CHECK(pipe(told) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(60);
        close(told[0]);
        int l = listen_on(AF_INET, optin, addr, len);
        if (write(told[1], addr, sizeof *addr) != sizeof *addr)
            _exit(5);
        close(told[1]);
        poll_echo_server(l);
    }
    close(told[1]);
    CHECK(read_full(told[0], addr, sizeof *addr) == sizeof *addr, "the server's address");
    close(told[0]);
    *len = sizeof(struct sockaddr_in);
    return pid;
}

static void park(int u, int c)
{
    CHECK(send_fd(u, c) == 0, "parking: %s", strerror(errno));
    close(c);
}

static int take_back(int u)
{
    CHECK(write(u, "g", 1) == 1, "asking the cache");
    int c = recv_fd(u);
    CHECK(c >= 0, "taking a connection back");
    return c;
}

/* Connection, park, take back, park, connection, park: whether each of the
 * two connections was fast when parked. */
static void run(int optin, int fast[2])
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t server = serve_alone(optin, &addr, &len);
    int u[2];   /* after the server's fork: the cache's end of stream is our close */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, u) == 0, "socketpair");
    pid_t keeper = fork();
    CHECK(keeper >= 0, "fork");
    if (keeper == 0) {
        close(u[0]);
        cache(u[1]);
    }
    close(u[1]);
    const char *mode = optin ? "loopfast" : "kernel";

    int c = connect_to(&addr, len, optin);
    client_echo_rounds(c, ROUNDS, mode);
    park(u[0], c);
    c = take_back(u[0]);
    client_echo_rounds(c, ROUNDS, mode);
    fast[0] = loopfast_fd_is_fast(c);
    park(u[0], c);
    c = connect_to(&addr, len, optin);
    client_echo_rounds(c, ROUNDS, mode);
    fast[1] = loopfast_fd_is_fast(c);
    close(c);

    close(u[0]);
    CHECK(child_status(keeper) == 0, "%s: the cache failed", mode);
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
}

int main(void)
{
    alarm(30);
    int kernel[2], fast[2];
    run(0, kernel);
    run(1, fast);
    printf("fast: kernel %d %d, loopfast %d %d (the first connection back from the cache, "
           "the next one)\n", kernel[0], kernel[1], fast[0], fast[1]);
    CHECK(fast[0] == 1, "the connection taken back from the cache is not fast");
    CHECK(fast[1] == 1, "the connection after the round trip stayed plain");
    return 0;
}
