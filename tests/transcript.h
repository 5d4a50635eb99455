/* transcript.h - what a test saw, step by step, as one string: the kernel
 * run's transcript and loopfast's must be equal.  One per test program. */
#ifndef LOOPFAST_TEST_TRANSCRIPT_H
#define LOOPFAST_TEST_TRANSCRIPT_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/types.h>

static char transcript[4096];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = strlen(transcript);
    vsnprintf(transcript + n, sizeof transcript - n, fmt, ap);
    va_end(ap);
}

/* A call's result: its count, or its error by name. */
static void note_result(const char *what, ssize_t n)
{
    if (n < 0)
        note(" %s:%s", what, strerror(errno));
    else
        note(" %s:%zd", what, n);
}

#endif
