/*
 * echo_client.c - a minimal client for echo_server, on the fast path.
 *
 *   build/examples/echo_client 7000 "hello"
 *
 * It opts in before connect(), sends its message, reads the echo and says
 * whether the connection's data went through shared memory.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <loopfast.h>

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 7000, on = 1;
    const char *msg = argc > 2 ? argv[2] : "hello, loopfast";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) != 0)
        perror("loopfast_ioctl (the client stays on ordinary TCP)");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("echo_client: connect (is echo_server running on that port?)");
        return 1;
    }
    size_t len = strlen(msg), got = 0;
    char back[4096];
    if (len > sizeof back || write(fd, msg, len) != (ssize_t)len) {
        perror("echo_client: write");
        return 1;
    }
    while (got < len) {
        ssize_t n = read(fd, back + got, len - got);
        if (n <= 0) {
            fprintf(stderr, "echo_client: the server closed the connection early\n");
            return 1;
        }
        got += (size_t)n;
    }
    printf("echo: %.*s\nfast path: %s\n", (int)len, back, loopfast_fd_is_fast(fd) == 1 ? "yes" : "no");
    close(fd);
    return memcmp(msg, back, len) != 0;
}
