/* An inetd whose client uploads at once (tcpserver or socat EXEC running
 * sha256sum, fed by `nc -N < file`): the client's writes switched to the
 * ring after its first 64 KiB, or its shutdown went there, before the inetd
 * had put the connection on its service's stdin; the service reads with
 * stdio (fread: libc's internal read(), which no interposition sees), so
 * it waited on TCP for ever (a helper's sweep: 50 MB 5 runs in 5, 1 KB 2-5
 * in 10).  A client that has read nothing now takes the answer only once
 * the server's program read or wrote the connection through us.  Each upload (1 KiB, then 32 MiB) both ways,
 * to a stdio reader and to a read() one: the same reply, and with loopfast
 * the stdio service's connection on TCP, the read() one's fast once the
 * service reads (the client asks again as it writes). */
#include <sys/time.h>

#include "helpers.h"

/* The exec'd service: the bytes on stdin, counted and hashed, then its
 * answer on stdout. */
static int serve(int with_stdio)
{
    static char buf[65536];
    uint64_t h = 14695981039346656037ull, total = 0;
    size_t n;
    ssize_t r;
    if (with_stdio)
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
            h = fnv(h, buf, n), total += n;
    else
        while ((r = read(0, buf, sizeof buf)) > 0)
            h = fnv(h, buf, (size_t)r), total += (uint64_t)r;
    printf("%llu bytes, %016llx\n", (unsigned long long)total, (unsigned long long)h);
    return 0;
}

/* The inetd: accepts, lets the client run ahead, then puts the connection
 * on a child's stdin and stdout and execs the service there. */
static pid_t inetd(const char *self, int optin, const char *mode, struct sockaddr_storage *addr,
                   socklen_t *len)
{
    int l;
    pid_t pid = fork_with_listener(optin, addr, len, &l);
    if (pid)
        return pid;
    int c = accept(l, NULL, NULL);
    if (c < 0)
        _exit(2);
    sleep_ms(100);
    exec_on_stdio(c, l, self, mode);
    return -1;
}

static void upload(const char *self, int optin, const char *mode, size_t size, char *reply,
                   size_t room, int *fast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = inetd(self, optin, mode, &addr, &len);
    int fd = connect_to(&addr, len, optin);
    struct timeval tv = { 5, 0 };
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    static char data[1 << 16];
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof data ? size - done : sizeof data;
        for (size_t i = 0; i < n; i++)
            data[i] = (char)((done + i) * 7 / 5);
        CHECK(write_full(fd, data, n) == (ssize_t)n, "write: %s", strerror(errno));
        done += n;
    }
    *fast = loopfast_fd_is_fast(fd);
    CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
    ssize_t r = read_full(fd, reply, room - 1);
    CHECK(r > 0, "%s, %s, %zu bytes: no reply (%s)", optin ? "loopfast" : "kernel", mode, size,
          r < 0 ? strerror(errno) : "EOF");
    reply[r] = 0;
    close(fd);
    CHECK(child_status(pid) == 0, "the service failed");
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "serve-stdio"))
        return serve(1);
    if (argc > 1 && !strcmp(argv[1], "serve-read"))
        return serve(0);
    alarm(60);
    char self[4096];
    self_exe(self, sizeof self);
    static const char *const modes[] = { "serve-stdio", "serve-read" };
    static const size_t sizes[] = { 1024, 32 << 20 };
    for (int m = 0; m < 2; m++)
        for (int z = 0; z < 2; z++) {
            char kernel[128], fast[128];
            int kfast, ffast;
            upload(self, 0, modes[m], sizes[z], kernel, sizeof kernel, &kfast);
            upload(self, 1, modes[m], sizes[z], fast, sizeof fast, &ffast);
            printf("%s, %zu bytes: kernel \"%.*s\", loopfast \"%.*s\" (%s)\n", modes[m], sizes[z],
                   (int)strcspn(kernel, "\n"), kernel, (int)strcspn(fast, "\n"), fast,
                   ffast ? "fast" : "TCP");
            CHECK(!strcmp(kernel, fast), "%s, %zu bytes: the replies differ", modes[m], sizes[z]);
            CHECK(m == 1 || !ffast, "%s: the client switched before the service could read",
                  modes[m]);
            /* read() consents; 32 MiB outlast the kernel's buffers */
            CHECK(m == 0 || z == 0 || ffast, "%s: the client never switched", modes[m]);
        }
    return 0;
}
