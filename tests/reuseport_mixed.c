/* An SO_REUSEPORT group where some members opted in and others did not:
 * every opted-in client connection is echoed intact, none hangs. */
#include "helpers.h"

static int member(int optin, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (optin)
        CHECK(opt_in(fd) == 0, "opt in");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 64) == 0, "bind member: %s",
          strerror(errno));
    return fd;
}

int main(void)
{
    alarm(30);
    struct sockaddr_storage addr;
    socklen_t len;
    int first = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(first, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    CHECK(bind(first, (struct sockaddr *)&a, sizeof a) == 0 && listen(first, 64) == 0, "bind");
    len = sizeof addr;
    getsockname(first, (struct sockaddr *)&addr, &len);
    int port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    int members[4] = { first, member(1, port), member(0, port), member(1, port) };
    pid_t pids[4];
    for (int m = 0; m < 4; m++) {
        pids[m] = fork();
        if (pids[m] == 0) {
            for (int k = 0; k < 4; k++)
                if (k != m)
                    close(members[k]);
            for (;;) {
                int c = accept(members[m], NULL, NULL);
                char buf[4096];
                ssize_t n;
                while ((n = read(c, buf, sizeof buf)) > 0)
                    write_full(c, buf, (size_t)n);
                close(c);
            }
        }
    }
    for (int m = 0; m < 4; m++)
        close(members[m]);
    int fast = 0;
    for (int i = 0; i < 40; i++) {
        int fd = connect_to(&addr, len, 1);
        char msg[2000], back[2000];
        for (size_t k = 0; k < sizeof msg; k++)
            msg[k] = (char)(i + k * 3);
        CHECK(write_full(fd, msg, sizeof msg) == sizeof msg && read_full(fd, back, sizeof back) == sizeof back,
              "connection %d: %s", i, strerror(errno));
        CHECK(!memcmp(msg, back, sizeof msg), "connection %d corrupted", i);
        fast += loopfast_fd_is_fast(fd) == 1;
        close(fd);
    }
    for (int m = 0; m < 4; m++) {
        kill(pids[m], SIGKILL);
        waitpid(pids[m], NULL, 0);
    }
    printf("%d of 40 connections on the fast path\n", fast);
    CHECK(fast > 0 && fast < 40, "expected a mix of fast and plain, got %d fast", fast);
    return 0;
}
