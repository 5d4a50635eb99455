/* TCP_INFO's tcpi_state through a connection's shutdowns: ESTABLISHED,
 * then FIN_WAIT2 at the end that shut down its writes and CLOSE_WAIT at
 * the other, then CLOSE at both once both did, as kernel TCP tells it.  On
 * the rings the FINs never reached the kernel's sockets, which stayed
 * ESTABLISHED: lighttpd, on POLLRDHUP, keeps a client that only half-
 * closed (CLOSE_WAIT) and closes one that is gone, and cut its replies to
 * `nc -N` short, or sent none (a helper's sweep).  Both ways, each state
 * waited for a moment (the kernel's passes through FIN_WAIT1 and LAST_ACK
 * until the ACK). */
#include <netinet/tcp.h>

#include "helpers.h"

static int state_of(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0, "TCP_INFO: %s", strerror(errno));
    return ti.tcpi_state;
}

static void expect(int fd, int want, const char *mode, const char *what)
{
    int got = -1;
    for (int i = 0; i < 200 && (got = state_of(fd)) != want; i++)
        sleep_ms(2);
    CHECK(got == want, "%s: %s: tcpi_state %d, kernel TCP's %d", mode, what, got, want);
}

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    int c, s;
    char b[8];
    fast_pair(AF_INET, optin, &c, &s);
    expect(c, TCP_ESTABLISHED, mode, "client, connected");
    expect(s, TCP_ESTABLISHED, mode, "server, connected");
    CHECK(shutdown(c, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    CHECK(read(s, b, sizeof b) == 0, "%s: the server did not read EOF", mode);
    expect(s, TCP_CLOSE_WAIT, mode, "server, after the client's SHUT_WR");
    expect(c, TCP_FIN_WAIT2, mode, "client, after its SHUT_WR");
    CHECK(write_full(s, "bye", 3) == 3, "%s: the server's reply", mode);
    expect(s, TCP_CLOSE_WAIT, mode, "server, half-closed, after writing");
    CHECK(shutdown(s, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    CHECK(read_full(c, b, sizeof b) == 3 && !memcmp(b, "bye", 3), "%s: the reply", mode);
    expect(c, TCP_CLOSE, mode, "client, both shut down");
    expect(s, TCP_CLOSE, mode, "server, both shut down");
    close(c);
    close(s);
}

int main(void)
{
    alarm(30);
    run(0);
    run(1);
    return 0;
}
