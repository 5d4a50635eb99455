/*
 * run.h - `loopfast run`: a program started with loopfast preloaded.
 */
#ifndef LOOPFAST_RUN_H
#define LOOPFAST_RUN_H

#include <stddef.h>

/* argv[0] is "run".  Returns only on failure, with the exit status. */
int run_main(int argc, char **argv);

/* needed.c: the sanitizer runtimes (libasan.so.8...) among PROG's DT_NEEDED
 * entries, as their names each followed by ':' (empty when none). */
void sanitizer_runtimes(const char *prog, char *out, size_t size);
int is_sanitizer_runtime(const char *path);

#endif
