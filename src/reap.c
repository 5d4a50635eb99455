/*
 * reap.c - what closed connections leave behind, released when a thread is
 * about to wait anyway.
 *
 * A fast connection holds a mapping and a slot of a region; a client that
 * took an answer holds two spent unix sockets.  Releasing them costs system
 * calls that would otherwise sit between one connection's close() and the
 * next one's first reply.  They are queued instead and released before the
 * thread next blocks (accept, poll, epoll, a blocked read or write), while
 * the peer works.  The queue is bounded: when it holds more than REAP_MAX
 * items it is released at once; and a program that runs out of descriptors
 * gets them back (interpose.c).
 *
 * A lock-free stack, taken whole: a fork never inherits a held lock, and a
 * child that inherits the queue releases its own copies, which is right.
 */
#include <stdlib.h>

#include "internal.h"

#define REAP_MAX 16

struct reap_item {
    struct reap_item *next;
    struct lf_conn *conn;   /* or NULL */
    int fd;                 /* or -1 */
};

static struct reap_item *stack;
static int queued;

/* A thread that queued items and exits without waiting again releases
 * them: a thread-per-connection server's threads close and exit while its
 * main thread stays blocked in accept(), and the closed connections' slots
 * kept 40 MB of ring pages until the next client came (a helper's sweep:
 * python, guile).  A key's destructor runs at the thread's exit.  And a
 * process that exits (not killed) releases them too: a client that closes
 * its connections and exits kept its part of their slots' leases, and its
 * server, letting go last, could not punch their pages.  Either way the
 * slots kept warm are punched then: the rounds that would punch them may
 * never come. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static __thread int exit_armed LF_TLS_IE;

static void release_before_exit(void)
{
    if (__atomic_load_n(&stack, __ATOMIC_RELAXED))
        reap_now();
    link_cool_all();
}

static void at_thread_exit(void *unused)
{
    (void)unused;
    release_before_exit();
}

__attribute__((destructor)) static void at_process_exit(void)
{
    release_before_exit();
}

static void exit_key_make(void)
{
    if (pthread_key_create(&exit_key, at_thread_exit) != 0)
        exit_armed = -1;
}

static void arm_thread_exit(void)
{
    if (exit_armed)
        return;
    pthread_once(&exit_once, exit_key_make);
    if (exit_armed == 0 && pthread_setspecific(exit_key, &exit_key) == 0)
        exit_armed = 1;
}

static void release(struct lf_conn *conn, int *fd)
{
    if (conn)
        conn_free(conn);
    ownfd_close(fd);
}


static void push(struct lf_conn *conn, int fd)
{
    struct reap_item *it = malloc(sizeof *it);
    if (!it) {
        release(conn, &fd);
        return;
    }
    it->conn = conn;
    it->fd = fd;
    ownfd_moved(fd, &it->fd);
    /* The item is written whole before each attempt to publish it, and the
     * exchange compares a local copy: once published, it may be taken and
     * freed by another thread at once. */
    struct reap_item *head = __atomic_load_n(&stack, __ATOMIC_RELAXED);
    do {
        it->next = head;
        tsan_release(&stack);   /* see lf_lock: TSan may be ignoring the exchange */
    } while (!__atomic_compare_exchange_n(&stack, &head, it, 1, __ATOMIC_RELEASE,
                                          __ATOMIC_RELAXED));
    if (__atomic_add_fetch(&queued, 1, __ATOMIC_RELAXED) > REAP_MAX)
        reap_now();
    arm_thread_exit();
}

void reap_conn(struct lf_conn *c)
{
    push(c, -1);
}

void reap_fd(int fd)
{
    if (fd >= 0)
        push(NULL, fd);
}

int reap_now(void)
{
    trim_idle();   /* the same moment suits giving idle rings' pages back */
    if (!__atomic_load_n(&stack, __ATOMIC_RELAXED))
        return 0;
    struct reap_item *it = __atomic_exchange_n(&stack, NULL, __ATOMIC_ACQUIRE);
    tsan_acquire(&stack);
    int n = 0;   /* descriptors freed */
    while (it) {
        struct reap_item *next = it->next;
        n += it->fd >= 0;
        release(it->conn, &it->fd);
        free(it);
        __atomic_sub_fetch(&queued, 1, __ATOMIC_RELAXED);
        it = next;
    }
    return n;
}
