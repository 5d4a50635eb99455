/* loopfast_ioctl and loopfast_fd_is_fast: every error case of the contract,
 * each on its own, and the successes. */
#include <fcntl.h>
#include <sys/un.h>

#include "helpers.h"

#define CODE LOOPFAST_SIO_LOOPBACK_FAST_PATH

static void expect_err(int rc, int err, const char *what)
{
    CHECK(rc == -1 && errno == err, "%s: rc=%d errno=%d (%s), expected %s", what, rc, errno,
          strerror(errno), strerror(err));
}

int main(void)
{
    int on = 1, off = 0;
    size_t ret = 99;
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    expect_err(loopfast_ioctl(tcp, CODE, NULL, sizeof on, NULL, 0, NULL), EFAULT, "in NULL");
    expect_err(loopfast_ioctl(tcp, CODE, &on, sizeof on - 1, NULL, 0, NULL), EINVAL, "short in");
    char out[4];
    expect_err(loopfast_ioctl(tcp, CODE, &on, sizeof on, out, sizeof out, NULL), EINVAL, "out_len");
    expect_err(loopfast_ioctl(tcp, 0x98000011UL, &on, sizeof on, NULL, 0, NULL), EINVAL, "code");
    int closed = dup(tcp);
    close(closed);
    expect_err(loopfast_ioctl(closed, CODE, &on, sizeof on, NULL, 0, NULL), EBADF, "closed fd");
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    expect_err(loopfast_ioctl(p[0], CODE, &on, sizeof on, NULL, 0, NULL), ENOTSOCK, "pipe");
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    expect_err(loopfast_ioctl(udp, CODE, &on, sizeof on, NULL, 0, NULL), EINVAL, "udp");
    int un = socket(AF_UNIX, SOCK_STREAM, 0);
    expect_err(loopfast_ioctl(un, CODE, &on, sizeof on, NULL, 0, NULL), EINVAL, "unix");
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (raw >= 0)
        expect_err(loopfast_ioctl(raw, CODE, &on, sizeof on, NULL, 0, NULL), EINVAL, "raw");

    CHECK(loopfast_ioctl(tcp, CODE, &on, sizeof on, NULL, 0, &ret) == 0 && ret == 0, "enable v4");
    CHECK(loopfast_ioctl(tcp, CODE, &off, sizeof off, NULL, 0, NULL) == 0, "disable v4");
    int tcp6 = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(tcp6 < 0 || opt_in(tcp6) == 0, "enable v6");

    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    CHECK(opt_in(l) == 0, "a listener may opt in again");
    int c = connect_to(&addr, len, 0);
    expect_err(loopfast_ioctl(c, CODE, &on, sizeof on, NULL, 0, NULL), EISCONN, "connected");
    int a = accept(l, NULL, NULL);
    expect_err(loopfast_ioctl(a, CODE, &on, sizeof on, NULL, 0, NULL), EISCONN, "accepted");

    close(1000);   /* a number nothing here holds */
    expect_err(loopfast_fd_is_fast(1000), EBADF, "is_fast closed");
    expect_err(loopfast_fd_is_fast(p[0]), ENOTSOCK, "is_fast pipe");
    CHECK(loopfast_fd_is_fast(tcp) == 0, "is_fast unconnected");
    CHECK(loopfast_fd_is_fast(c) == 0 && loopfast_fd_is_fast(a) == 0, "is_fast plain");
    return 0;
}
