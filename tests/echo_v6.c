/* Two processes, both opted in, IPv6 ::1: 8 MB echoed in random chunks arrive
 * intact, and both ends report the fast path. */
#include "echo_checksum.h"

int main(void)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof a) < 0)
        SKIP("no IPv6 loopback here");
    close(probe);
    echo_test(AF_INET6, 1, 1, 1);
    return 0;
}
