/*
 * shell.c - system() and popen() hand fast connections to their shell.
 *
 * glibc's system() and popen() start /bin/sh with an internal posix_spawn
 * that runs none of our hooks, so a shell (and the command it runs) that
 * inherits a fast connection gets no LOOPFAST_INHERIT: it sees a plain TCP
 * socket, writes to TCP what its peer now reads from the ring, and those
 * bytes are lost (`printf ... >&4` from a CGI-like server).  So while this
 * process holds a fast connection that would survive exec, both are done
 * here, as POSIX describes them, through our posix_spawn (exec.c), which
 * passes the connections on; otherwise glibc's own run, untouched.
 *
 * What glibc does and these copy: system() ignores SIGINT and SIGQUIT and
 * blocks SIGCHLD while it waits (counted across threads: the first caller
 * sets, the last restores), the child gets those back and the caller's
 * mask; a shell that cannot be started gives status 127; system(NULL)
 * asks whether a shell exists.  popen() gives the child one end of a pipe
 * as its stdin or stdout ("e": close-on-exec in the caller), closes in the
 * child the streams of earlier popen() calls (glibc's too), and pclose()
 * waits for it.  Not copied: the killing of the child when the
 * calling thread is cancelled inside system().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define SHELL_PATH "/bin/sh"

/* ---- system() ---- */

static pthread_mutex_t signals_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t piped_lock = PTHREAD_MUTEX_INITIALIZER;

/* A child forked while another thread held one starts with it free: what
 * they guard is a counter and a list head, consistent at every store. */
static void locks_in_child(void)
{
    pthread_mutex_init(&signals_lock, NULL);
    pthread_mutex_init(&piped_lock, NULL);
}

__attribute__((constructor)) static void shell_init(void)
{
    lf_atfork(NULL, NULL, locks_in_child);
}

static int ignoring;                      /* system() calls between set and restore */
static struct sigaction saved_int, saved_quit;

static void ignore_interrupts(void)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    lf_lock(&signals_lock);
    if (ignoring++ == 0) {
        sigaction(SIGINT, &ign, &saved_int);
        sigaction(SIGQUIT, &ign, &saved_quit);
    }
    lf_unlock(&signals_lock);
}

static void restore_interrupts(void)
{
    lf_lock(&signals_lock);
    if (--ignoring == 0) {
        sigaction(SIGINT, &saved_int, NULL);
        sigaction(SIGQUIT, &saved_quit, NULL);
    }
    lf_unlock(&signals_lock);
}

/* The child's signals: SIGINT and SIGQUIT as the caller had them (default
 * unless it ignored them), the caller's mask. */
static int shell_attr(posix_spawnattr_t *a, const sigset_t *mask)
{
    sigset_t def;
    sigemptyset(&def);
    lf_lock(&signals_lock);
    if (saved_int.sa_handler != SIG_IGN)
        sigaddset(&def, SIGINT);
    if (saved_quit.sa_handler != SIG_IGN)
        sigaddset(&def, SIGQUIT);
    lf_unlock(&signals_lock);
    if (posix_spawnattr_init(a) != 0)
        return -1;
    posix_spawnattr_setsigdefault(a, &def);
    posix_spawnattr_setsigmask(a, mask);
    posix_spawnattr_setflags(a, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    return 0;
}

/* /bin/sh -c -- cmd through our posix_spawn: 0 or an error number. */
static int spawn_shell(pid_t *pid, const char *cmd, const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr)
{
    char *argv[] = { "sh", "-c", "--", (char *)cmd, NULL };
    return exec_spawn(pid, SHELL_PATH, fa, attr, argv, environ);
}

/* Waits for the child through signals: its status, -1 when it is not ours. */
static int wait_shell(pid_t pid)
{
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    return r == pid ? status : -1;
}

static int run_shell(const char *line)
{
    sigset_t chld, mask;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ignore_interrupts();
    sigprocmask(SIG_BLOCK, &chld, &mask);
    posix_spawnattr_t attr;
    int status = -1;
    if (shell_attr(&attr, &mask) == 0) {
        pid_t pid;
        int e = spawn_shell(&pid, line, NULL, &attr);
        posix_spawnattr_destroy(&attr);
        status = e == 0 ? wait_shell(pid) : 127 << 8;   /* as if the shell had exited with 127 */
    }
    int e = errno;
    restore_interrupts();
    sigprocmask(SIG_SETMASK, &mask, NULL);
    errno = e;
    return status;
}

LF_EXPORT int system(const char *line)
{
    static int (*real)(const char *);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "system");
    shares_bump();   /* the shell inherits what is not close-on-exec, either way */
    if (!line || !exec_has_heirs())
        return real_now(line);
    return run_shell(line);
}

/* ---- popen() and pclose() ---- */

/* popen() streams, so that pclose() knows whose child to wait for (pid 0:
 * glibc's stream, for glibc's pclose) and a later child of ours closes
 * them. */
struct piped {
    FILE *f;
    pid_t pid;
    struct piped *next;
};
static struct piped *piped;

/* "r" or "w", then optionally "e": 0 reading, 1 writing, -1 invalid. */
static int popen_mode(const char *mode, int *cloexec)
{
    if (!mode || (mode[0] != 'r' && mode[0] != 'w'))
        return -1;
    *cloexec = 0;
    for (const char *m = mode + 1; *m; m++) {
        if (*m != 'e')
            return -1;
        *cloexec = 1;
    }
    return mode[0] == 'w';
}

/* The child: its end of the pipe on stdin (writing mode) or stdout, the
 * earlier popen() streams closed. */
static int child_actions(posix_spawn_file_actions_t *fa, int end, int target)
{
    if (posix_spawn_file_actions_init(fa) != 0)
        return -1;
    int r = posix_spawn_file_actions_adddup2(fa, end, target);
    for (struct piped *p = piped; p && r == 0; p = p->next) {
        int fd = fileno(p->f);
        if (fd >= 0 && fd != target)
            r = posix_spawn_file_actions_addclose(fa, fd);
    }
    if (r != 0)
        posix_spawn_file_actions_destroy(fa);
    return r;
}

static FILE *open_shell(const char *cmd, int writing, int cloexec)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return NULL;
    int mine = writing ? p[1] : p[0], theirs = writing ? p[0] : p[1];
    if (theirs == (writing ? 0 : 1)) {
        /* already where the child wants it, but close-on-exec: a copy
         * elsewhere is dup2'ed there, which clears the flag */
        int copy = fcntl(theirs, F_DUPFD_CLOEXEC, 3);
        if (copy < 0) {
            close(p[0]);
            close(p[1]);
            return NULL;
        }
        close(theirs);
        theirs = copy;
    }
    lf_lock(&piped_lock);
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int e = child_actions(&fa, theirs, writing ? 0 : 1);
    if (e == 0) {
        e = spawn_shell(&pid, cmd, &fa, NULL);
        posix_spawn_file_actions_destroy(&fa);
    }
    FILE *f = NULL;
    struct piped *rec = e == 0 ? malloc(sizeof *rec) : NULL;
    if (rec && (f = fdopen(mine, writing ? "w" : "r"))) {
        *rec = (struct piped){ f, pid, piped };
        piped = rec;
    }
    lf_unlock(&piped_lock);
    close(theirs);
    if (!f) {
        int err = e ? e : errno;
        free(rec);
        close(mine);
        if (e == 0)   /* the child runs with no one to read or write its pipe */
            wait_shell(pid);
        errno = err;
        return NULL;
    }
    if (!cloexec)
        fcntl(mine, F_SETFD, 0);
    return f;
}

LF_EXPORT FILE *popen(const char *cmd, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "popen");
    shares_bump();
    int cloexec, writing = popen_mode(mode, &cloexec);
    if (writing >= 0 && cmd && exec_has_heirs())
        return open_shell(cmd, writing, cloexec);
    FILE *f = real_now(cmd, mode);   /* its own errors for bad arguments */
    struct piped *rec = f ? malloc(sizeof *rec) : NULL;
    if (rec) {
        /* listed too, pid 0: a later child of ours closes it, as glibc's
         * children close glibc's streams (else its reader never sees EOF) */
        lf_lock(&piped_lock);
        *rec = (struct piped){ f, 0, piped };
        piped = rec;
        lf_unlock(&piped_lock);
    }
    return f;
}

LF_EXPORT int pclose(FILE *f)
{
    static int (*real)(FILE *);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "pclose");
    lf_lock(&piped_lock);
    struct piped **pp = &piped;
    while (*pp && (*pp)->f != f)
        pp = &(*pp)->next;
    struct piped *rec = *pp;
    if (rec)
        *pp = rec->next;
    lf_unlock(&piped_lock);
    pid_t pid = rec ? rec->pid : 0;
    free(rec);
    if (!pid)
        return real_now(f);   /* glibc's own popen() stream */
    fclose(f);
    return wait_shell(pid);
}
