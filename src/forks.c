/*
 * forks.c - loopfast's handlers around a fork, in one list: libc's fork()
 * runs them (one pthread_atfork registration), and so does a process made
 * by a raw clone() through syscall(), which libc's handlers never see
 * (vsftpd's session processes: clone with new namespaces and SIGCHLD, no
 * CLONE_VM).  Order as pthread_atfork's: prepare handlers last registered
 * first, the others first registered first.
 */
#include <pthread.h>

#include "internal.h"

#define FORK_HANDLERS 24

struct fork_handler {
    void (*prepare)(void), (*parent)(void), (*child)(void);
};

static struct fork_handler handlers[FORK_HANDLERS];
static unsigned count;   /* entries published (release) */
static pthread_mutex_t add_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t registered = PTHREAD_ONCE_INIT;

void forks_prepare(void)
{
    for (unsigned i = __atomic_load_n(&count, __ATOMIC_ACQUIRE); i-- > 0;)
        if (handlers[i].prepare)
            handlers[i].prepare();
}

void forks_parent(void)
{
    unsigned n = __atomic_load_n(&count, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++)
        if (handlers[i].parent)
            handlers[i].parent();
}

void forks_child(void)
{
    unsigned n = __atomic_load_n(&count, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++)
        if (handlers[i].child)
            handlers[i].child();
}

static void register_once(void)
{
    pthread_atfork(forks_prepare, forks_parent, forks_child);
}

void lf_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    pthread_once(&registered, register_once);
    pthread_mutex_lock(&add_lock);
    unsigned n = __atomic_load_n(&count, __ATOMIC_RELAXED);
    if (n < FORK_HANDLERS) {   /* a fixed set of ours: never full */
        handlers[n] = (struct fork_handler){ prepare, parent, child };
        __atomic_store_n(&count, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&add_lock);
}
