/* recv/send flags on a fast connection behave as on kernel TCP: MSG_PEEK,
 * MSG_WAITALL, MSG_DONTWAIT, MSG_NOSIGNAL (EPIPE without SIGPIPE), and
 * SIGPIPE without it.  Run on a fast pair and, as control, a plain pair. */
#include "helpers.h"

static volatile sig_atomic_t got_sigpipe;
static void on_sigpipe(int sig) { (void)sig; got_sigpipe = 1; }

static void run(int optin)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    char buf[256];
    /* MSG_DONTWAIT on a blocking socket with nothing to read */
    CHECK(recv(s, buf, sizeof buf, MSG_DONTWAIT) == -1 && errno == EAGAIN, "DONTWAIT: %s", strerror(errno));
    /* MSG_PEEK leaves the bytes */
    CHECK(send(c, "peekaboo", 8, 0) == 8, "send");
    usleep(10000);
    CHECK(recv(s, buf, 4, MSG_PEEK) == 4 && !memcmp(buf, "peek", 4), "peek");
    CHECK(recv(s, buf, sizeof buf, 0) == 8 && !memcmp(buf, "peekaboo", 8), "read after peek");
    /* MSG_WAITALL gathers a message written in pieces */
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 10; i++) {
            usleep(5000);
            write_full(c, "0123456789", 10);
        }
        _exit(0);
    }
    CHECK(recv(s, buf, 100, MSG_WAITALL) == 100, "WAITALL returned short");
    child_status(pid);
    /* recvmsg/sendmsg with two iovecs */
    struct iovec out[2] = { { "ab", 2 }, { "cde", 3 } };
    struct msghdr m = { .msg_iov = out, .msg_iovlen = 2 };
    CHECK(sendmsg(c, &m, 0) == 5, "sendmsg");
    char x[2], y[3];
    struct iovec in[2] = { { x, 2 }, { y, 3 } };
    struct msghdr r = { .msg_iov = in, .msg_iovlen = 2 };
    CHECK(recvmsg(s, &r, MSG_WAITALL) == 5 && !memcmp(x, "ab", 2) && !memcmp(y, "cde", 3), "recvmsg");
    /* peer gone: EPIPE, with or without the signal */
    close(s);
    usleep(50000);
    signal(SIGPIPE, on_sigpipe);
    ssize_t n = 0;
    for (int i = 0; i < 10 && n >= 0; i++)
        n = send(c, buf, 100, MSG_NOSIGNAL);
    CHECK(n == -1 && (errno == EPIPE || errno == ECONNRESET), "send to a closed peer: %zd %s", n, strerror(errno));
    CHECK(!got_sigpipe, "MSG_NOSIGNAL still raised SIGPIPE");
    for (int i = 0; i < 10 && !got_sigpipe; i++)
        send(c, buf, 100, 0);
    CHECK(got_sigpipe, "no SIGPIPE without MSG_NOSIGNAL");
    got_sigpipe = 0;
    close(c);
}

int main(void)
{
    alarm(20);
    run(0);
    run(1);
    return 0;
}
