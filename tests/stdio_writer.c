/* A server that writes part of its answer with stdio (printf to a socket on
 * stdout, or fprintf to one it gave fdopen()) and part with write(), as
 * git's upload-pack sends its refs.  stdio writes with libc's internal
 * write(), which no interposition sees: its bytes went to TCP uncounted (or
 * after the switch, behind the ring's), and the client, told to read TCP
 * only up to the count, found more and reset the connection (git clone:
 * "read error: Connection reset by peer").  Such a socket's writes stay on
 * TCP; the client must read every byte in order, and its own writes still
 * go fast.  The same for a client writing with stdio, and a server reading
 * with fgets().  Over kernel TCP and with both ends fast. */
#include "helpers.h"

static const char *expect = "[stdio one][write one][stdio two][write two]";

/* The server's end; `how`: "stdout" (the socket is fd 1) or "fdopen". */
static void server(int l, const char *how)
{
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    FILE *f;
    int wfd = c;
    if (!strcmp(how, "stdout")) {
        if (dup2(c, 1) != 1)
            _exit(3);
        f = stdout;
        wfd = 1;
    } else if (!(f = fdopen(dup(c), "w"))) {
        _exit(3);
    }
    char b[8];
    if (read_full(c, b, 1) != 1)   /* the client's first byte, on TCP */
        _exit(4);
    fputs("[stdio one]", f);
    fflush(f);
    if (write_full(wfd, "[write one]", 11) != 11 || read_full(c, b, 1) != 1)
        _exit(5);
    fputs("[stdio two]", f);   /* once the client reads rings: before the server's switch */
    fflush(f);
    if (read_full(c, b, 1) != 1 || write_full(wfd, "[write two]", 11) != 11)
        _exit(6);
    int fast = loopfast_fd_is_fast(c);
    if (read_full(c, b, 1) != 0)   /* the client's end */
        _exit(7);
    _exit(20 + fast);
}

static void run(const char *how, int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0)
        server(l, how);
    int fd = connect_to(&addr, len, optin);
    struct timeval tv = { 5, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    char got[128] = "";
    size_t want = strlen(expect), n = 0;
    CHECK(write_full(fd, "a", 1) == 1, "first byte");
    CHECK(read_full(fd, got, 22) == 22, "%s: the first answers (%s)", how, strerror(errno));
    n = 22;
    CHECK(write_full(fd, "b", 1) == 1, "second byte");   /* on the ring once fast */
    usleep(50000);   /* the server's stdio bytes are on their way before its switch */
    CHECK(write_full(fd, "c", 1) == 1, "third byte");
    ssize_t r = read_full(fd, got + n, want - n);
    CHECK(r == (ssize_t)(want - n), "%s %s: read %zd of the last %zu bytes (%s), had '%s'", how,
          optin ? "loopfast" : "kernel", r, want - n, strerror(errno), got);
    got[want] = 0;
    int fast = loopfast_fd_is_fast(fd);
    shutdown(fd, SHUT_WR);
    int st = child_status(pid);
    fprintf(stderr, "%s %s: read '%s', server exit %d, client fast %d\n", how,
            optin ? "loopfast" : "kernel", got, st, fast);
    CHECK(!strcmp(got, expect), "%s %s: the client read '%s'", how, optin ? "loopfast" : "kernel", got);
    CHECK(st == 20 + optin && fast == optin, "%s %s: server exit %d, client fast %d", how,
          optin ? "loopfast" : "kernel", st, fast);
    close(fd);
}

/* The client writes with stdio too, after taking its answer (with its first
 * read); the server reads everything, in order. */
static const char *client_expect = "[c stdio one][c write one][c stdio two][c write two]";

static void reading_server(int l)
{
    int c = accept(l, NULL, NULL);
    char got[128];
    size_t n = 0;
    ssize_t r;
    if (c < 0 || write_full(c, "x", 1) != 1)   /* a first exchange: the client may switch */
        _exit(3);
    while ( n < sizeof got - 1 && (r = read(c, got + n, sizeof got - 1 - n)) > 0)
        n += (size_t)r;
    got[n] = 0;
    _exit(strcmp(got, client_expect) == 0 ? 0 : 2);
}

static void run_client_stdio(int optin)
{
    pid_t pid;
    int fd = connect_to_forked(optin, reading_server, &pid);
    FILE *f = fdopen(dup(fd), "w");
    CHECK(f, "fdopen");
    char x;
    CHECK(read_full(fd, &x, 1) == 1, "first byte");   /* the answer is taken about now */
    fputs("[c stdio one]", f);
    CHECK(fflush(f) == 0, "client stdio %s: fflush: %s", optin ? "loopfast" : "kernel", strerror(errno));
    CHECK(write_full(fd, "[c write one]", 13) == 13, "write one");
    usleep(20000);
    fputs("[c stdio two]", f);
    fflush(f);
    CHECK(write_full(fd, "[c write two]", 13) == 13, "write two");
    fclose(f);
    close(fd);
    int st = child_status(pid);
    fprintf(stderr, "client stdio %s: server exit %d\n", optin ? "loopfast" : "kernel", st);
    CHECK(st == 0, "client stdio %s: the server read something else", optin ? "loopfast" : "kernel");
}

/* A server that reads its socket with stdio (fgets on an fdopen'd socket):
 * libc's internal read() passes us by, so a connection not switched when
 * fdopen() comes stays on TCP (before, the client's lines after its switch
 * went to the ring and fgets waited for ever). */
static void fgets_server(int l)
{
    int c = accept(l, NULL, NULL);
    FILE *f = c >= 0 ? fdopen(c, "r+") : NULL;
    char line[64], all[256] = "";
    if (!f || write_full(c, "hi", 2) != 2)   /* a greeting: the client takes its answer */
        _exit(3);
    alarm(5);   /* a hang is a failure */
    for (int i = 0; f && i < 3 && fgets(line, sizeof line, f); i++)
        strncat(all, line, sizeof all - strlen(all) - 1);
    _exit(f && !strcmp(all, "one\ntwo\nthree\n") && write_full(c, "ok", 2) == 2 ? 0 : 2);
}

static void run_fgets(int optin)
{
    pid_t pid;
    int fd = connect_to_forked(optin, fgets_server, &pid);
    char hi[2];
    CHECK(read_full(fd, hi, 2) == 2, "greeting");   /* the server has its FILE by then */
    static const char *lines[] = { "one\n", "two\n", "three\n" };
    for (int i = 0; i < 3; i++) {
        CHECK(write_full(fd, lines[i], strlen(lines[i])) == (ssize_t)strlen(lines[i]), "line %d", i);
        usleep(20000);
    }
    char ok[2];
    ssize_t r = read_full(fd, ok, 2);
    int st = child_status(pid);
    fprintf(stderr, "fgets server %s: exit %d, answer %zd bytes\n", optin ? "loopfast" : "kernel", st, r);
    CHECK(st == 0 && r == 2, "fgets server %s: exit %d (alarm: it waited for ever)",
          optin ? "loopfast" : "kernel", st);
    close(fd);
}

int main(void)
{
    alarm(30);
    signal(SIGPIPE, SIG_IGN);   /* a reset is a failed check, not a death */
    for (int optin = 0; optin < 2; optin++) {
        run("stdout", optin);
        run("fdopen", optin);
        run_client_stdio(optin);
        run_fgets(optin);
    }
    return 0;
}
