/* The peer shuts its writes down, then closes with our bytes unread (Java's
 * Socket.close() does both): its kernel resets the connection after the
 * FIN, and Linux reports a reset that comes after the FIN as EPIPE (and
 * SIGPIPE), not ECONNRESET.  On the rings the FIN never reached our kernel
 * socket, which took the reset in ESTABLISHED: the first write failed
 * "Connection reset by peer" where kernel TCP says "Broken pipe" (a
 * helper's sweep, Java and Python).  The same sequence of calls both ways
 * (a read, SO_ERROR or not, two writes, a read) must give the same
 * answers. */
#include "helpers.h"

/* One call's answer: its value, or its errno's name. */
static void note(char *log, size_t size, const char *call, ssize_t r)
{
    size_t n = strlen(log);
    snprintf(log + n, size - n, "%s=%s ", call, r >= 0 ? (r ? "n" : "0") : strerrorname_np(errno));
}

static void run(int optin, int ask_error, char *log, size_t size)
{
    int c, s;
    char b[1000];
    log[0] = 0;
    fast_pair(AF_INET, optin, &c, &s);
    memset(b, 'x', sizeof b);
    CHECK(write_full(c, b, sizeof b) == sizeof b, "write");
    CHECK(read_full(s, b, 10) == 10, "the server's first bytes");
    CHECK(shutdown(s, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    note(log, size, "read", read(c, b, sizeof b));
    close(s);   /* 990 bytes unread: a reset */
    sleep_ms(50);
    if (ask_error) {
        int err = -1;
        socklen_t len = sizeof err;
        CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len) == 0, "SO_ERROR");
        errno = err;
        note(log, size, "SO_ERROR", err ? -1 : 0);
    }
    note(log, size, "send", send(c, "y", 1, MSG_NOSIGNAL));
    note(log, size, "send", send(c, "y", 1, MSG_NOSIGNAL));
    note(log, size, "read", read(c, b, sizeof b));
    close(c);
}

int main(void)
{
    alarm(30);
    for (int ask = 0; ask < 2; ask++) {
        char kernel[256], fast[256];
        run(0, ask, kernel, sizeof kernel);
        run(1, ask, fast, sizeof fast);
        printf("kernel:   %s\nloopfast: %s\n", kernel, fast);
        CHECK(!strcmp(kernel, fast), "loopfast answered \"%s\", kernel TCP \"%s\"", fast, kernel);
    }
    return 0;
}
