/*
 * main.c - the `loopfast` command: dispatches to run, bench and stat.
 */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define VERSION "0.1.0"

static void usage(FILE *f)
{
    fputs("usage: loopfast COMMAND [ARGS]\n"
          "\n"
          "  run [--mode all|optin|off] -- PROGRAM [ARGS...]\n"
          "                 run PROGRAM with libloopfast.so preloaded; by default every\n"
          "                 TCP socket it opens is opted in (LOOPFAST_MODE=all)\n"
          "  bench [--json] [--quick]\n"
          "                 kernel TCP, AF_UNIX, loopfast and a bare ring, side by side\n"
          "  stat [--json]  live fast-path connections (not available yet)\n"
          "  --help, --version\n"
          "\n"
          "Environment: LOOPFAST_MODE, LOOPFAST_SPIN_US, LOOPFAST_RING_KB (see README),\n"
          "LOOPFAST_LIB (path of libloopfast.so for `run`).\n"
          "Exit status: 0 ok, 1 runtime failure, 2 usage error; `run` exits with\n"
          "PROGRAM's status (127 if it cannot be started).\n", f);
}

/* libloopfast.so: $LOOPFAST_LIB, beside this executable, or ../lib. */
static int find_library(char *out, size_t len)
{
    const char *env = getenv("LOOPFAST_LIB");
    if (env && *env) {
        if (env[0] != '/' || access(env, R_OK) != 0)
            return -1;
        snprintf(out, len, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    const char *dir = dirname(exe);
    const char *candidates[] = { "%s/libloopfast.so", "%s/../lib/libloopfast.so" };
    for (size_t i = 0; i < 2; i++) {
        snprintf(out, len, candidates[i], dir);
        if (access(out, R_OK) == 0)
            return 0;
    }
    return -1;
}

static int run_usage(void)
{
    fputs("usage: loopfast run [--mode all|optin|off] -- PROGRAM [ARGS...]\n"
          "Starts PROGRAM with libloopfast.so preloaded (inherited by its children).\n"
          "--mode beats LOOPFAST_MODE in the environment, which beats the default `all`.\n", stdout);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    const char *mode = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            return run_usage();
        } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            mode = argv[++i];
            if (strcmp(mode, "all") && strcmp(mode, "optin") && strcmp(mode, "off")) {
                fprintf(stderr, "loopfast run: --mode takes all, optin or off\n");
                return 2;
            }
        } else {
            break;   /* the program, without a -- */
        }
    }
    if (i >= argc) {
        fprintf(stderr, "loopfast run: no program given; try: loopfast run -- PROGRAM [ARGS...]\n");
        return 2;
    }
    char lib[PATH_MAX];
    if (find_library(lib, sizeof lib) < 0) {
        fprintf(stderr, "loopfast run: cannot find libloopfast.so; set LOOPFAST_LIB=/path/to/libloopfast.so\n");
        return 1;
    }
    const char *old = getenv("LD_PRELOAD");
    char preload[2 * PATH_MAX];
    snprintf(preload, sizeof preload, "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
    setenv("LD_PRELOAD", preload, 1);
    if (mode)
        setenv("LOOPFAST_MODE", mode, 1);
    else
        setenv("LOOPFAST_MODE", getenv("LOOPFAST_MODE") ? getenv("LOOPFAST_MODE") : "all", 1);
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "loopfast run: %s: %s\n", argv[i], strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        puts("loopfast " VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench"))
        return bench_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stat")) {
        fprintf(stderr, "loopfast stat: not available in this version\n");
        return 1;
    }
    fprintf(stderr, "loopfast: unknown command %s; see loopfast --help\n", argv[1]);
    return 2;
}
