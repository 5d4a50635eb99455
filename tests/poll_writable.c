/* POLLOUT as the kernel says it of a TCP socket: only once the free space
 * is at least half of what is queued, so that a blocking write after it
 * rarely blocks.  loopfast said it at the first free byte of a full ring:
 * a program that polls, then writes a whole record to a blocking socket,
 * blocked in the write and read nothing meanwhile; socat relaying a
 * 200 MB echo through stunnel hung for good, every process on the way in
 * such a write (found by a helper's sweep).  Over kernel TCP, then
 * loopfast:
 *  (a) readiness: a writer fills its socket (non-blocking writes until
 *      EAGAIN); after its peer reads 4 KiB, poll and epoll say no POLLOUT;
 *      after the peer drains all, they say POLLOUT;
 *  (b) the deadlock: a client and an echo server each run a poll loop that
 *      writes 16 KiB records to a blocking socket when poll says POLLOUT
 *      and reads when it says POLLIN (the client 4 KiB at a time); 64 MiB
 *      go through and come back whole within 60 s (the client's alarm
 *      fails the test). */
#include <fcntl.h>
#include <poll.h>

#include "helpers.h"
#include "transcript.h"

#define RECORD (16u << 10)
#define TOTAL (64ull << 20)

static void shape_readiness(int optin, char *out, size_t size)
{
    int a, b;
    static char buf[65536];
    transcript[0] = 0;
    fast_pair(AF_INET, optin, &a, &b);
    fcntl(a, F_SETFL, O_NONBLOCK);
    long filled = fill_until_refused(a, sizeof buf);
    CHECK(filled > 0, "fill");
    CHECK(read_full(b, buf, 4096) == 4096, "peer read");
    note_readiness("after-4KiB", a);
    for (long left = filled - 4096; left > 0;) {
        ssize_t n = read(b, buf, left < (long)sizeof buf ? (size_t)left : sizeof buf);
        CHECK(n > 0, "drain: %zd", n);
        left -= n;
    }
    usleep(100000);   /* the kernel's ACKs, the ring's reader index */
    note_readiness("drained", a);
    note("\n");
    close(a);
    close(b);
    snprintf(out, size, "%s", transcript);
}

/* Sends `total` bytes (0: echoes until EOF) and reads until `total` came
 * back (0: until EOF), writing a whole record to the blocking socket
 * whenever poll says POLLOUT: the checksum of what it read. */
static uint64_t poll_loop(int fd, uint64_t total, int echo)
{
    static char rec[RECORD], in[RECORD * 4];
    uint64_t sent = 0, got = 0, pending = 0, h = FNV_INIT;
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (char)(i * 31 + 7);
    int eof = 0;
    while (echo ? !eof || pending : got < total) {
        int want_out = echo ? pending > 0 : sent < total;
        struct pollfd p = { .fd = fd, .events = (short)(POLLIN | (want_out ? POLLOUT : 0)) };
        if (echo && pending >= sizeof in)
            p.events = POLLOUT;   /* its buffer full: it writes before it reads more */
        CHECK(poll(&p, 1, -1) == 1, "poll: %s", strerror(errno));
        if ((p.revents & POLLOUT) && want_out) {
            size_t n = echo ? (pending < RECORD ? pending : RECORD) : RECORD;
            CHECK(write_full(fd, echo ? in : rec, n) == (ssize_t)n, "write: %s", strerror(errno));
            if (echo) {
                memmove(in, in + n, pending - n);
                pending -= n;
            } else {
                sent += n;
                if (sent == total)
                    shutdown(fd, SHUT_WR);
            }
        }
        if ((p.revents & (POLLIN | POLLHUP)) && (!echo || pending < sizeof in)) {
            char *to = echo ? in + pending : in;
            /* the client reads less than it writes: its peer's echo fills
             * its side, as a slow consumer's does */
            size_t room = echo ? sizeof in - pending : RECORD / 4;
            ssize_t n = read(fd, to, room);
            CHECK(n >= 0, "read: %s", strerror(errno));
            if (n == 0) {
                CHECK(echo, "the echo ended after %llu of %llu bytes", (unsigned long long)got,
                      (unsigned long long)total);
                eof = 1;
            }
            if (echo)
                pending += (uint64_t)n;
            else
                h = fnv(h, to, (size_t)n);
            got += (uint64_t)n;
        }
    }
    return h;
}

static void echo_server_loop(int listener)
{
    int c = accept(listener, NULL, NULL);
    if (c < 0)
        _exit(2);
    close(listener);
    poll_loop(c, 0, 1);
    close(c);
    _exit(0);
}

static void shape_relay(int optin)
{
    pid_t server;
    int fd = connect_to_forked(optin, echo_server_loop, &server);
    static char rec[RECORD];
    uint64_t expect = FNV_INIT;
    for (size_t i = 0; i < sizeof rec; i++)
        rec[i] = (char)(i * 31 + 7);
    for (uint64_t s = 0; s < TOTAL; s += RECORD)
        expect = fnv(expect, rec, RECORD);
    alarm(60);   /* a hang fails the test */
    uint64_t h = poll_loop(fd, TOTAL, 0);
    alarm(0);
    if (optin)
        CHECK(loopfast_fd_is_fast(fd) == 1, "(b) not fast");
    CHECK(h == expect, "(b) %s: the echo came back changed", optin ? "loopfast" : "kernel TCP");
    close(fd);
    CHECK(child_status(server) == 0, "(b) the echo server failed");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int differ = transcripts_of("(a) POLLOUT of a full socket", shape_readiness);
    shape_relay(0);
    shape_relay(1);
    return differ;
}
