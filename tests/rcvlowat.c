/* SO_RCVLOWAT as Linux TCP keeps it: poll, epoll and select report a
 * socket readable only once that many bytes are there (or the peer's end
 * of stream), and a blocking read waits for that many (fewer at the end of
 * the stream, or when SO_RCVTIMEO runs out), or for the buffer's length
 * when that is less; a non-blocking read takes what is there.  Each step runs over kernel TCP and with both ends fast; the
 * transcripts must be the same. */
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "helpers.h"
#include "transcript.h"

static void readable(const char *what, int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK(poll(&p, 1, 0) >= 0, "poll");
    int ep = epoll_create1(0);
    struct epoll_event e = { .events = EPOLLIN }, out;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0, "epoll_ctl");
    int n = epoll_wait(ep, &out, 1, 0);
    close(ep);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(fd, &r);
    struct timeval zero = { 0, 0 };
    int sel = select(fd + 1, &r, NULL, NULL, &zero);
    note(" %s:%s%s%s", what, p.revents & POLLIN ? "P" : "-", n == 1 ? "E" : "-", sel == 1 ? "S" : "-");
}

struct later { int fd; int delay_ms; int len; };

static void *write_later(void *arg)
{
    struct later *l = arg;
    usleep((useconds_t)l->delay_ms * 1000);
    char b[256];
    memset(b, 'y', sizeof b);
    CHECK(write_full(l->fd, b, (size_t)l->len) == l->len, "late write");
    return NULL;
}

static void one_run(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    int lowat = 100;
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0, "SO_RCVLOWAT");
    char buf[512];
    memset(buf, 'x', sizeof buf);
    CHECK(write_full(c, buf, 10) == 10, "write 10");
    usleep(20000);
    readable("10", s);
    note_result("nb-recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));   /* takes the 10 */
    CHECK(write_full(c, buf, 99) == 99, "write 99");
    usleep(20000);
    readable("99", s);
    CHECK(write_full(c, buf, 1) == 1, "write 1");
    usleep(20000);
    readable("100", s);
    note_result("recv", recv(s, buf, sizeof buf, 0));
    /* A blocking read with 30 bytes there waits for more, written later.
     * (Linux takes the 30 and then wakes only once the mark's worth more
     * came: 70 more would leave it asleep, so 100 come.) */
    CHECK(write_full(c, buf, 30) == 30, "write 30");
    struct later l = { c, 100, 100 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, write_later, &l) == 0, "thread");
    note_result("blocking-recv", recv(s, buf, sizeof buf, 0));
    pthread_join(t, NULL);
    /* the low mark above the buffer's length: the buffer's length will do */
    CHECK(write_full(c, buf, 40) == 40, "write 40");
    l = (struct later){ c, 100, 100 };
    CHECK(pthread_create(&t, NULL, write_later, &l) == 0, "thread");
    note_result("recv-50", recv(s, buf, 50, 0));
    pthread_join(t, NULL);
    note_result("nb-recv", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    /* SO_RCVTIMEO runs out: what is there */
    struct timeval tv = { 0, 100000 };
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    CHECK(write_full(c, buf, 20) == 20, "write 20");
    note_result("timed-recv", recv(s, buf, sizeof buf, 0));
    /* lowered again: 1 */
    lowat = 1;
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0, "SO_RCVLOWAT 1");
    CHECK(write_full(c, buf, 5) == 5, "write 5");
    usleep(20000);
    readable("5-lowat1", s);
    note_result("recv", recv(s, buf, sizeof buf, 0));
    /* the end of the stream is readable whatever the mark */
    lowat = 100;
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0, "SO_RCVLOWAT");
    CHECK(write_full(c, buf, 7) == 7, "write 7");
    CHECK(shutdown(c, SHUT_WR) == 0, "shutdown");
    usleep(20000);
    readable("7-fin", s);
    note_result("recv", recv(s, buf, sizeof buf, 0));
    note_result("recv", recv(s, buf, sizeof buf, 0));
    close(c);
    close(s);
    snprintf(out, size, "%s", transcript);
}

/* The mark reached by bytes on both sides of the peer's switch: some on
 * TCP, unread, the rest on the ring (TCP's POLLIN, asked of its part
 * alone, said no: a fuzzer's find). */
static char split_buf[2048];

/* A pair whose server has a mark of 189 and 64 bytes of the client's
 * unread on TCP, the client switched (it read the server's answer). */
static void split_pair(int optin, int *c, int *s)
{
    transcript[0] = 0;
    close(accepted_pair(AF_INET, optin, c, s));
    int mark = 189;
    CHECK(setsockopt(*s, SOL_SOCKET, SO_RCVLOWAT, &mark, sizeof mark) == 0, "SO_RCVLOWAT");
    note_result("c-send", send(*c, split_buf, 64, 0));
    note_result("s-send", send(*s, split_buf, 547, 0));
    note_result("c-read", read(*c, split_buf, sizeof split_buf));
}

static void split_run(int optin, char *out, size_t size)
{
    int c, s;
    split_pair(optin, &c, &s);
    note_result("c-send", send(c, split_buf, 222, MSG_DONTWAIT));
    sleep_ms(20);
    readable("split", s);
    case_end(c, s, out, size);
}

/* Bytes from before the peer's switch, unread on TCP and fewer than the
 * mark, then the peer's end on its ring: readable, as after the kernel's
 * FIN (ours waited for the mark: a fuzzer's find, seed 2693). */
static void ended_run(int optin, char *out, size_t size)
{
    int c, s;
    split_pair(optin, &c, &s);
    sleep_ms(20);
    readable("below", s);
    note_result("c-shut-wr", shutdown(c, SHUT_WR));
    sleep_ms(20);
    readable("ended", s);
    note_result("s-read", read(s, split_buf, sizeof split_buf));
    note_result("s-read", read(s, split_buf, sizeof split_buf));
    case_end(c, s, out, size);
}

int main(void)
{
    alarm(30);
    char kernel[4096], fast[4096];
    one_run(0, kernel, sizeof kernel);
    one_run(1, fast, sizeof fast);
    printf("kernel  :%s\n", kernel);
    if (strcmp(kernel, fast))
        printf("loopfast:%s\n", fast);
    CHECK(!strcmp(kernel, fast), "SO_RCVLOWAT differs");
    CHECK(!transcripts_of("a mark reached across the switch", split_run), "SO_RCVLOWAT differs");
    CHECK(!transcripts_of("bytes below the mark, then the end on the ring", ended_run),
          "SO_RCVLOWAT differs");
    return 0;
}
