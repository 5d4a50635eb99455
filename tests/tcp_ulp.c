/* A TCP upper layer protocol (setsockopt TCP_ULP "tls": kernel TLS, which
 * OpenSSL and GnuTLS set after their handshake when configured to) makes
 * the kernel encrypt what the socket sends: bytes on a ring would pass it
 * by in clear, and a peer doing TLS itself would read garbage.  Set before
 * the switch (by the client, or by a server whose client has not taken its
 * answer), the call is the kernel's and the connection stays plain TCP;
 * set after it, the call fails ENOENT, as on a kernel without the module
 * (the TLS libraries then do TLS themselves, on the ring).  Each case is
 * compared with kernel TCP's answer to the same call. */
#include <netinet/tcp.h>

#include "helpers.h"

#define ROUNDS 20

/* The call's result, as "0" or the errno's name. */
static const char *ulp_result(int fd)
{
    static char out[64];
    int r = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3);
    snprintf(out, sizeof out, "%s", r == 0 ? "0" : strerror(errno));
    return out;
}

static void exchanges(int c, int s, const char *what)
{
    char b = 'x';
    for (int i = 0; i < 3; i++)
        CHECK(write_full(c, &b, 1) == 1 && read_full(s, &b, 1) == 1 &&
                  write_full(s, &b, 1) == 1 && read_full(c, &b, 1) == 1,
              "%s: exchange %d", what, i);
    char out[300], in[300];
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < sizeof out; i++)
            out[i] = (char)(r * 7 + (int)i);
        CHECK(write_full(c, out, sizeof out) == sizeof out &&
                  read_full(s, in, sizeof in) == sizeof in && !memcmp(in, out, sizeof in),
              "%s: bytes %d", what, r);
    }
}

/* Before the switch: `by_server` sets it after reading the client's first
 * byte (its answer made, not taken yet), else the client right after
 * connect(). */
static void before_switch(int by_server)
{
    const char *what = by_server ? "server, answer not taken" : "client, before its first byte";
    char kernel[64], fast[64], b = 'q';
    int c, s;
    for (int optin = 0; optin < 2; optin++) {
        close(accepted_pair(AF_INET, optin, &c, &s));
        if (by_server)
            CHECK(write_full(c, &b, 1) == 1 && read_full(s, &b, 1) == 1 &&
                      write_full(s, &b, 1) == 1 && read_full(c, &b, 1) == 1,
                  "%s: first exchange", what);
        snprintf(optin ? fast : kernel, sizeof kernel, "%s", ulp_result(by_server ? s : c));
        exchanges(c, s, what);
        CHECK(loopfast_fd_is_fast(c) == 0 && loopfast_fd_is_fast(s) == 0,
              "%s (%s): the connection switched (client %d, server %d)", what,
              optin ? "loopfast" : "kernel", loopfast_fd_is_fast(c), loopfast_fd_is_fast(s));
        close(c);
        close(s);
    }
    printf("%-32s kernel: %s; loopfast: %s\n", what, kernel, fast);
    CHECK(!strcmp(kernel, fast), "%s: the kernel said %s, loopfast %s", what, kernel, fast);
}

static void after_switch(void)
{
    int pc, ps, c, s;
    fast_pair(AF_INET, 0, &pc, &ps);
    char kernel[64];
    snprintf(kernel, sizeof kernel, "%s", ulp_result(pc));
    fast_pair(AF_INET, 1, &c, &s);
    errno = 0;
    int r = setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", 3);
    printf("%-32s kernel: %s; loopfast: %s\n", "after the switch", kernel,
           r == 0 ? "0" : strerror(errno));
    CHECK(r == -1 && errno == ENOENT, "after the switch: %d (%s), not ENOENT", r, strerror(errno));
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_ULP, "tls", 3) == -1 && errno == ENOENT,
          "after the switch, the server end: not ENOENT");
    exchanges(c, s, "after the switch");
    CHECK(loopfast_fd_is_fast(c) == 1 && loopfast_fd_is_fast(s) == 1, "no longer fast");
    close(pc);
    close(ps);
    close(c);
    close(s);
}

int main(void)
{
    alarm(30);
    before_switch(0);
    before_switch(1);
    after_switch();
    return 0;
}
