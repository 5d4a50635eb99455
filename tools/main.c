/*
 * main.c - the `loopfast` command: its top-level help and the dispatch to
 * the run, bench and stat sub-commands.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "run.h"
#include "stat.h"

#define VERSION "0.1.0"

static void usage(void)
{
    fputs("usage: loopfast COMMAND [ARGS...]\n"
          "       loopfast --help | --version\n"
          "\n"
          "loopfast moves the payload of TCP connections between two local processes that\n"
          "both opted in onto shared memory instead of the kernel's TCP/IP stack.\n"
          "\n"
          "Commands (each takes --help):\n"
          "  run [--mode all|optin|off] [--] PROGRAM [ARGS...]\n"
          "        become PROGRAM with libloopfast.so preloaded; by default every TCP\n"
          "        socket it opens is opted in (LOOPFAST_MODE=all)\n"
          "  bench [--json] [--quick] [--sizes]\n"
          "        measure kernel TCP, AF_UNIX, loopfast and a bare shared-memory ring\n"
          "        side by side: 64 B latency and message rate, 64 KiB stream, set-up\n"
          "  stat [--json] [-w]\n"
          "        the live fast-path connections this user may see, as ss -t would,\n"
          "        with bytes, messages, wake-ups and spin hits of each end\n"
          "\n"
          "  -h, --help     print this help\n"
          "  --version      print the version\n"
          "\n"
          "Environment: LOOPFAST_MODE (optin, all, off), LOOPFAST_SPIN_US, LOOPFAST_RING_KB,\n"
          "LOOPFAST_MAX_FDS, LOOPFAST_EXCLUDE, LOOPFAST_CONFIG (see README.md); LOOPFAST_LIB,\n"
          "the path of libloopfast.so for `run`.\n"
          "\n"
          "Exit status: 0 ok, 1 runtime failure, 2 usage error; `run` exits with PROGRAM's\n"
          "status (127 when PROGRAM cannot be started).\n", stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "loopfast: no command given; see loopfast --help\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage();
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("loopfast " VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return run_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return bench_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "stat"))
        return stat_main(argc - 1, argv + 1);
    fprintf(stderr, "loopfast: unknown command %s; see loopfast --help\n", cmd);
    return 2;
}
