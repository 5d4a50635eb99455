/* A server that reads a request through us (so its client switches), then
 * execs a program on the socket with an environment it built from scratch,
 * as mini_httpd runs its CGIs: LD_PRELOAD was gone, the new image ran
 * without loopfast and read TCP while the client's bytes were on the ring
 * (cat waited for ever).  An exec that passes fast connections to an
 * environment without LD_PRELOAD now adds ours, and the new image takes it
 * out again (src/exec.c): cat echoes the client's 200 KB, and env prints
 * exactly the environment it was given.  Over kernel TCP and with both ends
 * opted in, the test preloading its library as `loopfast run` would; the
 * same bytes both ways. */
#include "helpers.h"

#define BODY 200000

/* The server: a request, a greeting, the headers (after the client took
 * its answer), then `prog` on the socket with only A=1 in its environment. */
static void server(int l, const char *prog)
{
    int c = accept(l, NULL, NULL);
    if (request_served(c) != 0)
        _exit(2);
    if (dup2(c, 0) != 0 || dup2(c, 1) != 1)
        _exit(3);
    close(c);
    close(l);
    char *argv[] = { (char *)prog, NULL }, *envp[] = { "A=1", NULL };
    execve(prog, argv, envp);
    _exit(4);
}

/* What prog answered to `body` (len bytes, then our end of stream). */
static size_t run(int optin, const char *prog, const char *body, size_t len, char *got, size_t cap)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    int l = listen_on(AF_INET, optin, &addr, &alen);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        server(l, prog);
    close(l);
    int fd = connect_to(&addr, alen, optin);
    request_switched(fd, optin);
    pid_t writer = fork();   /* cat echoes as it reads: write and read at once */
    CHECK(writer >= 0, "fork");
    if (writer == 0)
        _exit(write_full(fd, body, len) == (ssize_t)len && shutdown(fd, SHUT_WR) == 0 ? 0 : 1);
    size_t have = 0;
    ssize_t r;
    while (have < cap && (r = read(fd, got + have, cap - have)) > 0)
        have += (size_t)r;
    CHECK(r == 0 || have == cap, "%s, %s: read: %s", prog, optin ? "loopfast" : "kernel",
          r < 0 ? strerror(errno) : "more than expected");
    CHECK(child_status(writer) == 0, "%s: the body's writer failed", prog);
    CHECK(child_status(pid) == 0, "%s, %s: the program failed", prog, optin ? "loopfast" : "kernel");
    close(fd);
    return have;
}

int main(int argc, char **argv)
{
    (void)argc;
    alarm(60);
    if (access("/bin/cat", X_OK) != 0 || access("/usr/bin/env", X_OK) != 0)
        return 77;
#if defined(UNDER_ASAN) || defined(UNDER_TSAN)
    SKIP("a sanitizer's library cannot be preloaded into cat and env");
#endif
    /* loopfast adds itself only where it was preloaded (`loopfast run`):
     * this test runs again with its library in LD_PRELOAD */
    char self[4096], lib[4096 + 32];
    self_exe(self, sizeof self);
    snprintf(lib, sizeof lib, "%.*s/../libloopfast.so", (int)(strrchr(self, '/') - self), self);
    char *real = realpath(lib, NULL);
    CHECK(real, "%s: %s", lib, strerror(errno));
    run_with_env(argv, "LD_PRELOAD", real);
    static char body[BODY], got[2][BODY + 100];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 26);
    for (int optin = 0; optin < 2; optin++) {
        size_t n = run(optin, "/bin/cat", body, sizeof body, got[optin], sizeof got[optin]);
        CHECK(n == sizeof body && !memcmp(got[optin], body, n), "cat, %s: %zu bytes back, not the body",
              optin ? "loopfast" : "kernel", n);
        n = run(optin, "/usr/bin/env", "", 0, got[optin], sizeof got[optin]);
        got[optin][n] = 0;
        CHECK(!strcmp(got[optin], "A=1\n"), "env, %s: its environment was \"%s\"",
              optin ? "loopfast" : "kernel", got[optin]);
        printf("%s: cat echoed %zu bytes, env printed A=1 alone\n", optin ? "loopfast" : "kernel",
               sizeof body);
    }
    return 0;
}
