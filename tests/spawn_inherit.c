/* posix_spawn() (glibc's runs no fork or exec hook) with a connected socket
 * put on the child's stdin and stdout by file actions, the parent closing its
 * copy: the spawned program reads the request and answers; the client sees
 * the answer and then EOF when the program exits.  posix_spawn and
 * posix_spawnp, over kernel TCP and with both ends opted in. */
#include <spawn.h>

#include "helpers.h"

extern char **environ;

static int program(void)
{
    char b[4];
    if (read_full(0, b, 4) != 4 || memcmp(b, "ping", 4))
        return 2;
    return write_full(1, "pong", 4) == 4 ? 0 : 3;
}

static void one_case(int optin, int use_path_search, const char *self)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    posix_spawn_file_actions_t fa;
    CHECK(posix_spawn_file_actions_init(&fa) == 0, "file actions");
    posix_spawn_file_actions_adddup2(&fa, s, 0);
    posix_spawn_file_actions_adddup2(&fa, s, 1);
    posix_spawn_file_actions_addclose(&fa, s);
    char *argv[] = { (char *)self, "program", NULL };
    pid_t pid;
    int r = use_path_search ? posix_spawnp(&pid, self, &fa, NULL, argv, environ)
                            : posix_spawn(&pid, self, &fa, NULL, argv, environ);
    CHECK(r == 0, "posix_spawn: %s", strerror(r));
    posix_spawn_file_actions_destroy(&fa);
    close(s);
    char b[4];
    const char *shape = optin ? "loopfast" : "kernel";
    /* the program asleep in read() first: it must sleep on its own side's
     * doorbell, though this process, holding both ends, passed it the
     * client's region too (both in one region: two sides, two links) */
    usleep(100000);
    CHECK(write_full(c, "ping", 4) == 4, "%s: write", shape);
    CHECK(read_full(c, b, 4) == 4 && !memcmp(b, "pong", 4), "%s: answer from the spawned program", shape);
    CHECK(child_status(pid) == 0, "%s: program status", shape);
    CHECK(read(c, b, 1) == 0, "%s: EOF once the program exited", shape);
    close(c);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "program"))
        return program();
    alarm(20);
    char self[4096];
    self_exe(self, sizeof self);
    for (int optin = 0; optin <= 1; optin++)
        for (int p = 0; p <= 1; p++)
            one_case(optin, p, self);
    return 0;
}
