/* SO_SNDBUF and SO_RCVBUF bound the bytes in flight as over kernel TCP: with
 * the reader's SO_RCVBUF set small (on the listener, inherited, or on the
 * accepted socket) and the writer's SO_SNDBUF set (before or after opting
 * in), a non-blocking writer that nobody reads from gets EAGAIN after about
 * as many bytes as the same program over kernel TCP (within 0.25x-4x), far
 * below the ring's default hold.  getsockopt reports what the kernel
 * reports.  With the writer's size left to the kernel, the kernel holds
 * megabytes, and so does the ring (tests/stalled_reader.c): still within
 * the factor. */
#include <fcntl.h>

#include "helpers.h"

enum { ON_LISTENER, ON_ACCEPTED };

struct result {
    long buffered;
    int rcv_reported, snd_reported;
};

static void set_size(int fd, int opt, int v)
{
    if (v)
        CHECK(setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) == 0, "setsockopt: %s", strerror(errno));
}

static int reported(int fd, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, SOL_SOCKET, opt, &v, &len) == 0, "getsockopt");
    return v;
}

/* Reads what was accepted (a small window moves slowly: up to 5 s). */
static long drain(int fd, long expect)
{
    static char buf[65536];
    long total = 0;
    for (int waits = 0; total < expect && waits < 500;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            total += n;
        else
            usleep(10000), waits++;
    }
    usleep(20000);
    return recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0 ? -1 : total;
}

static struct result run(int optin, int rcv, int snd, int where, int snd_after_optin)
{
    struct sockaddr_storage addr = { 0 };
    struct sockaddr_in *in = (struct sockaddr_in *)&addr;
    socklen_t len = sizeof *in;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (where == ON_LISTENER)
        set_size(l, SO_RCVBUF, rcv);
    if (optin)
        CHECK(opt_in(l) == 0, "opt in listener");
    CHECK(bind(l, (struct sockaddr *)&addr, len) == 0 && listen(l, 4) == 0 &&
          getsockname(l, (struct sockaddr *)&addr, &len) == 0, "listen");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (!snd_after_optin)
        set_size(c, SO_SNDBUF, snd);
    if (optin)
        CHECK(opt_in(c) == 0, "opt in client");
    if (snd_after_optin)
        set_size(c, SO_SNDBUF, snd);
    CHECK(connect(c, (struct sockaddr *)&addr, len) == 0, "connect: %s", strerror(errno));
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    close(l);
    if (where == ON_ACCEPTED)
        set_size(s, SO_RCVBUF, rcv);
    char b;
    CHECK(write_full(c, "a", 1) == 1 && read_full(s, &b, 1) == 1 && write_full(s, "b", 1) == 1 &&
          read_full(c, &b, 1) == 1, "first exchange");
    CHECK(loopfast_fd_is_fast(c) == optin && loopfast_fd_is_fast(s) == optin, "fast path as asked");
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    struct result r = { fill_until_refused(c, 1024), reported(s, SO_RCVBUF), reported(c, SO_SNDBUF) };
    CHECK(drain(s, r.buffered) == r.buffered, "the reader gets every byte that was accepted");
    close(c);
    close(s);
    return r;
}

int main(void)
{
    alarm(25);
    static const struct { int rcv, snd, where, after, small; } cases[] = {
        { 4096, 4096, ON_LISTENER, 0, 1 },
        { 16384, 4096, ON_ACCEPTED, 1, 1 },
        { 65536, 65536, ON_LISTENER, 1, 1 },
        { 4096, 65536, ON_ACCEPTED, 0, 1 },
        { 4096, 0, ON_LISTENER, 0, 0 },   /* the writer's size autotuned: megabytes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct result k = run(0, cases[i].rcv, cases[i].snd, cases[i].where, cases[i].after);
        struct result f = run(1, cases[i].rcv, cases[i].snd, cases[i].where, cases[i].after);
        printf("SO_RCVBUF %d (reported %d), SO_SNDBUF %d (reported %d): kernel TCP buffers %ld, "
               "loopfast %ld (%.2fx)\n", cases[i].rcv, k.rcv_reported, cases[i].snd, k.snd_reported,
               k.buffered, f.buffered, (double)f.buffered / (double)k.buffered);
        CHECK(f.rcv_reported == k.rcv_reported && (!cases[i].snd || f.snd_reported == k.snd_reported),
              "getsockopt differs: %d/%d vs %d/%d", f.rcv_reported, f.snd_reported, k.rcv_reported,
              k.snd_reported);
        CHECK(f.buffered * 4 >= k.buffered && f.buffered <= k.buffered * 4,
              "bytes in flight %ld, kernel TCP %ld", f.buffered, k.buffered);
        CHECK(!cases[i].small || f.buffered <= (512 << 10), "not bounded: %ld", f.buffered);
    }
    return 0;
}
