/*
 * exec.c - a fast connection survives exec().
 *
 * The new image has an empty fd table, and its peer writes to a ring, so the
 * inherited TCP descriptor alone would be useless.  Before exec, each fast
 * connection whose TCP descriptor stays open across exec is described in
 * LOOPFAST_INHERIT (descriptor, memfd, doorbells, the region's channel,
 * side, ring size, and for a server the answer's nonce and cookie, and the
 * key of its verdicts on its clients' proofs), with copies that survive exec.  The library's
 * constructor in the new image maps it again, with the same checks as a
 * handshake.  posix_spawn() is handled the same way (glibc's runs neither our
 * fork nor our exec), the child counted as a holder and its descriptors found
 * by the socket's inode.  An environment without LD_PRELOAD gets ours for
 * the new image (below); an image that will not load loopfast (a static
 * binary, another LD_PRELOAD) cannot use such a connection: see
 * docs/design.md, 4.4.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define INHERIT "LOOPFAST_INHERIT"

extern char **environ;

/* What an export is for: an exec of this process, a spawned child (a new
 * process, not yet a holder), or a process a message carries the
 * connection to (handoff.c: its descriptors named by their place in the
 * message, after the `base` the program sent). */
enum { FOR_EXEC, FOR_SPAWN, FOR_HANDOFF };

struct export {
    char *buf;
    size_t len, cap;
    int fds[256];
    int nfds;
    int spawn;                    /* FOR_EXEC, FOR_SPAWN or FOR_HANDOFF */
    int base;                     /* FOR_HANDOFF: the program's descriptors in the message */
    struct lf_conn *counted[64];  /* spawn: connections whose holder count we raised */
    int ncounted;
    struct lf_link *links[64];    /* regions of the connections described */
    int nlinks;
    char *preload;                /* the LD_PRELOAD with_inherit added, or NULL */
};

/* A copy of fd that survives exec (or goes in the message); remembered so
 * a failed exec closes it.  What the other side will know it by. */
static int keep(struct export *x, int fd)
{
    if (x->nfds >= (int)(sizeof x->fds / sizeof x->fds[0]))
        return -1;
    int copy = ownfd_copy(fd);   /* high: the new image's numbers are the program's */
    if (copy < 0)
        return -1;
    x->fds[x->nfds++] = copy;
    return x->spawn == FOR_HANDOFF ? x->base + x->nfds - 1 : copy;
}

/* A spawned child holds the connection as a forked one does: counted before
 * it exists, once per connection (its descriptors become one sock again). */
static int count_spawned(struct export *x, struct lf_conn *c)
{
    if (!x->spawn)
        return 1;
    for (int i = 0; i < x->ncounted; i++)
        if (x->counted[i] == c)
            return 1;
    if (x->ncounted >= (int)(sizeof x->counted / sizeof x->counted[0]))
        return 0;
    x->counted[x->ncounted++] = c;
    __atomic_add_fetch(&c->sh->side[c->me].holders, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&c->shared_end, 1, __ATOMIC_RELAXED);
    link_hold(c, 1);
    return 1;
}

/* A fast connection whose descriptor fd stays open across exec. */
static int survives_exec(struct lf_sock *s, int fd)
{
    int fl = sock_kind(s) == LF_FAST ? libc.fcntl(fd, F_GETFD) : -1;
    return fl >= 0 && !(fl & FD_CLOEXEC);
}

/* One end, known to the other side as `name`, its socket fd here: 1 when
 * described (and counted, for a new process). */
static int describe_end(struct export *x, struct lf_conn *c, int name, int fd)
{
    struct lf_link *l = c->link;
    int handed = x->spawn == FOR_HANDOFF;
    int m = keep(x, l->fd);
    int bm = keep(x, l->bell_mine), bp = keep(x, l->bell_peer);
    /* The channel: a server's clients' proofs come on it, and are checked
     * against the verdicts it shares with its other holders (4.7, under
     * the key passed first); a client sends its later proofs on it.  Not
     * to another process: it has a key of its own, so only proved server
     * ends go there, and a spawned or handed client takes no answers. */
    int ch = l->chan >= 0 && !handed ? keep(x, l->chan) : -1;
    int proved = __atomic_load_n(&c->peer_line, __ATOMIC_ACQUIRE) != NULL;
    struct stat st;
    if (m < 0 || bm < 0 || bp < 0 || (c->me == LF_SERVER && !proved && ch < 0) ||
        fstat(fd, &st) < 0 || !count_spawned(x, c))
        return 0;
    char item[240], key[33];
    int n = 0;
    if (!x->len && !handed && verdict_key_export(key))
        n = snprintf(item, sizeof item, "key=%s", key);
    n += snprintf(item + n, sizeof item - (size_t)n,
                  "%s%d:%d:%d:%d:%d:%llu:%llu:%d:%d:%d:%llu:%u:%llu:%llu", x->len || n ? "," : "", name, m, bm, bp, c->me, (unsigned long long)c->tx.size,
                  (unsigned long long)st.st_ino, x->spawn, proved, ch,
                  (unsigned long long)c->peer_cookie, c->slot, (unsigned long long)l->id,
                  (unsigned long long)c->nonce);
    if (x->len + (size_t)n + 1 > x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 256;
        char *b = realloc(x->buf, cap);
        if (!b)
            return 1;   /* counted: a failed send or exec uncounts it */
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, item, (size_t)n + 1);
    x->len += (size_t)n;
    int known = 0;
    for (int i = 0; i < x->nlinks; i++)
        known |= x->links[i] == c->link;
    if (!known && x->nlinks < (int)(sizeof x->links / sizeof x->links[0]))
        x->links[x->nlinks++] = c->link;
    return 1;
}

static void describe(struct lf_sock *s, void *arg, int fd)
{
    if (survives_exec(s, fd))
        describe_end(arg, s->conn, fd, fd);
}

/* ---- a vfork() child's own descriptors ----
 *
 * A vfork child (Python's subprocess, shells, launchers) shares our memory
 * but not our descriptor table: what it closes or duplicates before its
 * exec is its own and must not change the parent's tables (its close of a
 * fast socket told the peer the connection was closed; its dup2() of one
 * onto 0 and 1 made the parent's stdin and stdout sockets).  So there those
 * calls are the kernel's alone (interpose.c), and what a duplicated number
 * now is (a sock of ours, or NULL: nothing of ours) is noted here under the
 * child's pid, for its exec to describe.  A child may try several execs
 * (each directory of PATH), so the notes stay; a child that needs room
 * takes back those of children that exited or exec'd (the kernel clears
 * PF_FORKNOEXEC at exec).  A pid reused while its note waits would be
 * believed: that takes pid_max processes meanwhile. */
#define VFORK_NOTES 32

static struct vfork_note {
    pid_t pid;              /* the child's; 0: free */
    int fd;
    struct lf_sock *s;      /* a use of it, or NULL */
} vfork_notes[VFORK_NOTES];

int lf_vfork_child(void)
{
    return (pid_t)syscall(SYS_getpid) != __atomic_load_n(&lf_pid, __ATOMIC_RELAXED);
}

static void note_set(struct vfork_note *n, int fd, struct lf_sock *s)
{
    struct lf_sock *old = n->s;
    n->fd = fd;
    n->s = s;
    if (old)
        sock_put(old);
}

/* Is the child that wrote a note past its vfork window (gone, or exec'd)? */
static int note_stale(pid_t p)
{
    char buf[512];
    int gone;
    const char *f = proc_stat_fields(p, buf, sizeof buf, &gone);
    unsigned long flags = 0;
    /* state ppid pgrp session tty_nr tpgid flags */
    if (!f || sscanf(f, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
        return gone;
    return !(flags & 0x40);   /* PF_FORKNOEXEC */
}

/* What fd is in this vfork child, when noted: 1 and *s (a use, or NULL). */
static int vfork_noted(pid_t self, int fd, struct lf_sock **s)
{
    for (int i = 0; i < VFORK_NOTES; i++)
        if (__atomic_load_n(&vfork_notes[i].pid, __ATOMIC_ACQUIRE) == self && vfork_notes[i].fd == fd) {
            *s = vfork_notes[i].s;
            if (*s)
                __atomic_add_fetch(&(*s)->users, 1, __ATOMIC_ACQ_REL);
            return 1;
        }
    return 0;
}

void vfork_note_dup(int oldfd, int fd)
{
    pid_t self = (pid_t)syscall(SYS_getpid);
    struct lf_sock *s = NULL;
    if (!vfork_noted(self, oldfd, &s))   /* what oldfd is in this child */
        s = fdtable_acquire(oldfd);
    for (int i = 0; i < VFORK_NOTES; i++)
        if (__atomic_load_n(&vfork_notes[i].pid, __ATOMIC_ACQUIRE) == self && vfork_notes[i].fd == fd) {
            note_set(&vfork_notes[i], fd, s);
            return;
        }
    for (int i = 0; i < VFORK_NOTES; i++) {
        pid_t p = __atomic_load_n(&vfork_notes[i].pid, __ATOMIC_ACQUIRE);
        if (p && (p == self || lf_confined || !note_stale(p)))
            continue;   /* taken by a child still in its window */
        if (__atomic_compare_exchange_n(&vfork_notes[i].pid, &p, self, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            note_set(&vfork_notes[i], fd, s);
            return;
        }
    }
    if (s)
        sock_put(s);   /* no room: its exec will not describe it; the parent's tables stay right */
}

/* fdtable_for_each gives socks, not numbers: walk the numbers ourselves.
 * In a vfork child (self: its pid) its notes come first. */
static void export_all(struct export *x, int spawn, pid_t self)
{
    memset(x, 0, sizeof *x);
    x->spawn = spawn;
    int max = (int)sysconf(_SC_OPEN_MAX);
    for (int fd = 0; fd < max && fd < (1 << 20); fd++) {
        struct lf_sock *s = NULL;
        if (!self || !vfork_noted(self, fd, &s))
            s = fdtable_acquire(fd);
        if (s) {
            describe(s, x, fd);
            sock_put(s);
        }
    }
}

/* ---- loopfast in the new image ----
 * A program that builds its child's environment from scratch (mini_httpd's
 * CGIs) drops LD_PRELOAD: the new image ran without loopfast on a socket
 * whose peer writes the ring, and waited on TCP for ever (a CGI reading its
 * POST body).  An exec that passes fast connections to an environment with
 * no LD_PRELOAD therefore adds ours, and says so (PRELOAD_ADDED in
 * LOOPFAST_INHERIT): the new image takes it out again at its start, so that
 * the program sees the environment it was given.  Only from an image that
 * was given loopfast by LD_PRELOAD itself (`loopfast run`): a program that
 * links it chose where it goes, and the image it runs may carry loopfast
 * itself (the CLI, linked with its archive, crashed with a second copy
 * preloaded).  An image that will not load it (static, set-uid) is as
 * before (docs/design.md, 4.4). */
#define PRELOAD_ADDED "preload"

static char own_path[4096];
static pthread_once_t own_path_once = PTHREAD_ONCE_INIT;
static int own_preloaded;   /* this image was started with us in LD_PRELOAD */

/* Our shared object's name as the loader found it; NULL when loopfast is
 * linked into the program itself (its archive: the CLI, a static link). */
static const char *own_name(void)
{
    Dl_info info;
    return dladdr((void *)own_name, &info) && info.dli_fname && strstr(info.dli_fname, ".so")
               ? info.dli_fname : NULL;
}

/* Its absolute path, looked up at the first exec that wants it (realpath
 * asks the kernel: not at every image's start); empty when unknown. */
static void own_path_find(void)
{
    const char *name = own_name();
    if (!name || !realpath(name, own_path))
        own_path[0] = 0;
}

/* At the start, before an import takes an LD_PRELOAD we added out. */
static void preload_note(void)
{
    const char *pre = getenv("LD_PRELOAD"), *name = pre ? own_name() : NULL;
    if (!name)
        return;
    const char *base = strrchr(name, '/');
    own_preloaded = strstr(pre, base ? base + 1 : name) != NULL;
}

static int has_preload(char *const envp[])
{
    for (size_t i = 0; envp && envp[i]; i++)
        if (!strncmp(envp[i], "LD_PRELOAD=", 11))
            return 1;
    return 0;
}

/* envp with LOOPFAST_INHERIT replaced (and LD_PRELOAD added: above); NULL
 * when nothing to pass. */
static char **with_inherit(char *const envp[], struct export *x)
{
    if (!x->len)
        return NULL;
    if (own_preloaded && !has_preload(envp) && !lf_confined) {
        pthread_once(&own_path_once, own_path_find);
        if (own_path[0])
            x->preload = malloc(strlen(own_path) + sizeof "LD_PRELOAD=");
    }
    if (x->preload)
        sprintf(x->preload, "LD_PRELOAD=%s", own_path);
    size_t n = 0;
    while (envp && envp[n])
        n++;
    char **e = calloc(n + 3, sizeof *e);
    char *var = malloc(strlen(INHERIT) + x->len + sizeof "," PRELOAD_ADDED + 1);
    if (!e || !var) {
        free(e);
        free(var);
        free(x->preload);
        x->preload = NULL;
        return NULL;
    }
    sprintf(var, "%s=%s%s", INHERIT, x->buf, x->preload ? "," PRELOAD_ADDED : "");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(envp[i], INHERIT "=", sizeof INHERIT))
            e[k++] = envp[i];
    e[k++] = var;
    if (x->preload)
        e[k++] = x->preload;
    e[k] = NULL;
    return e;
}

static void export_undo(struct export *x, char **env)
{
    free(x->preload);
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

/* A region the new image takes along: one of its connections is described. */
static int region_kept(struct lf_link *l, void *arg)
{
    const struct export *x = arg;
    for (int i = 0; i < x->nlinks; i++)
        if (x->links[i] == l)
            return 1;
    return x->nlinks >= (int)(sizeof x->links / sizeof x->links[0]);   /* not known: kept */
}

/* A spawned holder that was counted (and listed as pid) but did not start. */
static void uncount(struct export *x, pid_t pid)
{
    for (int i = 0; i < x->ncounted; i++) {
        struct lf_conn *c = x->counted[i];
        conn_holder_forget(c, pid);
        __atomic_sub_fetch(&c->sh->side[c->me].holders, 1, __ATOMIC_ACQ_REL);
        link_hold(c, -1);
    }
}

/* One exec, around the real call: what it passes, and what a failed one
 * takes back.  A vfork() child (or a raw clone) runs where no fork hook
 * ran: lf_pid is still its parent's, and in a vfork child so is the
 * memory.  Its new image is another process, counted and listed as a
 * spawned one; the parent's claims on its regions stay (the parent lives
 * on). */
struct exec_state {
    struct export x;
    char **env;
    pid_t self;
    int other;
};

static char *const *exec_begin(struct exec_state *st, char *const envp[])
{
    st->self = (pid_t)syscall(SYS_getpid);
    st->other = st->self != lf_pid;
    if (st->other)
        shares_bump();   /* a vfork child: the parent's memory, where it counts */
    export_all(&st->x, st->other ? FOR_SPAWN : FOR_EXEC, st->other ? st->self : 0);
    for (int i = 0; st->other && i < st->x.ncounted; i++)
        conn_holder_note(st->x.counted[i], st->self);
    st->env = with_inherit(envp, &st->x);
    if (!st->other)
        link_before_exec(region_kept, &st->x);
    return st->env ? st->env : envp;
}

/* The exec failed: errno kept. */
static void exec_end(struct exec_state *st)
{
    int e = errno;
    if (st->other)
        uncount(&st->x, st->self);
    else
        link_exec_failed();
    export_undo(&st->x, st->env);
    errno = e;
}

static int exec_with(exec_fn real, const char *path, char *const argv[], char *const envp[])
{
    struct exec_state st;
    int r = real(path, argv, exec_begin(&st, envp));
    exec_end(&st);
    return r;
}

/* glibc's fexecve and execveat call the kernel themselves, past execve. */
LF_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    static int (*real)(int, char *const[], char *const[]);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "fexecve");
    struct exec_state st;
    int r = real_now(fd, argv, exec_begin(&st, envp));
    exec_end(&st);
    return r;
}

LF_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
                       int flags)
{
    static int (*real)(int, const char *, char *const[], char *const[], int);
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "execveat");
    struct exec_state st;
    char *const *env = exec_begin(&st, envp);
    int r = real_now ? real_now(dirfd, path, argv, env, flags)
                     : (int)syscall(SYS_execveat, dirfd, path, argv, env, flags);   /* glibc < 2.34 */
    exec_end(&st);
    return r;
}

LF_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    static exec_fn real;
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "execve");
    return exec_with(real, path, argv, envp);
}

LF_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    static exec_fn real;
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "execvpe");
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

/* ---- posix_spawn: glibc's clones and execs inside libc, past our hooks ---- */

typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);

/* As exec, with the holder counts a fork would have raised; the file actions
 * may move or close the socket, so the new image finds it by inode. */
static int spawn_with(spawn_fn real, pid_t *pid, const char *path,
                      const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                      char *const argv[], char *const envp[])
{
    struct export x;
    shares_bump();
    export_all(&x, FOR_SPAWN, 0);
    char **env = with_inherit(envp, &x);
    int r = real(pid, path, fa, attr, argv, env ? env : envp);
    for (int i = 0; r == 0 && pid && i < x.ncounted; i++)
        conn_holder_note(x.counted[i], *pid);   /* so that its exit gives its part back */
    if (r != 0)
        uncount(&x, 0);
    export_undo(&x, env);
    return r;
}

LF_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    static spawn_fn real;
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "posix_spawn");
    return spawn_with(real, pid, path, fa, attr, argv, envp);
}

LF_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    static spawn_fn real;
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "posix_spawnp");
    return spawn_with(real, pid, file, fa, attr, argv, envp);
}

/* posix_spawn through our hooks, for system() and popen() (shell.c). */
int exec_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
               const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    static spawn_fn real;
    __typeof__(real) real_now;
    *(void **)&real_now = dlsym_next_cached((void **)&real, "posix_spawn");
    return spawn_with(real_now, pid, path, fa, attr, argv, envp);
}

static __thread int heirs;

static void heir(int fd)
{
    struct lf_sock *s = heirs ? NULL : fdtable_acquire(fd);
    if (!s)
        return;
    heirs = survives_exec(s, fd);
    sock_put(s);
}

/* A fast connection whose descriptor survives exec: a child needs it passed. */
int exec_has_heirs(void)
{
    heirs = 0;
    fdtable_for_each_fd(0, ~0u, heir);
    return heirs;
}

/* ---- the new image ---- */

/* Dup'ed descriptors of one connection come as separate items, each with its
 * own copy of the region's memfd: the same file (inode), slot and side make
 * them one sock again, so that closing one of them is not the connection's
 * last close.  Connections of one region on the same side share one link
 * again; a process that held both sides of a region (it connected to its
 * own listener) held two links, each with its own doorbell to sleep on. */
struct imported {
    ino_t ino;
    uint32_t slot;
    int me;
    struct lf_sock *s;
    struct lf_link *link;
};

static struct imported *already_imported(struct imported *seen, int n, int memfd, uint32_t slot,
                                         int me, ino_t *ino, struct lf_link **link)
{
    struct stat st;
    *ino = fstat(memfd, &st) == 0 ? st.st_ino : 0;
    *link = NULL;
    for (int i = 0; i < n && *ino; i++) {
        if (seen[i].ino != *ino || seen[i].me != me)
            continue;
        *link = seen[i].link;
        if (seen[i].slot == slot)
            return &seen[i];
    }
    return NULL;
}

/* A spawned image's file actions may have moved the socket (dup2 onto 0 and
 * 1) or closed it: its descriptors are the open ones with the socket's inode. */
static int fds_of_socket(unsigned long long ino, int *fds, int max)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; d && n < max && (e = readdir(d));) {
        struct stat st;
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == dirfd(d))
            continue;
        if (fstat((int)fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == ino)
            fds[n++] = (int)fd;
    }
    if (d)
        closedir(d);
    return n;
}

/* The item's region: one this import already opened (the copy closed),
 * or opened now; a reference for the caller either way. */
static struct lf_link *import_link(struct lf_link *known, const int f[4], int me, uint64_t id,
                                   unsigned long long size, int spawned)
{
    if (known) {
        for (int i = 0; i < 4; i++)
            if (f[i] >= 0)
                libc.close_own(f[i]);
        link_get(known);
        return known;
    }
    return link_import(f, me, id, size, spawned);
}

/* One item of a description (describe_end).  f: the region's memfd, my
 * doorbell, the peer's, the channel. */
struct item {
    int fd, f[4], me, spawned, proved;
    unsigned long long size, sock_ino, cookie, id, nonce;
    unsigned slot;
};

static int parse_item(const char *text, struct item *it)
{
    return sscanf(text, "%d:%d:%d:%d:%d:%llu:%llu:%d:%d:%d:%llu:%u:%llu:%llu", &it->fd,
                  &it->f[0], &it->f[1], &it->f[2], &it->me, &it->size, &it->sock_ino,
                  &it->spawned, &it->proved, &it->f[3], &it->cookie, &it->slot, &it->id,
                  &it->nonce) == 14 &&
           (it->me == LF_CLIENT || it->me == LF_SERVER) &&
           it->spawned >= FOR_EXEC && it->spawned <= FOR_HANDOFF;
}

/* `here`: a region this process holds already (a hand-off), or NULL. */
static void import_item(struct item *it, struct imported *seen, int *nseen, int max,
                        struct lf_link *here)
{
    int fd = it->fd, *f = it->f, me = it->me, spawned = it->spawned, proved = it->proved;
    unsigned long long size = it->size, sock_ino = it->sock_ino, cookie = it->cookie,
                       id = it->id, nonce = it->nonce;
    unsigned slot = it->slot;
    for (int i = 0; i < 4; i++)
        if (f[i] >= 0)
            libc.fcntl(f[i], F_SETFD, FD_CLOEXEC);
    if (spawned && me == LF_CLIENT && f[3] >= 0) {
        libc.close_own(f[3]);   /* a spawned client takes no answers in this region */
        f[3] = -1;
    }
    int fds[16], nfds = 1;
    fds[0] = fd;
    if (spawned == FOR_SPAWN)
        nfds = fds_of_socket(sock_ino, fds, 16);
    ino_t ino;
    struct lf_link *known;
    struct imported *same = already_imported(seen, *nseen, f[0], slot, me, &ino, &known);
    if (!known)
        known = here;
    if (same) {
        for (int i = 0; i < 4; i++)
            if (f[i] >= 0)
                libc.close_own(f[i]);
        for (int i = 0; i < nfds; i++)
            fdtable_set(fds[i], same->s);
        return;
    }
    struct lf_link *l = import_link(known, f, me, id, size, spawned);   /* f is the link's */
    struct lf_conn *c = l ? shm_slot(l, slot, me, spawned ? SLOT_HOLDER : 0) : NULL;
    struct lf_sock *s = c ? sock_new(LF_FAST) : NULL;
    if (!s) {
        if (c)
            conn_free(c);
        if (l)
            link_put(l);
        return;
    }
    c->shared_end = 1;   /* the processes forked before the exec may hold it too */
    if (me == LF_SERVER) {
        c->peer_cookie = cookie;
        c->nonce = nonce;
        if (!proved)   /* the client's line stays zeros until its proof */
            c->peer_line = NULL;
        /* held before the exec: our first read lets its client take it */
        uint64_t offer = __atomic_load_n(&c->sh->offer, __ATOMIC_ACQUIRE);
        c->held = nonce && offer == (nonce << 2 | OFFER_HELD);
    }
    uint32_t *promise = &c->sh->side[me].arms_with_mb;
    if (!barrier_promise() && __atomic_load_n(promise, __ATOMIC_RELAXED)) {
        barrier_withdraw(promise);   /* this image will not pay for its peer's barrier */
        barrier_withdrawn();
    }
    s->conn = c;
    if (spawned == FOR_HANDOFF)
        conn_holder_note(c, lf_pid);   /* counted by the sender; a death of ours gives it back */
    for (int i = 0; i < nfds; i++)
        fdtable_set(fds[i], s);
    if (nfds == 0)
        conn_close(s, -1);   /* spawned without it: the holder counted for us leaves */
    else if (*nseen < max && ino)
        seen[(*nseen)++] = (struct imported){ ino, slot, me, s, l };
    link_put(l);   /* the connection holds its own reference */
    sock_put(s);
}

/* ---- a connection sent to another process (handoff.c) ---- */

struct export *exec_handoff_new(int base)
{
    struct export *x = calloc(1, sizeof *x);
    if (x) {
        x->spawn = FOR_HANDOFF;
        x->base = base;
        shares_bump();   /* its flags are the receiver's too */
    }
    return x;
}

/* The fast end at fd, the message's `place`-th descriptor: 1 described. */
int exec_handoff_add(struct export *x, int place, int fd)
{
    struct lf_sock *s = fdtable_acquire(fd);
    int yes = s && sock_kind(s) == LF_FAST && s->conn->link && describe_end(x, s->conn, place, fd);
    if (s)
        sock_put(s);
    return yes;
}

const char *exec_handoff_text(const struct export *x)
{
    return x->len ? x->buf : NULL;
}

int exec_handoff_fds(const struct export *x, const int **fds)
{
    *fds = x->fds;
    return x->nfds;
}

/* Sent: the receiver holds what was counted for it; not: taken back. */
void exec_handoff_end(struct export *x, int sent)
{
    if (!sent)
        uncount(x, 0);
    export_undo(x, NULL);
    free(x);
}

/* A receiver that holds the end already (sent back to it, or twice) keeps
 * one sock for it, and one holding another end of the same region on the
 * same side keeps one link. */
struct held {
    const struct item *it;
    struct lf_sock *s;
    struct lf_link *l;
};
static __thread struct held *held_now;

static void held_look(int fd)
{
    struct held *h = held_now;
    struct lf_sock *s = h->s ? NULL : fdtable_acquire(fd);
    if (!s)
        return;
    struct lf_conn *c = sock_kind(s) == LF_FAST ? s->conn : NULL;
    if (c && c->link && c->link->id == h->it->id && c->me == h->it->me &&
        c->link->ring_size == h->it->size) {
        if (!h->l) {
            link_get(c->link);
            h->l = c->link;
        }
        if (c->slot == h->it->slot) {
            h->s = s;   /* the reference is the caller's */
            return;
        }
    }
    sock_put(s);
}

static int import_again(struct item *it, struct lf_link **known)
{
    struct held h = { it, NULL, NULL };
    held_now = &h;
    fdtable_for_each_fd(0, ~0u, held_look);
    held_now = NULL;
    /* a client's region we hold with no connection on it now (the one sent
     * away and back was its last): a second copy of it, let go with that
     * connection, would tell its server we hold it no more, and our next
     * connection there, asked for in the first, went unanswered */
    if (!h.l && it->me == LF_CLIENT)
        h.l = link_find(it->id, it->size);
    *known = h.l;
    if (!h.s)
        return 0;
    for (int i = 0; i < 4; i++)
        if (it->f[i] >= 0)
            libc.close_own(it->f[i]);
    struct lf_conn *c = h.s->conn;
    __atomic_sub_fetch(&c->sh->side[c->me].holders, 1, __ATOMIC_ACQ_REL);   /* counted for us */
    link_give_back(c);
    fdtable_set(it->fd, h.s);
    sock_put(h.s);
    if (h.l)
        link_put(h.l);
    *known = NULL;
    return 1;
}

/* text: the sender's items, each descriptor named by its place in fds
 * (the program's first, then ours from place `nprog`: only ends whose
 * socket is one of the first `given` are imported); the places of ours
 * that an import took (or closed) are set in `taken`. */
void exec_handoff_import(char *text, const int *fds, int n, int nprog, int given,
                         unsigned char *taken)
{
    struct imported seen[8];
    int nseen = 0;
    char *save, *one = strtok_r(text, ",", &save);
    for (; one; one = strtok_r(NULL, ",", &save)) {
        struct item it;
        struct stat st;
        int ok = parse_item(one, &it) && it.spawned == FOR_HANDOFF && it.fd >= 0 &&
                 it.fd < given && given <= nprog && (it.me == LF_CLIENT || it.proved) &&
                 it.f[3] < 0;
        for (int i = 0; ok && i < 3; i++)
            ok = it.f[i] >= nprog && it.f[i] < n - 1 && !taken[it.f[i]];
        if (!ok)
            continue;
        for (int i = 0; i < 3; i++) {
            taken[it.f[i]] = 1;
            it.f[i] = fds[it.f[i]];
        }
        it.fd = fds[it.fd];
        if (fstat(it.fd, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_ino != it.sock_ino) {
            for (int i = 0; i < 3; i++)
                libc.close_own(it.f[i]);
            continue;
        }
        struct lf_link *known;
        if (!import_again(&it, &known)) {
            import_item(&it, seen, &nseen, 8, known);
            if (known)
                link_put(known);
        }
    }
}

static void import_one(const char *text, struct imported *seen, int *nseen, int max)
{
    struct item it;
    if (parse_item(text, &it) && it.spawned != FOR_HANDOFF)
        import_item(&it, seen, nseen, max, NULL);
}

void exec_import(void)
{
    preload_note();
    const char *v = getenv(INHERIT);
    if (!v)
        return;
    char *list = strdup(v);
    unsetenv(INHERIT);
    if (!list)
        return;
    struct imported seen[64];
    int nseen = 0;
    char *save, *item = strtok_r(list, ",", &save);
    for (; item; item = strtok_r(NULL, ",", &save))
        if (!strncmp(item, "key=", 4))
            verdict_key_import(item + 4);   /* first: the verdicts of the items below */
        else if (!strcmp(item, PRELOAD_ADDED))
            unsetenv("LD_PRELOAD");         /* ours, added at the exec */
        else
            import_one(item, seen, &nseen, 64);
    free(list);
    pending_on_stdin(STDIN_FILENO);   /* an inetd's service: stdio may read it past us */
    stdio_stdin_through_us();         /* unless it cannot be held: then stdio reads through us */
    for (int fd = STDOUT_FILENO; fd <= STDERR_FILENO; fd++) {
        struct lf_sock *s = fdtable_acquire(fd);
        if (s) {
            sock_tx_back(s);   /* stdio may write it past us */
            sock_put(s);
        }
    }
}
