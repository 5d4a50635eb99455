/* Fork before the server accepts, and both processes write: the server gets
 * every record of both writers intact, each writer's records in its order,
 * then EOF; its reply reaches the client.  Each record is one write() of
 * RECORD bytes, and the client's send buffer holds everything, so kernel
 * TCP never splits a record either.  Runs over kernel TCP and opted in. */
#include "helpers.h"

#define RECORD 256
#define RECORDS 300   /* per writer */

static void make_record(unsigned char *r, int id, uint32_t seq)
{
    r[0] = (unsigned char)id;
    memcpy(r + 1, &seq, sizeof seq);
    for (int i = 5; i < RECORD; i++)
        r[i] = (unsigned char)(id * 31 + seq * 7 + (uint32_t)i);
}

/* Checks the stream; replies "ok" or "no" and exits. */
static void server(int listener, int go_fd)
{
    char b;
    if (read(go_fd, &b, 1) != 1)
        _exit(2);
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        _exit(3);
    uint32_t next[2] = { 0, 0 };
    unsigned char rec[RECORD], want[RECORD];
    int bad = 0;
    ssize_t n;
    while ((n = read_full(c, rec, RECORD)) == RECORD) {
        uint32_t seq;
        memcpy(&seq, rec + 1, sizeof seq);
        int id = rec[0];
        if (id > 1 || seq != next[id]) {
            bad = 1;
            break;
        }
        make_record(want, id, seq);
        if (memcmp(rec, want, RECORD)) {
            bad = 1;
            break;
        }
        next[id]++;
    }
    if (n != 0 || next[0] != RECORDS || next[1] != RECORDS)
        bad = 1;
    if (bad)
        fprintf(stderr, "server: read %zd, records %u and %u of %d\n", n, next[0], next[1], RECORDS);
    if (write_full(c, bad ? "no" : "ok", 2) != 2)
        _exit(4);
    close(c);
    _exit(bad);
}

static int write_records(int fd, int id)
{
    unsigned char r[RECORD];
    for (uint32_t seq = 0; seq < RECORDS; seq++) {
        make_record(r, id, seq);
        if (write(fd, r, RECORD) != RECORD)
            return 1;
    }
    return 0;
}

static void one_case(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t srv = fork();
    CHECK(srv >= 0, "fork");
    if (srv == 0) {
        alarm(25);
        server(l, go[0]);
    }
    close(l);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int big = 1 << 20;
    CHECK(fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big) == 0, "socket");
    if (optin)
        CHECK(opt_in(fd) == 0, "opt in");
    CHECK(connect(fd, (struct sockaddr *)&addr, len) == 0, "connect: %s", strerror(errno));
    CHECK(write(fd, "", 0) == 0, "empty write");   /* a call while pending */
    pid_t kid = fork();
    CHECK(kid >= 0, "fork");
    if (kid == 0) {
        alarm(25);
        _exit(write_records(fd, 1));
    }
    CHECK(write(go[1], "g", 1) == 1, "go");
    CHECK(write_records(fd, 0) == 0, "parent writes: %s", strerror(errno));
    CHECK(child_status(kid) == 0, "child writes");
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    char reply[2];
    CHECK(read_full(fd, reply, 2) == 2 && !memcmp(reply, "ok", 2), "%s: server's reply",
          optin ? "loopfast" : "kernel");
    CHECK(child_status(srv) == 0, "%s: server", optin ? "loopfast" : "kernel");
    close(fd);
    close(go[0]);
    close(go[1]);
}

int main(void)
{
    alarm(28);
    signal(SIGPIPE, SIG_IGN);
    for (int round = 0; round < 5; round++)
        for (int optin = 0; optin <= 1; optin++)
            one_case(optin);
    return 0;
}
