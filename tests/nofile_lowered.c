/* A server child that lowers RLIMIT_NOFILE until no descriptor is free
 * (vsftpd's pre-login child: {0, 0}) after it accepted, then greets its
 * client and echoes: the client's first command came back over kernel
 * TCP, and under loopfast it hung, its proof never received (it comes with
 * a descriptor).  Limits 0, 1 and 3 (none free), then 64 (room), each over
 * kernel TCP first, then with both ends opted in: the same greeting and
 * echoes, then EOF, within the time bound. */
#include <sys/resource.h>

#include "helpers.h"

static const rlim_t limits[] = { 0, 1, 3, 64 };

/* The child of the forking server: its limit lowered, a greeting, echoes. */
static void serve(int c, rlim_t limit)
{
    struct rlimit rl = { limit, limit };
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(20);
    if (write(c, "220 hello\r\n", 11) != 11)
        _exit(21);
    char buf[256];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        if (write_full(c, buf, (size_t)n) != n)
            _exit(22);
    _exit(n == 0 ? 0 : 23);
}

static void one(int optin, rlim_t limit)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    pid_t server = fork();
    CHECK(server >= 0, "fork");
    if (server == 0) {
        alarm(20);
        int c = accept(l, NULL, NULL);
        if (c < 0)
            _exit(10);
        pid_t child = fork();
        if (child == 0) {
            close(l);
            serve(c, limit);
        }
        close(c);
        _exit(child_status(child));
    }
    close(l);
    int fd = connect_to(&addr, len, optin);
    char greet[16], line[32], back[32];
    CHECK(read_full(fd, greet, 11) == 11 && memcmp(greet, "220 hello\r\n", 11) == 0,
          "%s, limit %d: no greeting", optin ? "loopfast" : "kernel TCP", (int)limit);
    for (int i = 0; i < 20; i++) {
        int n = snprintf(line, sizeof line, "line %d\r\n", i);
        CHECK(write_full(fd, line, (size_t)n) == n, "write");
        CHECK(read_full(fd, back, (size_t)n) == n && memcmp(line, back, (size_t)n) == 0,
              "%s, limit %d: echo %d did not come back", optin ? "loopfast" : "kernel TCP",
              (int)limit, i);
    }
    close(fd);
    int st = child_status(server);
    CHECK(st == 0, "%s, limit %d: the server ended with %d", optin ? "loopfast" : "kernel TCP",
          (int)limit, st);
}

int main(void)
{
    alarm(60);
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        for (int optin = 0; optin <= 1; optin++)
            one(optin, limits[i]);
    return 0;
}
