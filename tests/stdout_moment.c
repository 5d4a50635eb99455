/* bash's `exec 3<>/dev/tcp/...; printf 'GET ...' >&3; cat <&3`: the shell
 * moves the socket onto stdout for a moment, writes the request through
 * stdio (libc's internal write(), which no interposition sees), moves it
 * back, and forks cat, whose fork takes the answer and switches.  The
 * switch counted no byte on TCP, and the server took the request for a
 * reset (the client read nothing, 1 run in 5).  The kernel's count of what
 * the socket was given now keeps such writes on TCP.  Both ways. */
#include "helpers.h"

#define REQUEST "GET /f HTTP/1.0\r\n\r\n"
#define REPLY (100 * 1024)

static void server(int l)
{
    int c = accept(l, NULL, NULL);
    char req[sizeof REQUEST - 1];
    static char reply[REPLY];
    memset(reply, 'r', sizeof reply);
    if (c < 0 || read_full(c, req, sizeof req) != sizeof req || memcmp(req, REQUEST, sizeof req))
        _exit(2);
    _exit(write_full(c, reply, sizeof reply) == sizeof reply ? 0 : 3);
}

static void run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t srv = fork_serving(optin, &addr, &len, server);
    int fd = connect_to(&addr, len, optin);
    sleep_ms(50);   /* the answer queued: the fork below takes it */
    fflush(stdout);
    int saved = dup(1);
    CHECK(saved >= 0 && dup2(fd, 1) == 1, "stdout onto the socket");
    printf("%s", REQUEST);
    fflush(stdout);
    CHECK(dup2(saved, 1) == 1, "stdout back");
    close(saved);
    pid_t reader = fork();
    CHECK(reader >= 0, "fork");
    if (reader == 0) {
        static char in[REPLY + 1];
        ssize_t n = read_full(fd, in, sizeof in);
        _exit(n == REPLY ? 0 : 4);
    }
    close(fd);
    const char *mode = optin ? "loopfast" : "kernel";
    int st = child_status(reader), ss = child_status(srv);
    CHECK(ss == 0, "%s: server exit %d (2: the request did not come whole)", mode, ss);
    CHECK(st == 0, "%s: reader exit %d (4: the reply did not come whole)", mode, st);
}

int main(void)
{
    alarm(20);
    for (int i = 0; i < 5; i++) {
        run(0);
        run(1);
    }
    return 0;
}
