/* A process that holds a fast connection and exits without closing it (a
 * forked child's _exit, a spawned shell) gives back its part when the next
 * holder lets go: once the last live holder closes, the connection is
 * gone from `loopfast stat`, as it is from the kernel's table.  Before,
 * such a holder's count and its part of the slot stayed taken until the
 * region went (the slot and its pages leaked, the end never said `closed`). */
#include "helpers.h"

static char cli[4200];

/* How many of this process's connection ends `loopfast stat` lists. */
static int listed(void)
{
    return stat_ends_of(cli, getpid());
}

int main(int argc, char **argv)
{
    (void)argc;
    alarm(20);
    cli_next_to(argv[0], cli, sizeof cli);
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    CHECK(loopfast_fd_is_fast(c) == 1 && listed() == 2, "a fast pair, both ends listed");

    /* the children hold both ends; each _exits with them open */
    for (int i = 0; i < 3; i++) {
        pid_t p = fork();
        CHECK(p >= 0, "fork");
        if (p == 0) {
            char b = 'k';
            _exit(write_full(c, &b, 1) == 1 ? 0 : 1);
        }
        CHECK(child_status(p) == 0, "child %d", i);
        char b;
        CHECK(read_full(s, &b, 1) == 1 && b == 'k', "the child's byte");
    }
    CHECK(system("exit 0") == 0, "a shell that holds them too");
    close(c);
    close(s);
    int left = listed();
    CHECK(left == 0, "%d ends still listed after the last live holder closed", left);
    return 0;
}
