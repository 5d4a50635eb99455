/*
 * signals.c - SA_RESTART for calls that block in loopfast.
 *
 * A blocking read on a kernel socket is restarted after a signal whose
 * handler has SA_RESTART; loopfast's blocking calls sleep in poll(), which
 * never is.  To tell the two cases apart we must know which signal arrived:
 * handlers installed through sigaction() or signal() are wrapped by a
 * trampoline that notes the signal in a thread-local, then calls the
 * program's handler.  sigaction() reports the program's own handler back.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

static struct sigaction app[NSIG];          /* the program's handlers */
static __thread int last_signal;

static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

/* ThreadSanitizer's start-up installs its handlers through sigaction() before
 * it can run instrumented code: these functions stay uninstrumented. */
#if defined(__clang__)
#define NO_TSAN __attribute__((disable_sanitizer_instrumentation))
#else
#define NO_TSAN __attribute__((no_sanitize("thread")))
#endif

NO_TSAN static void trampoline(int sig, siginfo_t *info, void *ctx)
{
    int e = errno;
    last_signal = sig;
    errno = e;
    struct sigaction *a = &app[sig];
    if (a->sa_flags & SA_SIGINFO)
        a->sa_sigaction(sig, info, ctx);
    else if (a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN)
        a->sa_handler(sig);
}

NO_TSAN static int wrapped(const struct sigaction *act)
{
    return act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN;
}

NO_TSAN LF_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (!real_sigaction)   /* not dlsym_next(): that one is instrumented */
        *(void **)&real_sigaction = dlsym(RTLD_NEXT, "sigaction");
    if (sig <= 0 || sig >= NSIG)
        return real_sigaction(sig, act, old);
    struct sigaction prev_app = app[sig], mine;
    const struct sigaction *use = act;
    if (act && wrapped(act)) {
        mine = *act;
        mine.sa_flags |= SA_SIGINFO;
        mine.sa_sigaction = trampoline;
        use = &mine;
    }
    int r = real_sigaction(sig, use, old);
    if (r == 0) {
        if (old && old->sa_sigaction == trampoline)
            *old = prev_app;
        if (act)
            app[sig] = *act;
    }
    return r;
}

NO_TSAN LF_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;   /* glibc's signal() has BSD semantics */
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig > 0 && sig < NSIG ? sig : SIGUSR1);
    if (sigaction(sig, &act, &old) < 0)
        return SIG_ERR;
    return old.sa_handler;
}

void signal_wait_begin(void)
{
    last_signal = 0;
}

/* After poll() said EINTR: would the kernel have restarted the call? */
int signal_restarts(void)
{
    int sig = last_signal;
    return sig > 0 && sig < NSIG && (app[sig].sa_flags & SA_RESTART);
}
