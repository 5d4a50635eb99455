/* A server that reads a request through us (so its client switches), then
 * runs a stdio program on the socket, as a web server runs a CGI with the
 * connection as its stdin for the POST body, or dup2()s it onto stdin and
 * stdout and runs a stdio handler itself: the handler reads with
 * fgets(stdin), libc's internal read(), which no interposition sees, and
 * waited on TCP for ever while the client's lines were on the ring.  A
 * connection that comes onto stdin and cannot be held on TCP there is now
 * read through a stdio stream of ours, made stdin (src/stdio.c).  30 lines echoed through
 * the program (its printf() answers go back to TCP, 4.4), over kernel TCP
 * and with both ends opted in: the same bytes both ways, and the client's
 * end on the rings with loopfast. */
#include "helpers.h"

#define LINES 30

/* The exec'd program: echoes lines until EOF. */
static int serve_stdio(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        printf("echo %s", line);
        fflush(stdout);
    }
    return ferror(stdin) ? 1 : 0;
}

/* The server: a request read through us, a greeting, the request's
 * headers (written after the client took its answer), then the program on
 * the socket's stdin and stdout. */
static void server(int l, const char *self, int in_process)
{
    int c = accept(l, NULL, NULL);
    if (request_served(c) != 0)
        _exit(2);
    if (!in_process)
        exec_on_stdio(c, l, self, "serve-stdio");
    if (dup2(c, 0) != 0 || dup2(c, 1) != 1)
        _exit(3);
    close(c);
    _exit(serve_stdio());
}

static void run(const char *self, int optin, int in_process)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    fflush(stdout);   /* the child's stdout becomes the socket: nothing of ours may be left */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        server(l, self, in_process);
    close(l);
    int fd = connect_to(&addr, len, optin);
    request_switched(fd, optin);
    lines_echoed(fd, LINES, "body", optin);
    int fast = loopfast_fd_is_fast(fd);
    CHECK(fast == optin, "loopfast_fd_is_fast says %d, want %d", fast, optin);
    shutdown(fd, SHUT_WR);
    char b;
    CHECK(read(fd, &b, 1) == 0, "EOF after the program ended");
    CHECK(child_status(pid) == 0, "the program failed");
    printf("%s: %d lines echoed through fgets(stdin) after the switch, %s\n",
           optin ? "loopfast" : "kernel", LINES, in_process ? "dup2() in the server" : "exec'd");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "serve-stdio"))
        return serve_stdio();
    alarm(60);
    char self[4096];
    self_exe(self, sizeof self);
    for (int in_process = 0; in_process < 2; in_process++)
        for (int optin = 0; optin < 2; optin++)
            run(self, optin, in_process);
    return 0;
}
