/* sendfile() onto a fast connection copies every byte (the kernel's queues
 * page references), so an event loop that asks for 2 MiB a connection
 * (nginx's sendfile_max_chunk) spent ~1 ms a connection before it looked
 * at its other clients: with 100 busy downloads nginx answered a small
 * request in up to 1.7 s.  A non-blocking socket now takes at most 256 KiB
 * a call (a short count, as the kernel's gives when its buffer is full); a
 * blocking one still sends the whole count.  Both ways: every byte, in
 * order, and the sizes of the calls. */
#include "helpers.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>

#define FILE_SIZE (4u << 20)
#define TURN (256u << 10)

static uint64_t reader_sum(int fd, size_t want)
{
    static char buf[1 << 16];
    uint64_t h = FNV_INIT;
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        h = fnv(h, buf, (size_t)n);
        got += (size_t)n;
    }
    return got == want ? h : 0;
}

static void run(int optin, int nonblock, int file, uint64_t want)
{
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    const char *mode = optin ? "loopfast" : "kernel";
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(s);
        _exit(reader_sum(c, FILE_SIZE) == want ? 0 : 9);
    }
    close(c);
    if (nonblock)
        CHECK(fcntl(s, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    off_t off = 0;
    size_t biggest = 0;
    int calls = 0;
    while ((size_t)off < FILE_SIZE) {
        ssize_t n = sendfile(s, file, &off, FILE_SIZE - (size_t)off);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { s, POLLOUT, 0 };
            CHECK(poll(&p, 1, 5000) == 1, "%s: poll for room", mode);
            continue;
        }
        CHECK(n > 0, "%s: sendfile: %s", mode, strerror(errno));
        biggest = (size_t)n > biggest ? (size_t)n : biggest;
        calls++;
    }
    close(s);
    CHECK(child_status(pid) == 0, "%s: the reader's bytes differ", mode);
    if (!nonblock)
        CHECK(calls == 1, "%s: a blocking sendfile took %d calls", mode, calls);
    if (nonblock && optin)
        CHECK(biggest <= TURN, "%s: a non-blocking sendfile moved %zu bytes in one call", mode,
              biggest);
}

int main(void)
{
    alarm(30);
    int file = temp_file();
    static char block[1 << 16];
    uint64_t want = FNV_INIT;
    for (size_t done = 0; done < FILE_SIZE; done += sizeof block) {
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = (char)((done + i) * 131 >> 7);
        CHECK(write_full(file, block, sizeof block) == sizeof block, "write the file");
        want = fnv(want, block, sizeof block);
    }
    for (int nonblock = 0; nonblock < 2; nonblock++) {
        run(0, nonblock, file, want);
        run(1, nonblock, file, want);
    }
    return 0;
}
