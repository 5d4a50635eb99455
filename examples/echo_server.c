/*
 * echo_server.c - a minimal TCP echo server on the loopback fast path.
 *
 *   build/examples/echo_server 7000
 *
 * The only loopfast-specific line is the loopfast_ioctl() on the listener,
 * before accept(): every connection accepted from it may use the fast path
 * when its client opted in too.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <loopfast.h>

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 7000, on = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (loopfast_ioctl(l, LOOPFAST_SIO_LOOPBACK_FAST_PATH, &on, sizeof on, NULL, 0, NULL) != 0)
        perror("loopfast_ioctl (the server stays on ordinary TCP)");
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 16) < 0) {
        perror("echo_server: bind/listen (is the port free? try another one)");
        return 1;
    }
    printf("echo server on 127.0.0.1:%d\n", port);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            continue;
        char buf[65536];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write(c, buf, (size_t)n) != n)
                break;
        printf("connection done (fast path: %s)\n", loopfast_fd_is_fast(c) == 1 ? "yes" : "no");
        close(c);
    }
}
