/* SO_PEEK_OFF (Linux 6.9 and later for TCP): each MSG_PEEK starts where the
 * last one ended, and reads move the offset back.  A ring's peek always
 * starts at its tail, so a peer of passt-like programs would read the same
 * bytes for ever: a socket given a peek offset before its switch, or
 * accepted from a listener that has one, stays on kernel TCP.  Checked:
 * the offset's effect (peeks, reads, getsockopt), that the bytes arrive
 * whole both ways, and that such connections are not fast, while one
 * without the option beside them is.  Kernel TCP and loopfast (both ends
 * opted in): the transcripts must be the same. */
#include "helpers.h"
#include "transcript.h"

static void peek_note(int fd, size_t len)
{
    char buf[64];
    ssize_t n = recv(fd, buf, len, MSG_PEEK | MSG_DONTWAIT);
    note_result("peek", n);
    if (n > 0)
        note("=%.*s", (int)n, buf);
}

static void offset_note(int fd)
{
    int off = -7;
    socklen_t len = sizeof off;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, &len) == 0, "getsockopt: %s",
          strerror(errno));
    note(" off=%d", off);
}

/* `reader` peeks with an offset: what it peeks, reads and is told. */
static void exchange(int writer, int reader)
{
    char buf[64];
    for (int round = 0; round < 3; round++) {   /* past any switch */
        CHECK(write_full(writer, "0123456789", 10) == 10, "write");
        usleep(10000);
        peek_note(reader, 4);
        peek_note(reader, 4);
        peek_note(reader, 4);
        offset_note(reader);
        CHECK(read_full(reader, buf, 6) == 6, "read 6");
        offset_note(reader);
        peek_note(reader, 4);
        CHECK(read_full(reader, buf, 4) == 4 && !memcmp(buf, "6789", 4), "read the rest");
        offset_note(reader);
        CHECK(write_full(reader, "ok", 2) == 2 && read_full(writer, buf, 2) == 2, "reply");
    }
}

static int set_offset(int fd)
{
    int off = 0;
    return setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
}

/* The client sets the offset right after connect (passt's order). */
static void client_case(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int c = connect_to(&addr, len, optin);
    CHECK(set_offset(c) == 0, "SO_PEEK_OFF: %s", strerror(errno));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    exchange(s, c);
    note(" fast=%d", loopfast_fd_is_fast(c) == 1);
    /* a connection beside it, without the option, still switches */
    int c2 = connect_to(&addr, len, optin), s2 = accept(l, NULL, NULL);
    char b;
    for (int i = 0; i < 3; i++)
        CHECK(write_full(c2, "x", 1) == 1 && read_full(s2, &b, 1) == 1 && write_full(s2, "y", 1) == 1 &&
              read_full(c2, &b, 1) == 1, "exchange beside");
    if (optin)
        CHECK(loopfast_fd_is_fast(c2) == 1, "the connection without SO_PEEK_OFF did not switch");
    close(c2), close(s2), close(c), close(s), close(l);
    snprintf(out, size, "%s", transcript);
}

/* The listener has the offset: accepted sockets inherit it. */
static void listener_case(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    CHECK(set_offset(l) == 0, "SO_PEEK_OFF on the listener: %s", strerror(errno));
    int c = connect_to(&addr, len, optin);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    offset_note(s);
    exchange(c, s);
    note(" fast=%d", loopfast_fd_is_fast(s) == 1);
    close(c), close(s), close(l);
    snprintf(out, size, "%s", transcript);
}

int main(void)
{
    alarm(30);
    int probe = socket(AF_INET, SOCK_STREAM, 0), off = 0;
    if (setsockopt(probe, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0) {
        printf("SKIP: this kernel has no SO_PEEK_OFF for TCP (6.9 or later)\n");
        return 77;
    }
    close(probe);
    static char kernel[4096], fast[4096];
    int bad = 0;
    client_case(0, kernel, sizeof kernel);
    client_case(1, fast, sizeof fast);
    bad += transcripts_differ("SO_PEEK_OFF on the client after connect", kernel, fast);
    listener_case(0, kernel, sizeof kernel);
    listener_case(1, fast, sizeof fast);
    bad += transcripts_differ("SO_PEEK_OFF on the listener", kernel, fast);
    return bad ? 1 : 0;
}
