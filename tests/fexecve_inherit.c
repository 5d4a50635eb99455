/* fexecve() and execveat() onto a fast connection (a server that execs a
 * handler by descriptor, an inetd shape): glibc calls the kernel itself,
 * past execve, so the new image got no description of the connection and
 * saw a plain socket whose peer writes to the ring.  Each new image echoes
 * until end of stream; run both ways, bytes and the fast path checked. */
#include <fcntl.h>

#include "helpers.h"

#define ROUNDS 20

static void run(int optin, int how)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0) {
        int c = accept(l, NULL, NULL);
        char num[16];
        server_switch(c);
        snprintf(num, sizeof num, "%d", c);
        char *argv[] = { "fexecve_inherit", "serve", num, NULL };
        int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (how == 0)
            fexecve(exe, argv, environ);
        else
            execveat(exe, "", argv, environ, AT_EMPTY_PATH);
        _exit(3);
    }
    int fd = connect_to(&addr, len, optin);
    client_switch(fd);
    char what[64];
    snprintf(what, sizeof what, "%s, after %s", optin ? "loopfast" : "kernel",
             how ? "execveat" : "fexecve");
    client_echo_rounds(fd, ROUNDS, what);
    int fast = loopfast_fd_is_fast(fd);
    close(fd);
    int st = child_status(pid);
    CHECK(st == 10 + optin && fast == optin, "%s, %s: server %d, client fast %d",
          optin ? "loopfast" : "kernel", how ? "execveat" : "fexecve", st, fast);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "serve"))
        return echo_until_eof(atoi(argv[2]));
    alarm(20);
    for (int how = 0; how < 2; how++) {
        run(0, how);
        run(1, how);
    }
    return 0;
}
