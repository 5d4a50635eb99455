/* When only one end (or neither) opts in, the connection is plain TCP: the
 * bytes arrive intact and neither end reports the fast path. */
#include "echo_checksum.h"

int main(void)
{
    echo_test(AF_INET, 1, 0, 0);
    echo_test(AF_INET, 0, 1, 0);
    echo_test(AF_INET, 0, 0, 0);
    return 0;
}
