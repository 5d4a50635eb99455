/*
 * exec.c - a fast connection survives exec().
 *
 * The new image has an empty fd table, and its peer writes to a ring, so the
 * inherited TCP descriptor alone would be useless.  Before exec, each fast
 * connection whose TCP descriptor stays open across exec is described in
 * LOOPFAST_INHERIT (descriptor, memfd, doorbells, side, ring size, and for
 * a server still waiting for its client's proof the proof's unix connection
 * and the cookie it expects), with copies that survive exec.  The library's
 * constructor in the new image maps it again, with the same checks as a
 * handshake.  An image without loopfast (a static binary, LD_PRELOAD
 * removed) cannot use such a connection: see docs/design.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define INHERIT "LOOPFAST_INHERIT"

extern char **environ;

struct export {
    char *buf;
    size_t len, cap;
    int fds[256];
    int nfds;
};

/* A copy of fd that survives exec; remembered so a failed exec closes it. */
static int keep(struct export *x, int fd)
{
    if (x->nfds >= (int)(sizeof x->fds / sizeof x->fds[0]))
        return -1;
    int copy = libc.fcntl(fd, F_DUPFD, 3);
    if (copy >= 0)
        x->fds[x->nfds++] = copy;
    return copy;
}

static void describe(struct lf_sock *s, void *arg, int fd)
{
    struct export *x = arg;
    struct lf_conn *c = s->conn;
    int fl = libc.fcntl(fd, F_GETFD);
    if (sock_kind(s) != LF_FAST || fl < 0 || (fl & FD_CLOEXEC))
        return;
    int m = keep(x, c->memfd);
    int md = keep(x, c->bell_mine[BELL_DATA]), mr = keep(x, c->bell_mine[BELL_ROOM]);
    int pd = keep(x, c->bell_peer[BELL_DATA]), pr = keep(x, c->bell_peer[BELL_ROOM]);
    /* A server whose client has not proved itself yet takes the proof's
     * connection along (docs/design.md, 4.7). */
    int proved = __atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE) != NULL;
    int u = !proved && c->proof_fd >= 0 ? keep(x, c->proof_fd) : -1;
    if (m < 0 || md < 0 || mr < 0 || pd < 0 || pr < 0)
        return;
    char item[160];
    int n = snprintf(item, sizeof item, "%s%d:%d:%d:%d:%d:%d:%d:%llu:%d:%d:%llu", x->len ? "," : "",
                     fd, m, md, mr, pd, pr, c->me, (unsigned long long)c->tx.size, proved, u,
                     (unsigned long long)c->peer_cookie);
    if (x->len + (size_t)n + 1 > x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 256;
        char *b = realloc(x->buf, cap);
        if (!b)
            return;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, item, (size_t)n + 1);
    x->len += (size_t)n;
}

/* fdtable_for_each gives socks, not numbers: walk the numbers ourselves. */
static void export_all(struct export *x)
{
    memset(x, 0, sizeof *x);
    int max = (int)sysconf(_SC_OPEN_MAX);
    for (int fd = 0; fd < max && fd < (1 << 20); fd++) {
        struct lf_sock *s = fdtable_acquire(fd);
        if (s) {
            describe(s, x, fd);
            sock_put(s);
        }
    }
}

/* envp with LOOPFAST_INHERIT replaced; NULL when nothing to pass. */
static char **with_inherit(char *const envp[], struct export *x)
{
    if (!x->len)
        return NULL;
    size_t n = 0;
    while (envp && envp[n])
        n++;
    char **e = calloc(n + 2, sizeof *e);
    char *var = malloc(strlen(INHERIT) + x->len + 2);
    if (!e || !var) {
        free(e);
        free(var);
        return NULL;
    }
    sprintf(var, "%s=%s", INHERIT, x->buf);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(envp[i], INHERIT "=", sizeof INHERIT))
            e[k++] = envp[i];
    e[k++] = var;
    e[k] = NULL;
    return e;
}

static void export_undo(struct export *x, char **env)
{
    for (int i = 0; i < x->nfds; i++)
        libc.close_own(x->fds[i]);
    if (env) {
        for (size_t i = 0; env[i]; i++)
            if (!strncmp(env[i], INHERIT "=", sizeof INHERIT))
                free(env[i]);
        free(env);
    }
    free(x->buf);
}

typedef int (*exec_fn)(const char *, char *const[], char *const[]);

static int exec_with(exec_fn real, const char *path, char *const argv[], char *const envp[])
{
    struct export x;
    export_all(&x);
    char **env = with_inherit(envp, &x);
    int r = real(path, argv, env ? env : envp);
    int e = errno;
    export_undo(&x, env);
    errno = e;
    return r;
}

LF_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    static exec_fn real;
    if (!real)
        *(void **)&real = dlsym_next("execve");
    return exec_with(real, path, argv, envp);
}

LF_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    static exec_fn real;
    if (!real)
        *(void **)&real = dlsym_next("execvpe");
    return exec_with(real, file, argv, envp);
}

LF_EXPORT int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

LF_EXPORT int execvp(const char *file, char *const argv[])
{
    return execvpe(file, argv, environ);
}

/* execl* take their arguments as a list; collect them into an argv. */
static char **list_args(const char *arg0, va_list ap, char ***envp)
{
    size_t n = 1, cap = 16;
    char **argv = malloc(cap * sizeof *argv);
    if (!argv)
        return NULL;
    argv[0] = (char *)arg0;
    for (char *a; (a = va_arg(ap, char *));) {
        if (n + 2 > cap) {
            char **b = realloc(argv, (cap *= 2) * sizeof *argv);
            if (!b)
                return free(argv), NULL;
            argv = b;
        }
        argv[n++] = a;
    }
    argv[n] = NULL;
    if (envp)
        *envp = va_arg(ap, char **);
    return argv;
}

#define EXECL_BODY(call, with_env)                        \
    va_list ap;                                           \
    va_start(ap, arg);                                    \
    char **envp = environ;                                \
    char **argv = list_args(arg, ap, with_env ? &envp : NULL); \
    va_end(ap);                                           \
    if (!argv)                                            \
        return errno = ENOMEM, -1;                        \
    int r = call;                                         \
    int e = errno;                                        \
    free(argv);                                           \
    errno = e;                                            \
    return r;

LF_EXPORT int execl(const char *path, const char *arg, ...) { EXECL_BODY(execve(path, argv, envp), 0) }
LF_EXPORT int execlp(const char *file, const char *arg, ...) { EXECL_BODY(execvpe(file, argv, envp), 0) }
LF_EXPORT int execle(const char *path, const char *arg, ...) { EXECL_BODY(execve(path, argv, envp), 1) }

/* ---- the new image ---- */

static void import_one(const char *item)
{
    int fd, f[5], me, proved, u;   /* memfd, my data and room bells, the peer's */
    unsigned long long size, cookie;
    if (sscanf(item, "%d:%d:%d:%d:%d:%d:%d:%llu:%d:%d:%llu", &fd, &f[0], &f[1], &f[2], &f[3],
               &f[4], &me, &size, &proved, &u, &cookie) != 11 ||
        (me != LF_CLIENT && me != LF_SERVER))
        return;
    if (u >= 0)
        libc.fcntl(u, F_SETFD, FD_CLOEXEC);
    for (int i = 0; i < 5; i++)
        libc.fcntl(f[i], F_SETFD, FD_CLOEXEC);
    struct lf_conn *c = shm_attach(f[0], me, size);
    struct lf_sock *s = c ? sock_new(LF_FAST) : NULL;
    if (!s) {
        if (c)
            conn_free(c);
        for (int i = c ? 1 : 0; i < 5; i++)
            libc.close_own(f[i]);
        if (u >= 0)
            libc.close_own(u);
        return;
    }
    if (me == LF_SERVER && !proved) {   /* the client's line stays zeros until its proof */
        c->peer_line = NULL;
        c->proof_fd = u;
        c->peer_cookie = cookie;
    } else if (u >= 0) {
        libc.close_own(u);
    }
    c->bell_mine[BELL_DATA] = f[1];
    c->bell_mine[BELL_ROOM] = f[2];
    c->bell_peer[BELL_DATA] = f[3];
    c->bell_peer[BELL_ROOM] = f[4];
    s->conn = c;
    fdtable_set(fd, s);
    sock_put(s);
}

void exec_import(void)
{
    const char *v = getenv(INHERIT);
    if (!v)
        return;
    char *list = strdup(v);
    unsetenv(INHERIT);
    if (!list)
        return;
    char *save, *item = strtok_r(list, ",", &save);
    for (; item; item = strtok_r(NULL, ",", &save))
        import_one(item);
    free(list);
}
