/* A short connection's close sets the region aside, and the next connect
 * takes it (docs/design.md, 4.3).  A client whose first connection is one
 * exchange (connect, request, reply, close) never takes its answer; it
 * used to take the region the answer carries in that close, about 25
 * system calls that a one-shot client (a CLI run once) paid for nothing.
 * Now the close keeps only the answer's connection: after it the client
 * holds no region.  A child forked then connects on its own; the parent's
 * next connect must take what was set aside, that connection go
 * fast, and the one after be asked for in the region (no offer of its own:
 * no "loopfast-offer-INODE" name bound for its socket) and go fast too. */
#include <sys/stat.h>

#include "helpers.h"

/* Whether an abstract unix name "@loopfast-offer-<ino>" is bound. */
static int offer_bound(ino_t ino)
{
    char want[64], line[512];
    snprintf(want, sizeof want, "@loopfast-offer-%llu", (unsigned long long)ino);
    FILE *f = fopen("/proc/net/unix", "r");
    CHECK(f, "/proc/net/unix: %s", strerror(errno));
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *name = strrchr(line, ' ');
        found = name && strncmp(name + 1, want, strlen(want)) == 0 &&
                (name[1 + strlen(want)] == '\n' || name[1 + strlen(want)] == 0);
    }
    fclose(f);
    return found;
}

/* Echoes each connection it accepts until its end of stream, one at a
 * time, on a listener it makes itself (after the fork: it then accepts
 * alone, and later connections may be asked for in the region); its
 * address comes back in *addr. */
static pid_t fork_serial_echo(struct sockaddr_storage *addr, socklen_t *len)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        alarm(60);
        int l = listen_on(AF_INET, 1, addr, len);
        if (l < 0 || write(p[1], addr, sizeof *addr) != sizeof *addr ||
            write(p[1], len, sizeof *len) != sizeof *len)
            _exit(2);
        for (;;) {
            int c = accept(l, NULL, NULL);
            if (c < 0)
                _exit(2);
            echo_until_eof(c);
            close(c);
        }
    }
    close(p[1]);
    CHECK(read_full(p[0], addr, sizeof *addr) == sizeof *addr &&
          read_full(p[0], len, sizeof *len) == sizeof *len, "the server's address");
    close(p[0]);
    return pid;
}

int main(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t server = fork_serial_echo(&addr, &len);
    char b = 'x';

    int c = connect_to(&addr, len, 1);
    CHECK(c >= 0, "connect");
    CHECK(write_full(c, &b, 1) == 1 && read_full(c, &b, 1) == 1, "the one exchange");
    /* (not asked whether it is fast: asking takes the answer) */
    close(c);
    int held = loopfast_regions(getpid(), NULL);
    printf("after a one-exchange connection's close: %d regions held\n", held);
    CHECK(held == 0, "the close took the region (%d held)", held);

    /* A child forked now closes its copy of what was set aside: its own
     * connections offer and go fast, and the parent's is still there. */
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        alarm(20);
        int k = connect_to(&addr, len, 1);
        for (int i = 0; i < 3; i++)
            if (k < 0 || write_full(k, &b, 1) != 1 || read_full(k, &b, 1) != 1)
                _exit(2);
        _exit(loopfast_fd_is_fast(k) == 1 ? 0 : 3);
    }
    CHECK(child_status(child) == 0, "a forked child's connection failed or stayed plain");

    c = connect_to(&addr, len, 1);
    CHECK(c >= 0, "connect again");
    held = loopfast_regions(getpid(), NULL);
    printf("the next connect: %d regions held\n", held);
    CHECK(held == 1, "the next connect did not take the region set aside");
    for (int i = 0; i < 3; i++)
        CHECK(write_full(c, &b, 1) == 1 && read_full(c, &b, 1) == 1, "exchange %d", i);
    CHECK(loopfast_fd_is_fast(c) == 1, "the next connection did not switch");
    close(c);

    c = connect_to(&addr, len, 1);
    CHECK(c >= 0, "connect a third time");
    struct stat st;
    CHECK(fstat(c, &st) == 0, "fstat");
    int offered = offer_bound(st.st_ino);
    printf("the third connection: %s\n", offered ? "offered anew" : "asked for in the region");
    CHECK(!offered, "the third connection was not asked for in the region");
    for (int i = 0; i < 3; i++)
        CHECK(write_full(c, &b, 1) == 1 && read_full(c, &b, 1) == 1, "exchange %d", i);
    CHECK(loopfast_fd_is_fast(c) == 1, "the third connection did not switch");
    close(c);
    kill(server, SIGTERM);
    child_status(server);
    return 0;
}
