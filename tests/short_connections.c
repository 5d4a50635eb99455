/* A client that makes a connection per request (nginx to php-fpm without
 * keep-alive) closes each before it switches: its offers cost both ends
 * ~20 system calls and bought nothing.  After 16 such connections in a
 * row, each within 100 ms of the one before, and none there that switched
 * in the last second, its connections to that destination make no offer
 * (plain TCP from the start), but for one in 16, which offers; one that
 * switches, or a pause, brings the offers back.  Here: 20 short
 * connections, then a long one (plain: no offer was made), then long ones
 * until the probe among them switches (within 16), after which the next
 * long one switches at once; after a second without a switch, 20 short
 * ones again, a pause of 150 ms, and a long one switches.  Every reply's
 * bytes are checked, and the same runs over kernel TCP. */
#include "helpers.h"

#define REPLY 1024
#define SHORTS 20

/* 'S': a request of 100 bytes, a reply of REPLY bytes, then close (the
 * server closes first, as php-fpm does); 'L': echo until EOF. */
static void serve(int l)
{
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(2);
        char kind, req[100], reply[REPLY];
        if (read_full(c, &kind, 1) != 1)
            _exit(3);
        if (kind == 'S') {
            if (read_full(c, req, sizeof req) != sizeof req)
                _exit(4);
            memset(reply, req[0], sizeof reply);
            if (write_full(c, reply, sizeof reply) != sizeof reply)
                _exit(5);
        } else {
            echo_until_eof(c);
        }
        close(c);
    }
}

static void short_one(const struct sockaddr_storage *addr, socklen_t len, int optin, char tag)
{
    int fd = connect_to(addr, len, optin);
    char req[101], reply[REPLY + 1];
    req[0] = 'S';
    memset(req + 1, tag, 100);
    CHECK(write_full(fd, req, sizeof req) == sizeof req, "short request");
    ssize_t n = read_full(fd, reply, sizeof reply);
    CHECK(n == REPLY, "short reply: %zd bytes", n);
    for (int i = 0; i < REPLY; i++)
        CHECK(reply[i] == tag, "short reply byte %d", i);
    close(fd);
}

/* A long connection (several exchanges): whether it switched. */
static int long_one(const struct sockaddr_storage *addr, socklen_t len, int optin)
{
    int fd = connect_to(addr, len, optin);
    CHECK(write_full(fd, "L", 1) == 1, "long request");
    client_echo_rounds(fd, 8, "long connection");
    int fast = loopfast_fd_is_fast(fd);
    close(fd);
    return fast;
}

static void run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t srv = fork_serving(optin, &addr, &len, serve);
    const char *mode = optin ? "loopfast" : "kernel";
    for (char t = 'a'; t < 'a' + SHORTS; t++)
        short_one(&addr, len, optin, t);
    int first = long_one(&addr, len, optin);
    int tries = 1;
    while (optin && !long_one(&addr, len, optin) && tries < 20)
        tries++;
    int after = long_one(&addr, len, optin);
    printf("%s: after %d short connections a long one fast %d; the probe on try %d; the next %d\n",
           mode, SHORTS, first, tries, after);
    if (optin) {
        CHECK(first == 0, "a long connection after %d short ones offered (fast)", SHORTS);
        CHECK(tries <= 16, "no probe in 16 connections");
        CHECK(after == 1, "the connection after a probe that switched did not offer");
    }
    sleep_ms(1100);   /* the probe's switch no longer counts */
    for (char t = 'A'; t < 'A' + SHORTS; t++)
        short_one(&addr, len, optin, t);
    sleep_ms(150);
    CHECK(long_one(&addr, len, optin) == optin, "%s: a long connection after a pause", mode);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
}

int main(void)
{
    alarm(60);
    run(0);
    run(1);
    return 0;
}
