/* dup, dup2, dup3 and F_DUPFD copies of a fast socket all work; closing one
 * copy keeps the connection; closing the last sends EOF; SO_LINGER 0 resets. */
#include <fcntl.h>

#include "helpers.h"

static void roundtrip(int a, int b, const char *what)
{
    char buf[8];
    CHECK(write_full(a, "ping", 4) == 4 && read_full(b, buf, 4) == 4 && !memcmp(buf, "ping", 4),
          "%s: a->b", what);
    CHECK(write_full(b, "pong", 4) == 4 && read_full(a, buf, 4) == 4 && !memcmp(buf, "pong", 4),
          "%s: b->a", what);
}

int main(void)
{
    alarm(20);
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    int d1 = dup(c), d2 = dup2(c, 50), d3 = dup3(c, 51, O_CLOEXEC), d4 = fcntl(c, F_DUPFD_CLOEXEC, 60);
    CHECK(d1 >= 0 && d2 == 50 && d3 == 51 && d4 >= 60, "dups");
    int all[] = { c, d1, d2, d3, d4 };
    for (int i = 0; i < 5; i++)
        CHECK(loopfast_fd_is_fast(all[i]) == 1, "copy %d not fast", i);
    for (int i = 0; i < 4; i++) {
        close(all[i]);
        roundtrip(all[i + 1], s, "after closing a copy");
    }
    /* dup2 onto a copy replaces it: the connection lives on in the others */
    int e = dup(d4);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    CHECK(dup2(p[0], e) == e, "dup2 over a copy");
    roundtrip(d4, s, "after dup2 over a copy");
    close(e);
    close(d4);
    char b;
    CHECK(read(s, &b, 1) == 0, "closing the last copy must give EOF");
    close(s);

    fast_pair(AF_INET, 1, &c, &s);
    struct linger lg = { 1, 0 };
    CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0, "SO_LINGER");
    close(c);
    usleep(50000);
    ssize_t n = read(s, &b, 1);
    CHECK(n == -1 && errno == ECONNRESET, "SO_LINGER 0 close: read gave %zd %s", n, strerror(errno));
    return 0;
}
