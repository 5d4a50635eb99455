/* Processes: after fork both copies work, a parent that hands the socket to
 * its child and closes its copy keeps the connection open, and a fast
 * socket inherited across exec keeps working in the new image. */
#include "helpers.h"

static void serve_in_child(int fd, const char *self)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", fd);
        execl(self, self, "exec-child", arg, (char *)NULL);
        _exit(99);
    }
}

int main(int argc, char **argv)
{
    char buf[16];
    if (argc == 3 && !strcmp(argv[1], "exec-child")) {
        int fd = atoi(argv[2]);
        if (loopfast_fd_is_fast(fd) != 1)
            return 3;
        if (read_full(fd, buf, 4) != 4 || memcmp(buf, "ping", 4) || write_full(fd, "pong", 4) != 4)
            return 4;
        return 0;
    }
    alarm(20);
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    /* the common server pattern: the child serves, the parent closes */
    pid_t pid = fork();
    if (pid == 0) {
        char b[4];
        if (read_full(s, b, 4) != 4 || write_full(s, "ok!!", 4) != 4)
            _exit(1);
        usleep(100000);
        if (write_full(s, "late", 4) != 4)
            _exit(2);
        _exit(0);
    }
    close(s);
    CHECK(write_full(c, "hey!", 4) == 4 && read_full(c, buf, 4) == 4 && !memcmp(buf, "ok!!", 4),
          "child served after the parent closed its copy");
    CHECK(read_full(c, buf, 4) == 4 && !memcmp(buf, "late", 4), "no early EOF while the child holds it");
    CHECK(child_status(pid) == 0, "child");
    CHECK(read(c, buf, 1) == 0, "EOF once the child closed it too");
    close(c);

    /* exec: the new image picks the connection up again */
    fast_pair(AF_INET, 1, &c, &s);
    serve_in_child(s, argv[0]);
    close(s);
    CHECK(write_full(c, "ping", 4) == 4, "write to exec'd child");
    CHECK(read_full(c, buf, 4) == 4 && !memcmp(buf, "pong", 4), "reply from exec'd child");
    int st;
    wait(&st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec'd child status %d", WEXITSTATUS(st));
    CHECK(read(c, buf, 1) == 0, "EOF after the exec'd child exits");
    return 0;
}
