/*
 * bench_proc.c - the benchmark's child processes: each measurement's peer is
 * forked here under a deadline (SIGALRM), and killed and reaped on every path,
 * so a transport that hangs fails the bench with a message instead of hanging
 * it, and no child outlives the bench (PR_SET_PDEATHSIG covers a killed bench).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_proc.h"
#include "bench_util.h"

#define MAX_CHILDREN 4
#define GRACE_SECONDS 10

static pid_t children[MAX_CHILDREN];
static char hang_msg[256];
static size_t hang_len;

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

static int any_child(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0)
            return 1;
    return 0;
}

/* Async-signal-safe: kill(), waitpid() only. */
void children_kill_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] <= 0)
            continue;
        kill(children[i], SIGKILL);
        while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
            ;
        children[i] = 0;
    }
    alarm(0);
}

static void on_deadline(int sig)
{
    (void)sig;
    ssize_t n = write(STDERR_FILENO, hang_msg, hang_len);
    (void)n;
    children_kill_all();
    _exit(1);
}

static void arm_deadline(const char *what, double seconds)
{
    unsigned budget = (unsigned)(2 * seconds) + GRACE_SECONDS;
    int n = snprintf(hang_msg, sizeof hang_msg,
                     "loopfast bench: the %s did not finish within %u s and was stopped; "
                     "run it under strace -f to see where it hangs\n", what, budget);
    hang_len = n < 0 ? 0 : (size_t)n < sizeof hang_msg ? (size_t)n : sizeof hang_msg - 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_deadline;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(budget);
}

/* In the new child: no deadline, no children of its own to reap, and death
 * with the parent. */
static void become_child(pid_t parent)
{
    memset(children, 0, sizeof children);
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);   /* the parent died before prctl */
}

static void remember(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] <= 0) {
            children[i] = pid;
            return;
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    die("internal error: more than %d benchmark children at once", MAX_CHILDREN);
}

pid_t child_start(const char *what, double seconds)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("cannot fork the peer of the %s: %s; check `ulimit -u`", what, strerror(errno));
    if (pid == 0) {
        become_child(parent);
        return 0;
    }
    remember(pid);
    arm_deadline(what, seconds);
    return pid;
}

int child_wait(pid_t pid)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    forget(pid);
    if (!any_child())
        alarm(0);
    return r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

void child_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    child_wait(pid);
}
