/* A listening socket sent to another process with SCM_RIGHTS (node's
 * cluster workers under NODE_CLUSTER_SCHED_POLICY=none, HAProxy's
 * listeners handed to its reloaded self, Python's send_fds), which accepts
 * on it: under LOOPFAST_MODE=all the receiver did not know it for a
 * socket of its own, and every connection it gave stayed plain TCP (a
 * helper's sweep: node cluster, 416 MB over IP where the same server
 * without cluster moved 2 MB).  Now the receiver answers on it.  The
 * worker is forked before the listener exists, so that it holds it only
 * through the message; five 1000-byte echoes, the same bytes with
 * LOOPFAST_MODE=off (the kernel's reference) and =all, fast only in the
 * second.  The program runs itself again under each mode.  Also a socket
 * sent bound but not listening yet, which the worker then listens on:
 * node's primary sends its workers such a socket, and the first worker's
 * listen() makes it a listener for all (its connections stayed plain). */
#include "helpers.h"

#define ROUNDS 5
#define PIECE 1000

static void worker(int u, int bound)
{
    int l = recv_fd(u);
    if (bound && (l < 0 || listen(l, 8) < 0 || write(u, "L", 1) != 1))
        _exit(5);
    int c = l >= 0 ? accept(l, NULL, NULL) : -1;
    if (c < 0)
        _exit(2);
    char b[PIECE];
    for (int i = 0; i < ROUNDS; i++)
        if (read_full(c, b, sizeof b) != PIECE || write_full(c, b, sizeof b) != PIECE)
            _exit(3);
    int fast = loopfast_fd_is_fast(c);
    _exit(write_full(u, &fast, sizeof fast) == sizeof fast ? 0 : 4);
}

/* A TCP socket bound to a loopback port, not listening. */
static int bound_socket(struct sockaddr_storage *addr, socklen_t *len)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    *len = sizeof *addr;
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(s, (struct sockaddr *)addr, len) == 0,
          "bound socket: %s", strerror(errno));
    return s;
}

static int run_in_mode(const char *mode, int bound)
{
    alarm(30);
    int u[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, u) == 0, "socketpair");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(u[0]);
        worker(u[1], bound);
    }
    close(u[1]);
    struct sockaddr_storage addr;
    socklen_t len;
    int l = bound ? bound_socket(&addr, &len) : listen_on(AF_INET, 0, &addr, &len);
    CHECK(send_fd(u[0], l) == 0, "send the listener: %s", strerror(errno));
    close(l);   /* the worker's alone from here */
    char listening;
    if (bound)
        CHECK(read_full(u[0], &listening, 1) == 1, "%s: the worker did not listen", mode);
    int fd = connect_to(&addr, len, 0);
    char piece[PIECE], back[PIECE];
    for (int i = 0; i < ROUNDS; i++) {
        memset(piece, 'a' + i, sizeof piece);
        CHECK(write_full(fd, piece, sizeof piece) == PIECE &&
                  read_full(fd, back, sizeof back) == PIECE && !memcmp(piece, back, PIECE),
              "%s: echo %d", mode, i);
    }
    int server_fast = -1, client_fast = loopfast_fd_is_fast(fd);
    CHECK(read_full(u[0], &server_fast, sizeof server_fast) == sizeof server_fast,
          "%s: the worker's report", mode);
    CHECK(child_status(pid) == 0, "%s: worker", mode);
    printf("LOOPFAST_MODE=%s, %s: %d echoes, client fast %d, server fast %d\n", mode,
           bound ? "sent bound" : "sent listening", ROUNDS, client_fast, server_fast);
    int want = !strcmp(mode, "all");
    CHECK(client_fast == want && server_fast == want, "%s: fast %d/%d, expected %d", mode,
          client_fast, server_fast, want);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "mode"))
        return run_in_mode(argv[2], 0) || run_in_mode(argv[2], 1);
    alarm(60);
    char self[4096];
    self_exe(self, sizeof self);
    static const char *const modes[] = { "off", "all" };
    for (int m = 0; m < 2; m++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            setenv("LOOPFAST_MODE", modes[m], 1);
            execl(self, self, "mode", modes[m], (char *)NULL);
            _exit(127);
        }
        CHECK(child_status(pid) == 0, "LOOPFAST_MODE=%s run failed", modes[m]);
    }
    return 0;
}
