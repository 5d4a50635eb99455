/* system() and popen() while a fast connection survives exec: their shell
 * inherits the socket and writes to it (a CGI-like server), and its bytes
 * arrive in order with the server's own, as over kernel TCP; a popen()
 * stream opened before does not leak into the later children.  glibc's
 * versions spawn the shell past our hooks, so it used to see a plain TCP
 * socket, and the client got nothing at all.  Also: the commands' exit
 * statuses, popen() in both directions, system(NULL).  The shell loads
 * loopfast through LD_PRELOAD, as under `loopfast run`. */
#include <dlfcn.h>

#include "helpers.h"

#define EXPECTED "[system][popen w][popen r: hi][parent]"

/* A child of a later popen() must not hold an earlier popen() stream
 * open (its reader would never see end of file): the shell lists its own
 * descriptors, which must not include that stream's. */
static int holds_stream(FILE *earlier)
{
    char line[64], name[16];
    snprintf(name, sizeof name, "%d\n", fileno(earlier));
    FILE *r = popen("ls /proc/$$/fd", "r");
    int held = 0;
    while (r && fgets(line, sizeof line, r))
        held |= !strcmp(line, name);
    return !r || pclose(r) != 0 || held;
}

static void server(int l)
{
    FILE *early = popen("cat >/dev/null", "w");   /* before any fast connection */
    int c = accept(l, NULL, NULL);
    char cmd[200];
    server_switch(c);
    if (!early || holds_stream(early) || pclose(early) != 0)
        _exit(7);
    snprintf(cmd, sizeof cmd, "printf '[system]' >&%d; exit 3", c);
    if (system(cmd) != 3 << 8)
        _exit(3);
    snprintf(cmd, sizeof cmd, "cat >&%d", c);
    FILE *w = popen(cmd, "w");
    if (!w || fputs("[popen w]", w) < 0 || pclose(w) != 0)
        _exit(4);
    char line[32] = "";
    FILE *r = popen("echo hi", "re");
    if (!r || !fgets(line, sizeof line, r) || pclose(r) != 0 || strcmp(line, "hi\n"))
        _exit(5);
    const char *rest = "[popen r: hi][parent]";
    if (write_full(c, rest, strlen(rest)) != (ssize_t)strlen(rest) || system(NULL) == 0)
        _exit(6);
    _exit(10 + loopfast_fd_is_fast(c));
}

static void run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t pid = fork_serving(optin, &addr, &len, server);
    int fd = connect_to(&addr, len, optin);
    char buf[256];
    client_switch(fd);
    int fast = loopfast_fd_is_fast(fd);
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    close(fd);
    int st = child_status(pid);
    fprintf(stderr, "%s: fast %d, server %d, read '%s'\n", optin ? "loopfast" : "kernel", fast, st,
            buf);
    CHECK(!strcmp(buf, EXPECTED), "%s: the client read '%s'", optin ? "loopfast" : "kernel", buf);
    CHECK(st == 10 + optin && fast == optin, "%s: server exit %d, client fast %d",
          optin ? "loopfast" : "kernel", st, fast);
}

int main(void)
{
    alarm(20);
    Dl_info lib;
    CHECK(dladdr((void *)loopfast_ioctl, &lib) && lib.dli_fname, "where is libloopfast?");
    setenv("LD_PRELOAD", lib.dli_fname, 1);
    if (system("exit 0") != 0)
        SKIP("the shell cannot load this build of loopfast (a sanitizer's runtime?)");
    run(0);
    run(1);
    return 0;
}
