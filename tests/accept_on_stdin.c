/* An inetd whose accept() returns stdin's number: tcpserver closes its
 * stdin at start, so each connection lands on descriptor 0, and its child
 * copies it to 1 with fcntl(F_DUPFD) and execs the service there.  With a
 * service that cannot load loopfast (a static binary; here /bin/sh without
 * the library) and that writes first (a banner), the client took the
 * answer after reading the banner and wrote its next bytes to a ring
 * nobody reads: it waited for ever where kernel TCP echoes (a static echo
 * service under tcpserver hung 3 runs in 3).  An answer to a connection
 * accepted onto stdin is now held from the start, as for one moved there:
 * the client takes it only once the service reads through loopfast.  Both
 * ways, with the banner-then-cat shell service (which stays on TCP) and
 * with a service that reads with read() through loopfast (which switches). */
#include <fcntl.h>
#include <sys/time.h>

#include "helpers.h"

#define ROUNDS 5
#define PIECE 2000

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

/* The inetd's child: stdin closed before accept(), as tcpserver does. */
static void inetd(int l, const char *self, const char *mode)
{
    close(0);
    int c = accept(l, NULL, NULL);
    if (c != 0)
        _exit(2);
    close(l);
    close(1);
    if (fcntl(0, F_DUPFD, 1) != 1)
        _exit(3);
    if (!strcmp(mode, "sh")) {
        unsetenv("LD_PRELOAD");   /* an image without loopfast */
        execl("/bin/sh", "sh", "-c", "echo 220 hello; exec cat", (char *)NULL);
    } else {
        execl(self, self, "serve-read", (char *)NULL);
    }
    _exit(4);
}

/* One client: the banner, ROUNDS echoes, then its EOF; the result in
 * `out` (what it read, or why it stopped) and whether it ended fast. */
static void client(const char *self, int optin, const char *mode, char *out, size_t room,
                   int *fast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0) {
        alarm(30);
        inetd(l, self, mode);
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
    CHECK(rounds < ROUNDS || status == 0, "%s: the inetd's service exited %d",
          optin ? "loopfast" : "kernel", status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "serve-read"))
        return serve_read();
    alarm(60);
    char self[4096];
    self_exe(self, sizeof self);
    static const char *const modes[] = { "sh", "read" };
    for (int m = 0; m < 2; m++) {
        char kernel[128], fast[128];
        int kfast, ffast;
        client(self, 0, modes[m], kernel, sizeof kernel, &kfast);
        client(self, 1, modes[m], fast, sizeof fast, &ffast);
        printf("%s service: kernel: %s; loopfast: %s (%s)\n", modes[m], kernel, fast,
               ffast ? "fast" : "TCP");
        CHECK(!strcmp(kernel, fast), "%s service: loopfast differs from the kernel", modes[m]);
        CHECK(m == 1 || !ffast, "sh service: the client switched to a ring nobody reads");
        CHECK(m == 0 || ffast, "read service: the client never switched");
    }
    return 0;
}
