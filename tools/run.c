/*
 * run.c - `loopfast run`: replaces itself with a program that has
 * libloopfast.so preloaded and LOOPFAST_MODE chosen, so that the program's
 * exit status and signals are its own.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "run.h"

static void usage(void)
{
    fputs("usage: loopfast run [--mode all|optin|off] [--] PROGRAM [ARGS...]\n"
          "\n"
          "Becomes PROGRAM (execvp: searched in PATH) with libloopfast.so put first in\n"
          "LD_PRELOAD (entries already there are kept; sanitizer runtimes such as\n"
          "libasan.so that PROGRAM needs or LD_PRELOAD lists stay before it) and\n"
          "LOOPFAST_MODE set.  Its TCP\n"
          "connections over loopback to peers that also run loopfast then carry their\n"
          "payload over shared memory.  PROGRAM's children inherit both variables.\n"
          "\n"
          "  --mode all    every TCP socket of PROGRAM is opted in (the default)\n"
          "  --mode optin  only sockets that call loopfast_ioctl() themselves\n"
          "  --mode off    loopfast is loaded, every socket stays on kernel TCP\n"
          "  -h, --help    print this help\n"
          "The mode is --mode when given, else LOOPFAST_MODE from the environment, else\n"
          "all.  Put -- before a PROGRAM whose name begins with '-'.\n"
          "\n"
          "libloopfast.so is looked for, in this order, at: $LOOPFAST_LIB (an absolute\n"
          "path); the directory of this executable (build/ in the source tree);\n"
          "../lib beside that directory (PREFIX/bin and PREFIX/lib once installed).\n"
          "\n"
          "Exit status: PROGRAM's own (loopfast run becomes PROGRAM, so signals that\n"
          "end it are its own too); 1 libloopfast.so not found; 2 usage error;\n"
          "127 PROGRAM cannot be started.\n", stdout);
}

static int valid_mode(const char *m)
{
    return !strcmp(m, "all") || !strcmp(m, "optin") || !strcmp(m, "off");
}

/* Reads the options; -1 with *prog set to PROGRAM's index in argv, or the
 * exit status when there is nothing to run. */
static int parse(int argc, char **argv, const char **mode, int *prog)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--mode") && i + 1 < argc) {
            *mode = argv[++i];
        } else if (!strncmp(a, "--mode=", 7)) {
            *mode = a + 7;
        } else if (!strcmp(a, "--mode")) {
            fprintf(stderr, "loopfast run: --mode needs a value: all, optin or off\n");
            return 2;
        } else {
            fprintf(stderr, "loopfast run: unknown option %s; see loopfast run --help "
                    "(put -- before a program whose name begins with -)\n", a);
            return 2;
        }
    }
    if (*mode && !valid_mode(*mode)) {
        fprintf(stderr, "loopfast run: unknown mode '%s'; use --mode all, optin or off\n", *mode);
        return 2;
    }
    if (i >= argc) {
        fprintf(stderr, "loopfast run: no program given; try loopfast run -- PROGRAM [ARGS...]\n");
        return 2;
    }
    *prog = i;
    return -1;
}

/* dir/rel, made absolute and canonical into out (PATH_MAX), if readable. */
static int found(const char *dir, const char *rel, char *out)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return access(path, R_OK) == 0 && realpath(path, out) != NULL;
}

static int library_from_env(const char *env, char *out)
{
    if (env[0] != '/' || strlen(env) >= PATH_MAX || access(env, R_OK) != 0) {
        fprintf(stderr, "loopfast run: LOOPFAST_LIB=%s is not an absolute path to a readable "
                "file; set LOOPFAST_LIB=/path/to/libloopfast.so\n", env);
        return -1;
    }
    strcpy(out, env);
    return 0;
}

/* The absolute path of libloopfast.so into out (PATH_MAX), or -1 after
 * saying why not. */
static int find_library(char *out)
{
    const char *env = getenv("LOOPFAST_LIB");
    if (env && *env)
        return library_from_env(env, out);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {   /* no /proc (a chroot, a bare container): the path execve() was given */
        const char *execfn = (const char *)getauxval(AT_EXECFN);
        if (execfn && realpath(execfn, exe))
            n = (ssize_t)strlen(exe);
    }
    if (n > 0) {
        exe[n] = 0;
        const char *dir = dirname(exe);
        if (found(dir, "libloopfast.so", out) || found(dir, "../lib/libloopfast.so", out))
            return 0;
    }
    fprintf(stderr, "loopfast run: cannot find libloopfast.so; "
            "set LOOPFAST_LIB=/path/to/libloopfast.so\n");
    return -1;
}

/* Is lib already one of the entries of an LD_PRELOAD list (spaces or colons)? */
static int listed(const char *list, const char *lib)
{
    size_t len = strlen(lib);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " :");
        if (n == len && !strncmp(p, lib, len))
            return 1;
        p += n + (p[n] != 0);
    }
    return 0;
}

/* Appends the entries of an LD_PRELOAD list (spaces or colons) that are (or
 * are not) sanitizer runtimes and not yet in `v`, each followed by ':'. */
static void append_entries(char *v, const char *list, int runtimes)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " :");
        char entry[PATH_MAX];
        if (n && n < sizeof entry) {
            memcpy(entry, p, n);
            entry[n] = 0;
            if (is_sanitizer_runtime(entry) == runtimes && !listed(v, entry)) {
                strcat(v, entry);
                strcat(v, ":");
            }
        }
        p += n + (p[n] != 0);
    }
}

/* LD_PRELOAD becomes: the sanitizer runtimes the program needs or the user
 * preloads (ASan must come first), libloopfast.so, then the user's other
 * entries, in their order. */
static int set_preload(const char *lib, const char *prog)
{
    const char *old = getenv("LD_PRELOAD");
    if (!old)
        old = "";
    char runtimes[1024];
    sanitizer_runtimes(prog, runtimes, sizeof runtimes);
    size_t n = strlen(runtimes) + 2 * strlen(old) + strlen(lib) + 4;
    char *v = calloc(1, n);
    if (!v)
        return -1;
    append_entries(v, runtimes, 1);
    append_entries(v, old, 1);
    if (!listed(v, lib)) {
        strcat(v, lib);
        strcat(v, ":");
    }
    append_entries(v, old, 0);
    v[strlen(v) - 1] = 0;   /* the last colon */
    int r = setenv("LD_PRELOAD", v, 1);
    free(v);
    return r;
}

/* --mode beats LOOPFAST_MODE from the environment, which beats "all". */
static int set_mode(const char *mode)
{
    const char *env = getenv("LOOPFAST_MODE");
    if (!mode)
        mode = env && *env ? env : "all";
    return setenv("LOOPFAST_MODE", mode, 1);
}

int run_main(int argc, char **argv)
{
    const char *mode = NULL;
    int prog = 0, rc = parse(argc, argv, &mode, &prog);
    if (rc >= 0)
        return rc;
    char lib[PATH_MAX];
    if (find_library(lib) < 0)
        return 1;
    if (strpbrk(lib, " :")) {
        fprintf(stderr, "loopfast run: LD_PRELOAD cannot carry the path %s (it has a space or "
                "colon); set LOOPFAST_LIB to a copy at a path without them\n", lib);
        return 1;
    }
    if (set_preload(lib, argv[prog]) < 0 || set_mode(mode) < 0) {
        fprintf(stderr, "loopfast run: cannot set the environment: %s; free some memory "
                "and retry\n", strerror(errno));
        return 1;
    }
    execvp(argv[prog], &argv[prog]);
    fprintf(stderr, "loopfast run: %s: %s\n", argv[prog], strerror(errno));
    return 127;
}
