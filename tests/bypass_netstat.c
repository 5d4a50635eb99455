/* Proof from the kernel's own counters that the payload bypassed it: during
 * a 200 MB opted-in stream echoed back, IpExt InOctets grows by less than 5%
 * of the payload.  A plain-TCP control shows the counter does count. */
#include "helpers.h"

static long long moved(int optin, size_t total)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t pid = fork_echo_server(l);
    close(l);
    int fd = connect_to(&addr, len, optin);
    static char buf[1 << 16], back[1 << 16];
    long long before = ip_in_octets();
    size_t sent = 0, got = 0;
    while (got < total) {
        if (sent < total) {
            CHECK(write_full(fd, buf, sizeof buf) == sizeof buf, "write");
            sent += sizeof buf;
        }
        while (got < total && (sent - got > (1 << 17) || sent >= total)) {
            ssize_t n = read(fd, back, sizeof back);
            CHECK(n > 0, "read");
            got += (size_t)n;
        }
    }
    long long after = ip_in_octets();
    if (optin)
        CHECK(loopfast_fd_is_fast(fd) == 1, "not on the fast path");
    close(fd);
    child_status(pid);
    return after - before;
}

int main(void)
{
    alarm(60);
    if (ip_in_octets() < 0)
        SKIP("no IpExt InOctets in /proc/net/netstat");
    long long plain = moved(0, 4u << 20);
    CHECK(plain >= 4 << 20, "control: 4 MB of plain TCP counted only %lld octets", plain);
    size_t total = 200u << 20;
    long long fast = moved(1, total);
    printf("200 MB each way on the fast path: %lld IP octets (%.3f%%)\n", fast, 100.0 * fast / (2.0 * total));
    CHECK(fast < (long long)(total / 20), "%lld IP octets for %zu payload bytes", fast, total);
    return 0;
}
