/* Socket calls on a fast connection answer as on kernel TCP: SO_RCVTIMEO,
 * FIONREAD/SIOCINQ, SIOCOUTQ, FIONBIO, getsockname/getpeername, TCP_INFO,
 * SO_ERROR, and shutdown(SHUT_RD / SHUT_WR / SHUT_RDWR). */
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/time.h>

#include "helpers.h"

int main(void)
{
    alarm(20);
    signal(SIGPIPE, SIG_IGN);
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    char buf[4096];
    struct timeval tv = { 0, 200000 };
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    CHECK(read(s, buf, 1) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK), "timed-out read: %s",
          strerror(errno));
    gettimeofday(&t1, NULL);
    CHECK(t1.tv_sec - t0.tv_sec < 3, "SO_RCVTIMEO took too long");
    CHECK(write_full(c, buf, 1000) == 1000, "write");
    usleep(10000);
    int n = -1;
    CHECK(ioctl(s, FIONREAD, &n) == 0 && n == 1000, "FIONREAD says %d", n);
    CHECK(ioctl(c, SIOCOUTQ, &n) == 0 && n == 1000, "SIOCOUTQ says %d", n);
    CHECK(read_full(s, buf, 1000) == 1000, "read");
    CHECK(ioctl(s, SIOCINQ, &n) == 0 && n == 0, "SIOCINQ after read %d", n);
    int on = 1;
    CHECK(ioctl(s, FIONBIO, &on) == 0 && read(s, buf, 1) == -1 && errno == EAGAIN, "FIONBIO");
    on = 0;
    ioctl(s, FIONBIO, &on);
    struct sockaddr_in cl, cp, sl, sp;
    socklen_t l = sizeof cl;
    getsockname(c, (struct sockaddr *)&cl, &l);
    l = sizeof cp; getpeername(c, (struct sockaddr *)&cp, &l);
    l = sizeof sl; getsockname(s, (struct sockaddr *)&sl, &l);
    l = sizeof sp; getpeername(s, (struct sockaddr *)&sp, &l);
    CHECK(cl.sin_port == sp.sin_port && cp.sin_port == sl.sin_port, "names mirror each other");
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state == TCP_ESTABLISHED,
          "TCP_INFO: established");
    int err = -1;
    socklen_t el = sizeof err;
    CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0, "SO_ERROR");
    int one = 1;
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
          setsockopt(c, IPPROTO_TCP, TCP_CORK, &one, sizeof one) == 0 &&
          setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0, "setsockopt");
    /* SHUT_WR: the peer reads EOF, the other direction still works */
    CHECK(shutdown(c, SHUT_WR) == 0, "shutdown WR");
    CHECK(read(s, buf, 1) == 0, "EOF after SHUT_WR");
    CHECK(write(c, "x", 1) == -1 && errno == EPIPE, "write after SHUT_WR: EPIPE");
    CHECK(write_full(s, "back", 4) == 4 && read_full(c, buf, 4) == 4, "reverse direction");
    /* SHUT_RD: reads return 0 at once */
    CHECK(shutdown(s, SHUT_RD) == 0 && read(s, buf, 1) == 0, "SHUT_RD");
    CHECK(shutdown(s, SHUT_RDWR) == 0 && read(c, buf, 1) == 0, "SHUT_RDWR: peer sees EOF");
    return 0;
}
