/* Fork after connect, one process writes and the other reads (rlogin, old
 * netcat): the server echoes every byte the writer sent, and the reader gets
 * every echoed byte, then EOF.  Four shapes: the server accepts before or
 * after the fork, the parent or the child writes; each runs over kernel TCP
 * and with both ends opted in, and must give the same result. */
#include "helpers.h"

#define TOTAL (1u << 20)

static void fill(unsigned char *buf, size_t n, uint32_t seed)
{
    uint32_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

/* Echoes until EOF; tells the parent how many bytes it echoed. */
static void server(int listener, int go_fd, int count_fd)
{
    char b;
    if (go_fd >= 0 && read(go_fd, &b, 1) != 1)
        _exit(2);
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        _exit(3);
    static char buf[1 << 16];
    uint64_t total = 0;
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0) {
        if (write_full(c, buf, (size_t)n) != n)
            _exit(4);
        total += (uint64_t)n;
    }
    if (n < 0)
        _exit(5);
    CHECK(write(count_fd, &total, sizeof total) == sizeof total, "count");
    close(c);
    _exit(0);
}

static int writer(int fd, const unsigned char *data)
{
    size_t done = 0, chunk = 1;
    while (done < TOTAL) {
        size_t n = chunk < TOTAL - done ? chunk : TOTAL - done;
        if (write_full(fd, data + done, n) != (ssize_t)n)
            return 1;
        done += n;
        chunk = chunk * 7 % 65521 + 1;
    }
    return shutdown(fd, SHUT_WR) == 0 ? 0 : 2;
}

static int reader(int fd, uint64_t want)
{
    static unsigned char buf[1 << 16];
    uint64_t h = FNV_INIT, got = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        h = fnv(h, buf, (size_t)n);
        got += (uint64_t)n;
    }
    if (n < 0) {
        fprintf(stderr, "reader: %s after %llu bytes\n", strerror(errno), (unsigned long long)got);
        return 1;
    }
    if (got != TOTAL || h != want) {
        fprintf(stderr, "reader: %llu bytes of %u, checksum %s\n", (unsigned long long)got,
                TOTAL, h == want ? "ok" : "differs");
        return 1;
    }
    return 0;
}

static void one_case(int optin, int accept_first, int parent_writes, const unsigned char *data,
                     uint64_t want)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int go[2], count[2];
    CHECK(pipe(go) == 0 && pipe(count) == 0, "pipe");
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t srv = fork();
    CHECK(srv >= 0, "fork");
    if (srv == 0) {
        alarm(25);
        server(l, accept_first ? -1 : go[0], count[1]);
    }
    close(l);
    int fd = connect_to(&addr, len, optin);
    if (accept_first)
        usleep(20000);   /* likely answered (not certain: either way must work) */
    pid_t kid = fork();
    CHECK(kid >= 0, "fork");
    int i_write = (kid != 0) == parent_writes;
    if (kid == 0) {
        alarm(25);
        _exit(i_write ? writer(fd, data) : reader(fd, want));
    }
    if (!accept_first)
        CHECK(write(go[1], "g", 1) == 1, "go");
    int mine = i_write ? writer(fd, data) : reader(fd, want);
    close(fd);
    int theirs = child_status(kid);
    uint64_t echoed = 0;
    CHECK(read(count[0], &echoed, sizeof echoed) == sizeof echoed, "server count");
    int st = child_status(srv);
    const char *shape = optin ? "loopfast" : "kernel";
    CHECK(mine == 0 && theirs == 0 && st == 0 && echoed == TOTAL,
          "%s, accept %s fork, %s writes: parent %d child %d server %d echoed %llu",
          shape, accept_first ? "before" : "after", parent_writes ? "parent" : "child", mine,
          theirs, st, (unsigned long long)echoed);
    close(go[0]);
    close(go[1]);
    close(count[0]);
    close(count[1]);
}

int main(void)
{
    alarm(28);
    signal(SIGPIPE, SIG_IGN);
    static unsigned char data[TOTAL];
    fill(data, TOTAL, 12345);
    uint64_t want = fnv(FNV_INIT, data, TOTAL);
    for (int optin = 0; optin <= 1; optin++)
        for (int accept_first = 0; accept_first <= 1; accept_first++)
            for (int parent_writes = 0; parent_writes <= 1; parent_writes++)
                one_case(optin, accept_first, parent_writes, data, want);
    return 0;
}
