/* transcript.h - what a test saw, step by step, as one string: the kernel
 * run's transcript and loopfast's must be equal.  One per test program. */
#ifndef LOOPFAST_TEST_TRANSCRIPT_H
#define LOOPFAST_TEST_TRANSCRIPT_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>
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
static inline void note_result(const char *what, ssize_t n)
{
    if (n < 0)
        note(" %s:%s", what, strerror(errno));
    else
        note(" %s:%zd", what, n);
}

/* poll's events as letters: I O E H R (POLLIN, POLLOUT, POLLERR, POLLHUP,
 * POLLRDHUP). */
static inline void events_text(char *out, size_t size, unsigned ev)
{
    snprintf(out, size, "%s%s%s%s%s", ev & POLLIN ? "I" : "", ev & POLLOUT ? "O" : "",
             ev & POLLERR ? "E" : "", ev & POLLHUP ? "H" : "", ev & POLLRDHUP ? "R" : "");
}

/* Prints both runs' transcripts (loopfast's only when it differs): 1 when
 * they differ. */
static inline int transcripts_differ(const char *label, const char *kernel, const char *fast)
{
    int same = !strcmp(kernel, fast);
    printf("%s %s\n  kernel  :%s\n", same ? "same" : "DIFFERENT", label, kernel);
    if (!same)
        printf("  loopfast:%s\n", fast);
    return !same;
}

/* Runs a case over kernel TCP, then over loopfast (run(optin, out, size)
 * leaves its transcript in out): 1 when the two differ. */
static inline int transcripts_of(const char *label, void (*run)(int optin, char *out, size_t size))
{
    static char kernel[sizeof transcript], fast[sizeof transcript];
    run(0, kernel, sizeof kernel);
    run(1, fast, sizeof fast);
    return transcripts_differ(label, kernel, fast);
}

/* What poll() and a new epoll set say of fd now, as " WHAT-poll:IOR
 * WHAT-epoll:IOR". */
static inline void note_readiness(const char *what, int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
    char ev[16];
    if (poll(&p, 1, 0) < 0)
        p.revents = 0, note(" poll:%s", strerror(errno));
    events_text(ev, sizeof ev, (unsigned)p.revents);
    note(" %s-poll:%s", what, ev);
    int ep = epoll_create1(0);
    struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP }, out;
    int n = ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0 ? epoll_wait(ep, &out, 1, 0) : -1;
    events_text(ev, sizeof ev, n == 1 ? out.events : 0);
    note(" %s-epoll:%s%s", what, ev, n < 0 ? "failed" : "");
    if (ep >= 0)
        close(ep);
}

/* The end of a case on a pair: both ends closed, its transcript in out. */
static inline void case_end(int a, int b, char *out, size_t size)
{
    close(a);
    close(b);
    snprintf(out, size, "%s", transcript);
}

#endif
