/* An inetd that execs its service onto an accepted connection, when the
 * service cannot load loopfast (a static binary, a Go program; here /bin/sh
 * without the library) and writes first (a banner).  The client, having
 * read the banner, took the server's answer at its next write and wrote to
 * a ring nobody read: it waited for ever where kernel TCP echoes.  Two
 * shapes: tcpserver closes its stdin so that each connection lands on
 * descriptor 0 (accept() returns 0), copies it to 1 with fcntl(F_DUPFD) and
 * execs (a static echo under it hung 3 runs in 3); systemd-socket-activate
 * --accept puts it on descriptor 3.  A client now takes the answer only
 * once the server's program read or wrote the connection through loopfast,
 * and an answer to a connection accept() put on stdin is held from the
 * start.  Both ways: the banner-then-cat shell stays on TCP, and a service
 * that reads with read() through loopfast (exec'd onto stdin) switches. */
#include <fcntl.h>
#include <sys/time.h>

#include "helpers.h"

#define ROUNDS 5
#define PIECE 3000

enum shape { STDIN_SH, STDIN_READ, FD3_SH, SHAPES };
static const char *const shape_name[SHAPES] = { "stdin, sh", "stdin, read()", "fd 3, sh" };

/* The service that reads through us: the banner, then an echo. */
static int serve_read(void)
{
    static char buf[65536];
    ssize_t n;
    if (write_full(1, "220 hello\n", 10) != 10)
        return 2;
    while ((n = read(0, buf, sizeof buf)) > 0)
        if (write_full(1, buf, (size_t)n) != n)
            return 3;
    return n == 0 ? 0 : 4;
}

/* The inetd's child: the connection where the shape puts it, then the
 * service. */
static void inetd(int l, const char *self, enum shape shape)
{
    if (shape == FD3_SH) {
        int c = accept(l, NULL, NULL);
        close(l);   /* first: it may be 3 */
        if (c < 0 || (c != 3 && (dup2(c, 3) != 3 || close(c) != 0)))
            _exit(2);
    } else {
        close(0);   /* as tcpserver: accept() gives 0 */
        if (accept(l, NULL, NULL) != 0 || close(1) != 0 || fcntl(0, F_DUPFD, 1) != 1)
            _exit(2);
        close(l);
    }
    /* the shell: an image without loopfast.  An empty LD_PRELOAD, which
     * loopfast leaves as it is (it adds its own to an environment with
     * none: tests/exec_scrubbed_env.c) */
    setenv("LD_PRELOAD", "", 1);
    if (shape == STDIN_SH)
        execl("/bin/sh", "sh", "-c", "echo 220 hello; exec cat", (char *)NULL);
    else if (shape == FD3_SH)
        execl("/bin/sh", "sh", "-c", "echo 220 hello >&3; exec cat <&3 >&3", (char *)NULL);
    else
        execl(self, self, "serve-read", (char *)NULL);
    _exit(4);
}

/* The banner, ROUNDS echoes, then the EOF: what the client saw, in out. */
static void client(const char *self, int optin, enum shape shape, char *out, size_t room,
                   int *fast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0) {
        alarm(30);
        inetd(l, self, shape);
    }
    int fd = connect_to(&addr, len, optin);
    struct timeval tv = { 5, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    char banner[11] = { 0 }, piece[PIECE], back[PIECE];
    ssize_t r = read_full(fd, banner, 10);
    int rounds = 0;
    for (; r == 10 && rounds < ROUNDS; rounds++) {
        memset(piece, 'a' + rounds, sizeof piece);
        if (write_full(fd, piece, sizeof piece) != PIECE ||
            read_full(fd, back, sizeof back) != PIECE || memcmp(piece, back, PIECE))
            break;
    }
    *fast = loopfast_fd_is_fast(fd);
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    char b;
    ssize_t end = rounds == ROUNDS ? read(fd, &b, 1) : -1;
    snprintf(out, room, "banner \"%.*s\", %d of %d echoes, %s", (int)strcspn(banner, "\n"), banner,
             rounds, ROUNDS, end == 0 ? "EOF" : "no EOF");
    close(fd);
    if (rounds < ROUNDS)
        kill(pid, SIGKILL);
    int status = child_status(pid);
    CHECK(rounds < ROUNDS || status == 0, "%s: the service exited %d",
          optin ? "loopfast" : "kernel", status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "serve-read"))
        return serve_read();
    alarm(60);
    char self[4096];
    self_exe(self, sizeof self);
    for (int m = 0; m < SHAPES; m++) {
        char kernel[128], fast[128];
        int kfast, ffast;
        client(self, 0, m, kernel, sizeof kernel, &kfast);
        client(self, 1, m, fast, sizeof fast, &ffast);
        printf("%s: kernel: %s; loopfast: %s (%s)\n", shape_name[m], kernel, fast,
               ffast ? "fast" : "TCP");
        CHECK(!strcmp(kernel, fast), "%s: loopfast differs from the kernel", shape_name[m]);
        CHECK(m == STDIN_READ || !ffast, "%s: the client switched to a ring nobody reads",
              shape_name[m]);
        CHECK(m != STDIN_READ || ffast, "%s: the client never switched", shape_name[m]);
    }
    return 0;
}
