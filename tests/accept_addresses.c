/* accept() on an opted-in listener: the peer address it returns is what the
 * kernel would return (whole, truncated with the full length, or not asked
 * for), and connections are fast whatever the listener is bound to: a
 * wildcard (each connection's local address differs), a dual-stack [::]
 * reached over IPv4, or one specific address. */
#include "helpers.h"

static int listen_at(const char *ip, int family)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        in->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &in->sin_addr);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
        in6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &in6->sin6_addr);
        len = sizeof *in6;
    }
    int l = socket(family, SOCK_STREAM, 0);
    CHECK(l >= 0 && opt_in(l) == 0, "listener");
    CHECK(bind(l, (struct sockaddr *)&a, len) == 0 && listen(l, 8) == 0, "bind %s: %s", ip,
          strerror(errno));
    return l;
}

static uint16_t port_of(int l)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0, "getsockname");
    return a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
                                  : ((struct sockaddr_in6 *)&a)->sin6_port;
}

static int dial(const char *ip, uint16_t port)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&a;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = port;
        len = sizeof *in;
    } else {
        memset(&a, 0, sizeof a);
        CHECK(inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1, "address %s", ip);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = port;
        len = sizeof *in6;
    }
    return connect_to(&a, len, 1);
}

/* One byte each way; both ends must then be fast. */
static void exchange(int c, int s, const char *what)
{
    char b;
    CHECK(write_full(c, "x", 1) == 1 && read_full(s, &b, 1) == 1 && b == 'x', "%s: c->s", what);
    CHECK(write_full(s, "y", 1) == 1 && read_full(c, &b, 1) == 1 && b == 'y', "%s: s->c", what);
    CHECK(loopfast_fd_is_fast(c) == 1 && loopfast_fd_is_fast(s) == 1, "%s: not fast", what);
    close(c);
    close(s);
}

static void through(int l, const char *dst, const char *what)
{
    int c = dial(dst, port_of(l));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "%s: accept: %s", what, strerror(errno));
    exchange(c, s, what);
}

static void peer_addresses(void)
{
    int l = listen_at("127.0.0.1", AF_INET);
    struct sockaddr_in mine, got;
    socklen_t ml = sizeof mine, gl = sizeof got;

    int c = dial("127.0.0.1", port_of(l));
    CHECK(getsockname(c, (struct sockaddr *)&mine, &ml) == 0, "getsockname");
    int s = accept(l, (struct sockaddr *)&got, &gl);
    CHECK(s >= 0 && gl == sizeof got && !memcmp(&got, &mine, sizeof got), "whole peer address");
    exchange(c, s, "whole address");

    char small[4];
    socklen_t sl = sizeof small;
    c = dial("127.0.0.1", port_of(l));
    ml = sizeof mine;
    CHECK(getsockname(c, (struct sockaddr *)&mine, &ml) == 0, "getsockname");
    s = accept4(l, (struct sockaddr *)small, &sl, SOCK_CLOEXEC);
    CHECK(s >= 0 && sl == sizeof mine && !memcmp(small, &mine, sizeof small),
          "truncated peer address: length %u", (unsigned)sl);
    exchange(c, s, "truncated address");
    close(l);
}

int main(void)
{
    alarm(30);
    peer_addresses();

    int l = listen_at("0.0.0.0", AF_INET);
    through(l, "127.0.0.1", "0.0.0.0 reached at 127.0.0.1");
    through(l, "127.0.0.2", "0.0.0.0 reached at 127.0.0.2");
    through(l, "127.0.0.1", "0.0.0.0 reached at 127.0.0.1 again");
    close(l);

    l = socket(AF_INET6, SOCK_STREAM, 0);
    close(l);
    if (l >= 0) {
        l = listen_at("::", AF_INET6);
        through(l, "::1", "[::] reached at ::1");
        through(l, "127.0.0.1", "[::] reached at 127.0.0.1");
        close(l);
    }

    l = listen_at("127.0.0.3", AF_INET);
    through(l, "127.0.0.3", "127.0.0.3");
    through(l, "127.0.0.3", "127.0.0.3 again");
    close(l);
    return 0;
}
