/*
 * run.h - `loopfast run`: a program started with loopfast preloaded.
 */
#ifndef LOOPFAST_RUN_H
#define LOOPFAST_RUN_H

/* argv[0] is "run".  Returns only on failure, with the exit status. */
int run_main(int argc, char **argv);

#endif
