/* Two processes, both opted in, IPv4: 8 MB echoed in random chunks arrive
 * intact, and both ends report the fast path. */
#include "echo_checksum.h"

int main(void)
{
    echo_test(AF_INET, 1, 1, 1);
    return 0;
}
