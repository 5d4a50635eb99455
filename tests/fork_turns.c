/* Two processes take turns on one fast connection (after fork): each keeps
 * its own record of the peer's ring index, which the other's traffic leaves
 * far behind (more than a ring's length).  Such an old record must be
 * refreshed, not taken for corruption: every turn's bytes come back intact. */
#include <sys/wait.h>

#include "helpers.h"

#define CHUNK (64 * 1024)
#define ROUNDS 48   /* 48 x 64 KiB each way: 3 rings' worth at the default size */

/* Sends ROUNDS chunks through the echo server and checks what comes back. */
static int turn(int fd, int seed)
{
    static unsigned char out[CHUNK], back[CHUNK];
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < CHUNK; i++)
            out[i] = (unsigned char)(seed * 17 + r * 5 + i * 3);
        if (write_full(fd, out, CHUNK) != CHUNK || read_full(fd, back, CHUNK) != CHUNK ||
            memcmp(out, back, CHUNK))
            return -1;
    }
    return 0;
}

int main(void)
{
    alarm(60);
    pid_t server;
    int fd = echo_connection(1, &server);
    CHECK(turn(fd, 1) == 0, "first turn, parent");
    CHECK(loopfast_fd_is_fast(fd) == 1, "not fast");
    for (int k = 0; k < 3; k++) {
        pid_t child = fork();
        CHECK(child >= 0, "fork");
        if (child == 0)
            _exit(turn(fd, 10 + k) == 0 ? 0 : 1);
        CHECK(child_status(child) == 0, "turn %d in the child: bytes lost or connection broken", k);
        CHECK(turn(fd, 20 + k) == 0, "turn %d in the parent after the child's", k);
    }
    close(fd);
    CHECK(child_status(server) == 11, "echo server");
    return 0;
}
