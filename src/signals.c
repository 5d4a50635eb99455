/*
 * signals.c - the program's signal handlers around loopfast's calls.
 *
 * Handlers installed through sigaction() or signal() are wrapped by a
 * trampoline (sigaction() reports the program's own handler back), for two
 * reasons:
 *
 * - SA_RESTART.  A blocking read on a kernel socket is restarted after a
 *   signal whose handler has SA_RESTART; loopfast's blocking calls sleep in
 *   poll(), which never is.  To tell the two cases apart the trampoline
 *   notes the signal in a thread-local.
 * - Handlers that do I/O.  read() and write() are async-signal-safe: a
 *   handler may call them on the very connection whose call it interrupted,
 *   and over the kernel each call is whole.  Ours hold locks and a ring's
 *   direction for a few instructions (internal.h, signals_hold); a handler
 *   run inside one would wait forever, or interleave its bytes with the
 *   interrupted write's.  So an asynchronous signal caught inside such a
 *   section is put back: blocked on return from the trampoline (its saved
 *   mask), queued again to this thread with its siginfo, and unblocked
 *   when the section ends, when the kernel delivers it as it would have.
 *   Not put back: the signals a fault raises (they would fault again), a
 *   handler with SA_RESETHAND (its disposition is already reset), and a
 *   process under seccomp (the system calls may be refused).
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"

__thread int lf_signal_hold LF_TLS_IE;
__thread volatile int lf_signal_held LF_TLS_IE;
/* put back, blocked until the section ends (slow path: the default TLS model,
 * so that a dlopen() of the library needs little static TLS) */
static __thread sigset_t held_set;

static struct sigaction app[NSIG];          /* the program's handlers */
/* Handlers run on this thread: all, and those without SA_RESTART. */
static __thread unsigned caught LF_TLS_IE, caught_unrestarted LF_TLS_IE;
/* Signals with a handler of the program's (bit sig - 1): blocked around a sleep. */
static uint64_t watched;

static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

/* ThreadSanitizer's start-up installs its handlers through sigaction() before
 * it can run instrumented code: these functions stay uninstrumented. */
#if defined(__clang__)
#define NO_TSAN __attribute__((disable_sanitizer_instrumentation))
#else
#define NO_TSAN __attribute__((no_sanitize("thread")))
#endif

NO_TSAN static int raised_by_fault(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP ||
           sig == SIGSYS;
}

/* Inside one of our sections: puts the signal back (see the first comment);
 * 0 when it must run now. */
NO_TSAN static int put_back(int sig, siginfo_t *info, ucontext_t *uc)
{
    /* Put back already and delivered again inside the section: the saved
     * mask was not honoured (valgrind delivers signals itself), and another
     * round would never end: it runs now. */
    if (lf_signal_hold <= 0 || !uc || !info || raised_by_fault(sig) ||
        (app[sig].sa_flags & SA_RESETHAND) || lf_confined || sigismember(&held_set, sig))
        return 0;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    /* blocked before it is queued again: with SA_NODEFER it would come back at once */
    if (pthread_sigmask(SIG_BLOCK, &one, NULL) != 0)
        return 0;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), sig, info) != 0) {
        pthread_sigmask(SIG_SETMASK, &uc->uc_sigmask, NULL);   /* as it was */
        return 0;
    }
    sigaddset(&uc->uc_sigmask, sig);   /* still blocked after the return */
    sigaddset(&held_set, sig);
    lf_signal_held = 1;
    return 1;
}

/* The section that held signals ended: the kernel delivers them now. */
NO_TSAN void signal_release_held(void)
{
    sigset_t set = held_set;
    sigemptyset(&held_set);
    lf_signal_held = 0;
    int e = errno;
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    errno = e;
}

NO_TSAN static void trampoline(int sig, siginfo_t *info, void *ctx)
{
    int e = errno;
    int later = put_back(sig, info, ctx);
    errno = e;
    if (later)
        return;
    struct sigaction *a = &app[sig];
    caught++;
    if (!(a->sa_flags & SA_RESTART))
        caught_unrestarted++;
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
        if (act) {
            app[sig] = *act;
            uint64_t bit = sig <= 64 ? 1ull << (sig - 1) : 0;
            if (wrapped(act))
                __atomic_or_fetch(&watched, bit, __ATOMIC_RELAXED);
            else
                __atomic_and_fetch(&watched, ~bit, __ATOMIC_RELAXED);
        }
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

/* ---- a blocking call and the signals caught while it waits ----
 *
 * Over the kernel, a handler that runs while a call is blocked ends it with
 * EINTR (poll and epoll_wait always; reads and writes unless SA_RESTART and
 * no socket timeout, signal(7)).  Our blocking calls spend part of their
 * wait in user space (the spin, the look between two sleeps, a trim round),
 * where a handler runs and returns into our loop: the call must notice.  So
 * a call notes the thread's counts of handlers run when it begins, and
 * looks again before each sleep.  A handler run after that look and before
 * the sleep's system call would be missed: the sleep is therefore entered
 * with the program's watched signals blocked, and the system call
 * (ppoll, epoll_pwait, pselect) given the mask of before, so that the
 * kernel delivers them inside it, where they end it with EINTR.  A program
 * with no handler of its own pays no system call for this. */
void caught_now(struct lf_caught *call)
{
    call->caught = caught;
    call->unrestarted = caught_unrestarted;
}

static int handler_ran(const struct lf_caught *call, int restartable)
{
    return restartable ? caught_unrestarted != call->unrestarted : caught != call->caught;
}

int sleep_begin(struct lf_sleep *sl, const struct lf_caught *call, int restartable,
                const sigset_t *caller_mask)
{
    uint64_t bits = __atomic_load_n(&watched, __ATOMIC_RELAXED);
    sl->blocked = 0;
    sl->mask = caller_mask;
    if (bits && !lf_confined) {
        sigset_t block;
        sigemptyset(&block);
        for (int sig = 1; sig <= 64; sig++)
            if ((bits >> (sig - 1) & 1) && !raised_by_fault(sig))
                sigaddset(&block, sig);
        if (pthread_sigmask(SIG_BLOCK, &block, &sl->old) == 0) {
            sl->blocked = 1;
            if (!caller_mask)
                sl->mask = &sl->old;
        }
    }
    if (handler_ran(call, restartable)) {
        sleep_end(sl);
        return -EINTR;
    }
    return 0;
}

void sleep_end(struct lf_sleep *sl)
{
    if (sl->blocked) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &sl->old, NULL);
        errno = e;
        sl->blocked = 0;
    }
}

void sleep_cancelled(void *sl)
{
    cancel_unwound();
    sleep_end(sl);
}

int call_handler_ran(const struct lf_caught *call, int restartable)
{
    return handler_ran(call, restartable);
}

int call_interrupted(struct lf_caught *call, int restartable)
{
    if (caught == call->caught)
        return 1;   /* a handler not installed through us: the kernel's word */
    if (handler_ran(call, restartable))
        return 1;
    call->caught = caught;   /* restarted: what comes next is judged afresh */
    return 0;
}
