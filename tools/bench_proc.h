/*
 * bench_proc.h - the benchmark's child processes: started with a deadline,
 * reaped on every path, never left behind.
 */
#ifndef LOOPFAST_BENCH_PROC_H
#define LOOPFAST_BENCH_PROC_H

#include <sys/types.h>

/* Forks the peer of one measurement called `what` (e.g. "tcp round trip")
 * that should take about `seconds`.  Returns the pid in the parent and 0 in
 * the child, which dies with the parent.  If the measurement is not over
 * (child_wait or child_kill) well after `seconds`, the bench prints that
 * `what` hangs, kills its children and exits 1. */
pid_t child_start(const char *what, double seconds);

/* Waits for the child to exit by itself; 0 when it exited with status 0. */
int child_wait(pid_t pid);

/* Kills the child and reaps it. */
void child_kill(pid_t pid);

/* Kills and reaps every live child (on fatal errors). */
void children_kill_all(void);

#endif
