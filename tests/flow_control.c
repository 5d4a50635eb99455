/* Flow control on the ring: a non-blocking writer fills it until EAGAIN; a
 * blocking writer waits until the reader drains, and everything arrives. */
#include <fcntl.h>

#include "helpers.h"

int main(void)
{
    alarm(20);
    int c, a;
    fast_pair(AF_INET, 1, &c, &a);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    static char buf[1 << 16];
    size_t queued = 0;
    ssize_t n;
    while ((n = write(c, buf, sizeof buf)) > 0)
        queued += (size_t)n;
    CHECK(n < 0 && errno == EAGAIN, "a full ring must say EAGAIN, got %zd %s", n, strerror(errno));
    CHECK(queued > 0 && queued < (64u << 20), "queued %zu bytes", queued);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) & ~O_NONBLOCK);
    pid_t reader = fork();
    if (reader == 0) {
        usleep(200000);   /* the parent's blocking write waits meanwhile */
        size_t want = queued + (1u << 20), got = 0;
        while (got < want && (n = read(a, buf, sizeof buf)) > 0)
            got += (size_t)n;
        _exit(got == want ? 0 : 1);
    }
    static char more[1 << 20];
    CHECK(write_full(c, more, sizeof more) == sizeof more, "blocking write: %s", strerror(errno));
    CHECK(child_status(reader) == 0, "reader did not get every byte");
    return 0;
}
