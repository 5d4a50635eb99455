#ifndef LOOPFAST_STAT_H
#define LOOPFAST_STAT_H
/* stat.h - `loopfast stat`. */
int stat_main(int argc, char **argv);
#endif
