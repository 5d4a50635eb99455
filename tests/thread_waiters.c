/* Threads blocked on one fast socket.  Two readers sleeping at once both
 * get their bytes (one doorbell read takes every token; the reader that
 * takes it nudges the other), and an idle reader in a threaded process
 * sleeps: it is not woken every few milliseconds to look at the ring
 * (before: every 10 ms, about 100 wake-ups a second).  Kernel TCP the same
 * way for reference. */
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "helpers.h"

#define PAIRS 100

static int server_fd;
static int got;   /* bytes the two readers took */

static int ended;
static int readers_poll;   /* each reader waits in poll() before its read() */

/* Reads one byte, then waits until the pair's other byte was read: by the
 * other reader, which must have been woken for it. */
static void *reader(void *arg)
{
    (void)arg;
    char b;
    for (;;) {
        struct pollfd p = { .fd = server_fd, .events = POLLIN };
        if (readers_poll && poll(&p, 1, -1) != 1)
            return NULL;
        ssize_t r = read(server_fd, &b, 1);
        if (r <= 0)
            return NULL;
        int g = __atomic_add_fetch(&got, 1, __ATOMIC_SEQ_CST);
        while (g % 2 && __atomic_load_n(&got, __ATOMIC_SEQ_CST) <= g &&
               !__atomic_load_n(&ended, __ATOMIC_SEQ_CST))
            usleep(200);
    }
}

/* Both readers asleep, two bytes at once: the reader that took the first
 * byte waits for the pair, so the second byte is the other reader's to
 * read; it must not sleep through the ring that brought it. */
static void two_readers(int optin, int polls)
{
    readers_poll = polls;
    int c;
    fast_pair(AF_INET, optin, &c, &server_fd);
    got = ended = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, reader, NULL) == 0, "thread");
    for (int p = 0; p < PAIRS; p++) {
        usleep(p % 10 == 0 ? 20000 : 300);   /* mostly both asleep by now */
        CHECK(write_full(c, "ab", 2) == 2, "write pair %d", p);
        for (int spins = 0; __atomic_load_n(&got, __ATOMIC_SEQ_CST) < 2 * (p + 1); spins++) {
            CHECK(spins < 5000, "%s: pair %d: %d of %d bytes read after 5 s: a reader slept through "
                  "its wake-up", optin ? "loopfast" : "kernel", p, got, 2 * (p + 1));
            usleep(1000);
        }
    }
    __atomic_store_n(&ended, 1, __ATOMIC_SEQ_CST);
    close(c);   /* EOF ends both readers */
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    close(server_fd);
}

static pid_t idle_tid;
static int idle_polls;   /* the idle reader waits in poll() first */

static void *idle_reader(void *arg)
{
    int fd = *(int *)arg;
    char b;
    __atomic_store_n(&idle_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK(!idle_polls || (poll(&p, 1, -1) == 1 && (p.revents & POLLIN)), "idle poller");
    CHECK(read(fd, &b, 1) == 1 && b == 'z', "idle reader's byte");
    return NULL;
}

/* A threaded process whose reader waits 1 s on an idle connection, in
 * read() or in poll(): a few wake-ups at most (its spin, a trim of the
 * ring), not one per 10 ms. */
static void idle_threaded_reader(int optin, int polls)
{
    idle_polls = polls;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, idle_reader, &s) == 0, "thread");
    while (!__atomic_load_n(&idle_tid, __ATOMIC_SEQ_CST))
        usleep(1000);
    usleep(200000);   /* past its spin, asleep */
    long before = voluntary_switches(getpid(), idle_tid);
    sleep(1);
    long woke = voluntary_switches(getpid(), idle_tid) - before;
    CHECK(write_full(c, "z", 1) == 1, "wake the idle reader");
    pthread_join(t, NULL);
    const char *how = polls ? "poll()" : "read()";
    printf("%s: an idle %s in a threaded process woke %ld times in 1 s\n",
           optin ? "loopfast" : "kernel", how, woke);
    CHECK(woke <= 10, "%s: the idle %s woke %ld times in 1 s", optin ? "loopfast" : "kernel", how,
          woke);
    idle_tid = 0;
    close(c);
    close(s);
}

int main(void)
{
    alarm(120);
    for (int polls = 0; polls <= 1; polls++) {
        two_readers(0, polls);
        two_readers(1, polls);
    }
    for (int polls = 0; polls <= 1; polls++) {
        idle_threaded_reader(0, polls);
        idle_threaded_reader(1, polls);
    }
    printf("ok: threads blocked on one socket\n");
    return 0;
}
