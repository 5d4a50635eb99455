/* A listener shared by forked worker processes: 30 opted-in connections,
 * each echoed by whichever worker accepted it, all correct, none hangs. */
#include "helpers.h"

int main(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    alarm(30);
    int l = listen_on(AF_INET, 1, &addr, &len);
    pid_t workers[3];
    for (int w = 0; w < 3; w++) {
        workers[w] = fork();
        CHECK(workers[w] >= 0, "fork");
        if (workers[w] == 0) {
            for (;;) {
                int c = accept(l, NULL, NULL);
                if (c < 0)
                    _exit(1);
                char buf[4096];
                ssize_t n;
                while ((n = read(c, buf, sizeof buf)) > 0)
                    write_full(c, buf, (size_t)n);
                close(c);
            }
        }
    }
    int fast = 0;
    for (int i = 0; i < 30; i++) {
        int fd = connect_to(&addr, len, 1);
        char msg[3000], back[3000];
        for (size_t k = 0; k < sizeof msg; k++)
            msg[k] = (char)(i * 7 + k);
        CHECK(write_full(fd, msg, sizeof msg) == sizeof msg, "write %d", i);
        CHECK(read_full(fd, back, sizeof back) == sizeof back, "read %d", i);
        CHECK(!memcmp(msg, back, sizeof msg), "connection %d corrupted", i);
        fast += loopfast_fd_is_fast(fd) == 1;
        close(fd);
    }
    for (int w = 0; w < 3; w++) {
        kill(workers[w], SIGKILL);
        waitpid(workers[w], NULL, 0);
    }
    CHECK(fast == 30, "only %d of 30 connections were fast", fast);
    return 0;
}
