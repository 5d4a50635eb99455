/* A stream keeps few ring pages: a blocking writer paces its bytes within
 * the ring's first 2 MiB (ring.c's places) and its reader must map no page
 * past what the writer wrote.  A read that ended where the writer had
 * started again at the ring's start made a copy of no bytes whose place
 * lay near the ring's end, and the reader mapped (and the kernel zeroed)
 * every page up to there: the whole 8 MiB ring for each stream.  Here a
 * 48 MiB stream of 64 KiB writes and reads; then the reader's loopfast
 * mappings must hold less than 7 MiB (the writer's paced places, or,
 * should the reader stall and the pace end, the capacity after them: about
 * 6.3 MiB at most), its bytes all as written.  Both ways; the kernel's
 * memory is printed for reference. */
#include "helpers.h"

#define TOTAL (48u << 20)
#define PIECE (64u << 10)
#define LIMIT_KB (7 * 1024)

static unsigned char piece_of(uint64_t pos)
{
    return (unsigned char)(pos * 2654435761u >> 13);
}

static void fill(unsigned char *b, uint64_t pos, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = piece_of(pos + i);
}

/* The reader: all TOTAL bytes checked, then its mappings' Rss reported. */
static void read_stream(int c, int report)
{
    static unsigned char b[PIECE], want[PIECE];
    uint64_t pos = 0;
    while (pos < TOTAL) {
        ssize_t n = read(c, b, sizeof b);
        if (n <= 0)
            _exit(2);
        fill(want, pos, (size_t)n);
        if (memcmp(b, want, (size_t)n) != 0)
            _exit(3);
        pos += (uint64_t)n;
    }
    long kb = loopfast_rss_kb(getpid());
    if (write(report, &kb, sizeof kb) != sizeof kb)
        _exit(4);
    char end;
    if (read(c, &end, 1) != 0)   /* the writer's close */
        _exit(5);
    _exit(0);
}

static void run(int optin)
{
    const char *mode = optin ? "loopfast" : "kernel";
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), report[2];
    CHECK(pipe(report) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(1);
        server_switch(c);
        read_stream(c, report[1]);
    }
    int fd = connect_to(&addr, len, optin);
    client_switch(fd);
    if (optin)
        CHECK(loopfast_fd_is_fast(fd) == 1, "not fast");
    static unsigned char b[PIECE];
    for (uint64_t pos = 0; pos < TOTAL; pos += PIECE) {
        fill(b, pos, PIECE);
        CHECK(write_full(fd, b, PIECE) == PIECE, "%s: write: %s", mode, strerror(errno));
    }
    long kb = -1;
    CHECK(read(report[0], &kb, sizeof kb) == sizeof kb, "%s: the reader's report", mode);
    close(fd);
    CHECK(child_status(pid) == 0, "%s: the reader failed", mode);
    printf("%s: %u MiB streamed, the reader's loopfast mappings hold %ld KiB\n", mode, TOTAL >> 20,
           kb);
    if (optin && kb >= 0)
        CHECK(kb < LIMIT_KB, "%s: the reader maps %ld KiB of a stream's ring (limit %d)", mode, kb,
              LIMIT_KB);
    close(report[0]);
    close(report[1]);
    close(l);
}

int main(void)
{
    alarm(60);
    if (loopfast_rss_kb(getpid()) < 0) {
        printf("no /proc/self/smaps\n");
        return 77;
    }
    run(0);
    run(1);
    return 0;
}
