/* One thread sleeps in epoll_wait on a set with nothing of loopfast's in it
 * (empty, or a pipe) while another adds a fast connection to it, as
 * apache's event MPM does (its listener thread waits; a worker adds a
 * connection that has finished a request).  Every event returned must
 * carry data the program registered: the sleeping call, begun as the
 * kernel's alone, returned the set's new entries for loopfast's own
 * doorbell and TCP socket with loopfast's addresses as data (apache then
 * crashed).  Each round: a pair, a byte for the server end, its ADD with
 * EPOLLIN and a pointer to a record of the program's, which the waiter
 * checks, deletes and hands back.  Over kernel TCP and with both ends fast;
 * the same with epoll_pwait2. */
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include "helpers.h"

#define ROUNDS 40
#define MAGIC 0x5eed5eedu

struct item {
    unsigned magic;
    int fd;
};

static int ep, use_pwait2, done;
static int bad, good;
static struct item *handed;   /* the item the waiter took, for the adder */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static int wait_some(struct epoll_event *ev, int max)
{
    if (!use_pwait2)
        return epoll_wait(ep, ev, max, 200);
    struct timespec t = { 0, 200000000 };
    return epoll_pwait2(ep, ev, max, &t, NULL);
}

static void *waiter(void *arg)
{
    (void)arg;
    struct epoll_event ev[16];
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        int n = wait_some(ev, 16);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++)
                if (ev[j].data.u64 == ev[i].data.u64) {   /* the kernel reports each once a call */
                    fprintf(stderr, "data %p twice in one call (events %#x, %#x)\n", ev[i].data.ptr,
                            ev[j].events, ev[i].events);
                    __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
                    ev[i].data.ptr = NULL, ev[i].events = 0;
                }
        for (int i = 0; i < n; i++) {
            struct item *it = ev[i].data.ptr;
            if (!it && !ev[i].events)
                continue;   /* a repeat, counted */
            pthread_mutex_lock(&lock);
            if (!it || it->magic != MAGIC || handed) {
                bad++;
                fprintf(stderr, "event with data %p (events %#x) the program never registered\n",
                        (void *)it, ev[i].events);
            } else {
                CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, it->fd, NULL) == 0, "DEL: %s", strerror(errno));
                good++;
                handed = it;
                pthread_cond_signal(&cond);
            }
            pthread_mutex_unlock(&lock);
        }
    }
    return NULL;
}

static void run(int optin, int pwait2, int with_pipe)
{
    ep = epoll_create1(0);
    int p[2] = { -1, -1 };
    if (with_pipe) {   /* something of the kernel's, never ready */
        CHECK(pipe(p) == 0, "pipe");
        struct epoll_event pe = { .events = EPOLLIN, .data.ptr = NULL };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &pe) == 0, "ADD pipe");
    }
    use_pwait2 = pwait2;
    bad = good = 0;
    done = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, waiter, NULL) == 0, "thread");
    static struct item items[ROUNDS];   /* each round's own, kept: a late event names a dead one */
    for (int i = 0; i < ROUNDS; i++) {
        int c, s;
        fast_pair(AF_INET, optin, &c, &s);
        usleep(2000);   /* the waiter is asleep again */
        struct item *it = &items[i];
        pthread_mutex_lock(&lock);
        *it = (struct item){ MAGIC, s };
        pthread_mutex_unlock(&lock);
        CHECK(write_full(c, "x", 1) == 1, "write");
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = it };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) == 0, "ADD: %s", strerror(errno));
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&lock);
        while (handed != it && pthread_cond_timedwait(&cond, &lock, &until) == 0)
            ;
        CHECK(handed == it, "%s round %d: the server end was not reported",
              optin ? "loopfast" : "kernel", i);
        handed = NULL;
        it->magic = 0;   /* the program's record is gone: no event may name it again */
        pthread_mutex_unlock(&lock);
        close(c);
        close(s);
    }
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    fprintf(stderr, "%s%s%s: %d events for %d rounds, %d with data never registered\n",
            optin ? "loopfast" : "kernel", pwait2 ? " epoll_pwait2" : "",
            with_pipe ? " with a pipe" : "", good, ROUNDS, bad);
    CHECK(bad == 0 && good == ROUNDS, "%s: %d bad events", optin ? "loopfast" : "kernel", bad);
    if (with_pipe)
        close(p[0]), close(p[1]);
    close(ep);
}

int main(void)
{
    alarm(60);
    struct timespec zero = { 0, 0 };
    struct epoll_event probe;
    int has_pwait2 = epoll_pwait2(-1, &probe, 1, &zero, NULL) < 0 && errno != ENOSYS;
    for (int pw = 0; pw < 1 + has_pwait2; pw++)
        for (int pipe_too = 0; pipe_too < 2; pipe_too++)
            for (int optin = 0; optin < 2; optin++)
                run(optin, pw, pipe_too);
    return 0;
}
