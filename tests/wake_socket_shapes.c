/* A call blocked past the futex phase sleeps on its thread's wake socket
 * (docs/design.md, 6); two process shapes around it:
 *  - fork: a process whose thread already holds a wake socket forks, and
 *    parent and child each then wait past the futex phase on their own
 *    connection at the same time: each must be woken by its own peer's
 *    message (the child inherits the parent's socket and name, and must
 *    make its own: one socket shared would hand one process's wake-up to
 *    the other);
 *  - no descriptor left: a process that has filled its descriptor table
 *    before its first long sleep has no wake socket, and must still be
 *    woken (by the doorbell).
 * The server answers each byte DELAY_MS later.  Kernel TCP first, loopfast
 * then; each round trip must take less than STUCK_MS (a lost wake-up
 * sleeps until alarm()). */
#include <sys/resource.h>
#include <time.h>

#include "helpers.h"

#define DELAY_MS 300
#define ROUNDS 3
#define STUCK_MS 2000

static void *delayed_echo(void *arg)
{
    int c = (int)(intptr_t)arg;
    char b;
    while (read(c, &b, 1) == 1) {
        usleep(DELAY_MS * 1000);
        if (write_full(c, &b, 1) != 1)
            break;
    }
    close(c);
    return NULL;
}

static void serve(int l)
{
    for (;;) {
        int c = accept(l, NULL, NULL);
        pthread_t t;
        if (c < 0 || pthread_create(&t, NULL, delayed_echo, (void *)(intptr_t)c) != 0)
            _exit(2);
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ROUNDS delayed 1-byte round trips on fd: 0, or 1 when one failed or took
 * longer than STUCK_MS (said on stderr, as `who`). */
static int delayed_rounds(int fd, const char *who)
{
    for (int i = 0; i < ROUNDS; i++) {
        char out = (char)('a' + i), in = 0;
        double start = now_ms();
        if (write_full(fd, &out, 1) != 1 || read_full(fd, &in, 1) != 1 || in != out) {
            fprintf(stderr, "%s: round trip %d failed\n", who, i);
            return 1;
        }
        if (now_ms() - start > STUCK_MS) {
            fprintf(stderr, "%s: round trip %d took %.0f ms\n", who, i, now_ms() - start);
            return 1;
        }
    }
    return 0;
}

static int child_status_of(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void after_fork(int optin, const struct sockaddr_storage *addr, socklen_t len)
{
    int a = connect_to(addr, len, optin), b = connect_to(addr, len, optin);
    /* the first round trips give this thread its wake socket (loopfast) */
    CHECK(delayed_rounds(a, "parent, before the fork") == 0 &&
          delayed_rounds(b, "parent, before the fork") == 0, "before the fork");
    CHECK(loopfast_fd_is_fast(a) == optin && loopfast_fd_is_fast(b) == optin, "not fast");
    pid_t kid = fork();
    CHECK(kid >= 0, "fork");
    if (kid == 0) {
        alarm(30);
        close(a);
        _exit(delayed_rounds(b, "child"));
    }
    close(b);
    int mine = delayed_rounds(a, "parent");
    int its = child_status_of(kid);
    CHECK(mine == 0 && its == 0, "after a fork (fast %d): parent %d, child %d", optin, mine, its);
    close(a);
}

static void no_descriptor_left(int optin, const struct sockaddr_storage *addr, socklen_t len)
{
    pid_t kid = fork();
    CHECK(kid >= 0, "fork");
    if (kid == 0) {
        alarm(30);
        int a = connect_to(addr, len, optin);
        char b = 'x';   /* one quick exchange: switched, no long sleep yet */
        if (write_full(a, &b, 1) != 1 || read_full(a, &b, 1) != 1)
            _exit(3);
        struct rlimit lim = { 64, 64 };
        if (setrlimit(RLIMIT_NOFILE, &lim) < 0)
            _exit(4);
        int filled = 0;
        while (dup(a) >= 0)
            filled++;
        if (errno != EMFILE || filled == 0)
            _exit(5);
        _exit(delayed_rounds(a, "with no descriptor left"));
    }
    int st = child_status_of(kid);
    CHECK(st == 0, "with no descriptor left (fast %d): the child ended %d", optin, st);
}

int main(void)
{
    alarm(90);
    struct sockaddr_storage addr[2];
    socklen_t len[2];
    int l[2];
    pid_t srv[2];
    for (int optin = 0; optin < 2; optin++) {
        srv[optin] = fork_with_listener(optin, &addr[optin], &len[optin], &l[optin]);
        if (srv[optin] == 0) {
            alarm(60);
            serve(l[optin]);
        }
        after_fork(optin, &addr[optin], len[optin]);
        no_descriptor_left(optin, &addr[optin], len[optin]);
    }
    for (int i = 0; i < 2; i++) {
        kill(srv[i], SIGKILL);
        waitpid(srv[i], NULL, 0);
    }
    printf("after a fork, parent and child each woken by their own peer; with no descriptor "
           "left, woken all the same: kernel and loopfast\n");
    return 0;
}
