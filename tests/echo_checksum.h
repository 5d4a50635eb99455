/*
 * echo_checksum.h - the two-process echo with random chunk sizes, shared by
 * the IPv4 and IPv6 tests.  Returns the server's exit status.
 */
#ifndef LOOPFAST_TEST_ECHO_H
#define LOOPFAST_TEST_ECHO_H

#include "helpers.h"

/* Client side: sends `total` bytes in random chunks while reading the echo
 * back, checks both checksums; returns whether the client end was fast. */
static inline int echo_stream(int fd, size_t total, unsigned seed)
{
    static unsigned char out[1 << 18], in[1 << 18];
    uint64_t sent_sum = FNV_INIT, recv_sum = FNV_INIT;
    size_t sent = 0, got = 0;
    int fast = -1;
    srand(seed);
    while (got < total) {
        if (sent < total) {
            size_t n = 1 + (size_t)rand() % (sizeof out);
            if (n > total - sent)
                n = total - sent;
            for (size_t i = 0; i < n; i++)
                out[i] = (unsigned char)rand();
            CHECK(write_full(fd, out, n) == (ssize_t)n, "write: %s", strerror(errno));
            sent_sum = fnv(sent_sum, out, n);
            sent += n;
        }
        /* read back at least what keeps the pipe from filling */
        while (got < total && (sent - got > (1 << 17) || sent == total)) {
            ssize_t r = read(fd, in, sizeof in);
            CHECK(r > 0, "read: %zd %s", r, strerror(errno));
            recv_sum = fnv(recv_sum, in, (size_t)r);
            got += (size_t)r;
        }
        if (fast < 0 && got > 0)
            fast = loopfast_fd_is_fast(fd);
    }
    CHECK(sent_sum == recv_sum, "checksum mismatch: sent %llx received %llx",
          (unsigned long long)sent_sum, (unsigned long long)recv_sum);
    return fast;
}

static inline void echo_test(int family, int server_optin, int client_optin, int expect_fast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    alarm(60);
    int l = listen_on(family, server_optin, &addr, &len);
    pid_t pid = fork_echo_server(l);
    close(l);
    int fd = connect_to(&addr, len, client_optin);
    int fast = echo_stream(fd, 8u << 20, 1234);
    CHECK(fast == expect_fast, "client loopfast_fd_is_fast=%d, expected %d", fast, expect_fast);
    close(fd);
    int st = child_status(pid);
    CHECK(st == 10 + expect_fast, "server exit %d (10 + its is_fast expected %d)", st, expect_fast);
}

#endif
