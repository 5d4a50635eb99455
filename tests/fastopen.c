/* A client that connects with its first send (sendto with MSG_FASTOPEN, as
 * curl --tcp-fastopen does) works as over kernel TCP and then takes the fast
 * path: the offer is made before that send connects.  Bug fixed: the
 * address was dropped, so the send went to an unconnected socket (EPIPE).
 * Both ways: sendto and sendmsg with msg_name.  The server does not enable
 * TCP_FASTOPEN, so the kernel connects first and sends after (the data
 * path is the same either way). */
#include <netinet/tcp.h>

#include "helpers.h"

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

static void run(int optin, int use_msg)
{
    const char *mode = optin ? "loopfast" : "kernel";
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "socket");
    if (optin)
        CHECK(opt_in(c) == 0, "opt in");
    ssize_t n;
    if (use_msg) {
        struct iovec iov = { "hello", 5 };
        struct msghdr m = { .msg_name = &addr, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1 };
        n = sendmsg(c, &m, MSG_FASTOPEN);
    } else {
        n = sendto(c, "hello", 5, MSG_FASTOPEN, (struct sockaddr *)&addr, len);
    }
    CHECK(n == 5, "first send with the address (%s, %s): %zd %s", mode, use_msg ? "sendmsg" : "sendto",
          n, strerror(errno));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    char buf[64];
    CHECK(read_full(s, buf, 5) == 5 && !memcmp(buf, "hello", 5), "server read (%s)", mode);
    for (int i = 0; i < 20; i++) {
        CHECK(write_full(s, "pong", 4) == 4 && read_full(c, buf, 4) == 4 && !memcmp(buf, "pong", 4),
              "s->c %d (%s)", i, mode);
        CHECK(write_full(c, "ping", 4) == 4 && read_full(s, buf, 4) == 4 && !memcmp(buf, "ping", 4),
              "c->s %d (%s)", i, mode);
    }
    CHECK(loopfast_fd_is_fast(c) == optin && loopfast_fd_is_fast(s) == optin, "fast (%s): %d %d",
          mode, loopfast_fd_is_fast(c), loopfast_fd_is_fast(s));
    close(c);
    CHECK(read(s, buf, sizeof buf) == 0, "EOF (%s)", mode);
    close(s);
    close(l);
}

int main(void)
{
    alarm(20);
    signal(SIGPIPE, SIG_IGN);
    for (int use_msg = 0; use_msg < 2; use_msg++) {
        run(0, use_msg);
        run(1, use_msg);
    }
    return 0;
}
