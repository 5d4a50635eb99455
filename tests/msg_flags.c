/* recv/send flags on a fast connection behave as on kernel TCP: MSG_PEEK,
 * MSG_WAITALL, MSG_DONTWAIT, MSG_NOSIGNAL (EPIPE without SIGPIPE), and
 * SIGPIPE without it; MSG_PEEK|MSG_WAITALL waits for the whole length,
 * MSG_TRUNC discards (NULL buffer allowed), MSG_ERRQUEUE is EAGAIN, recvmsg
 * reports no control data and echoes MSG_CMSG_CLOEXEC, recv(MSG_OOB) without
 * urgent data is EINVAL.  Urgent data itself is kernel TCP's: a fast
 * connection's writes go to TCP for good and the urgent byte with them
 * (tests/urgent_data.c), a client that has not taken its answer yet stays
 * plain and sends it.  Run on a fast pair and, as control, a plain pair. */
#include "helpers.h"

#include <sys/ioctl.h>

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

static void more_flags(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel TCP";
    int c, s;
    char buf[64];
    ssize_t n;
    fast_pair(AF_INET, optin, &c, &s);
    /* MSG_PEEK|MSG_WAITALL waits until the whole length is there */
    CHECK(send(c, "abcd", 4, 0) == 4, "send");
    pid_t pid = fork();
    if (pid == 0) {
        usleep(50000);
        send(c, "efgh", 4, 0);
        _exit(0);
    }
    n = recv(s, buf, 8, MSG_PEEK | MSG_WAITALL);
    CHECK(n == 8 && !memcmp(buf, "abcdefgh", 8), "PEEK|WAITALL (%s): %zd", mode, n);
    child_status(pid);
    n = recv(s, buf, 16, MSG_PEEK | MSG_WAITALL | MSG_DONTWAIT);
    CHECK(n == 8, "PEEK|WAITALL|DONTWAIT (%s): %zd", mode, n);
    /* MSG_TRUNC discards without copying */
    memset(buf, 0, sizeof buf);
    n = recv(s, buf, 3, MSG_TRUNC);
    CHECK(n == 3 && buf[0] == 0, "TRUNC (%s): %zd, buffer '%.3s'", mode, n, buf);
    CHECK(recv(s, NULL, 2, MSG_TRUNC) == 2, "TRUNC into NULL (%s)", mode);
    CHECK(recv(s, NULL, 1, MSG_TRUNC | MSG_PEEK) == 1, "TRUNC|PEEK (%s)", mode);
    CHECK(recv(s, buf, sizeof buf, 0) == 3 && !memcmp(buf, "fgh", 3), "read after TRUNC (%s)", mode);
    /* the error queue is empty; no control data; MSG_CMSG_CLOEXEC echoed */
    CHECK(send(c, "xyz", 3, 0) == 3, "send");
    usleep(10000);
    char ctl[64];
    struct iovec iov = { buf, sizeof buf };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
    n = recvmsg(s, &m, MSG_ERRQUEUE);
    CHECK(n == -1 && errno == EAGAIN, "ERRQUEUE (%s): %zd %s", mode, n, strerror(errno));
    m.msg_controllen = sizeof ctl;
    m.msg_flags = -1;
    n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
    CHECK(n == 3 && m.msg_controllen == 0 && m.msg_flags == MSG_CMSG_CLOEXEC,
          "recvmsg (%s): %zd, controllen %zu, flags %#x", mode, n, (size_t)m.msg_controllen, m.msg_flags);
    /* urgent data */
    n = recv(s, buf, 1, MSG_OOB);
    CHECK(n == -1 && errno == EINVAL, "recv OOB with none (%s): %zd %s", mode, n, strerror(errno));
    n = send(c, "U", 1, MSG_OOB);
    CHECK(n == 1, "send OOB (%s): %s", mode, strerror(errno));
    usleep(10000);
    CHECK(recv(s, buf, 1, MSG_OOB) == 1 && buf[0] == 'U', "recv OOB (%s)", mode);
    CHECK(send(c, "z", 1, 0) == 1 && recv(s, buf, sizeof buf, 0) == 1 && buf[0] == 'z',
          "the stream after OOB (%s)", mode);
    close(c);
    close(s);

    /* a client that sends urgent data before it took its answer stays plain */
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    c = connect_to(&addr, len, optin);
    s = accept(l, NULL, NULL);
    close(l);
    CHECK(s >= 0, "accept");
    CHECK(send(c, "U", 1, MSG_OOB) == 1, "send OOB before the answer (%s): %s", mode, strerror(errno));
    usleep(10000);
    CHECK(recv(s, buf, 1, MSG_OOB) == 1 && buf[0] == 'U', "recv OOB before the answer (%s)", mode);
    CHECK(send(c, "ab", 2, 0) == 2 && read_full(s, buf, 2) == 2 && !memcmp(buf, "ab", 2), "c->s after OOB");
    CHECK(send(s, "cd", 2, 0) == 2 && read_full(c, buf, 2) == 2 && !memcmp(buf, "cd", 2), "s->c after OOB");
    CHECK(!loopfast_fd_is_fast(c), "a client that sent urgent data went fast");
    close(c);
    close(s);
}

int main(void)
{
    alarm(20);
    run(0);
    run(1);
    more_flags(0);
    more_flags(1);
    return 0;
}
