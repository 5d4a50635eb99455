/* Two threads use one fast socket at once, one sending and one receiving,
 * while the peer echoes: 64 MB arrive intact. */
#include <pthread.h>

#include "helpers.h"

#define TOTAL (64u << 20)

static int c;
static uint64_t sent_sum = FNV_INIT;

static void *sender(void *arg)
{
    (void)arg;
    static unsigned char buf[1 << 16];
    srand(99);
    for (size_t done = 0; done < TOTAL;) {
        size_t n = 1 + (size_t)rand() % sizeof buf;
        if (n > TOTAL - done)
            n = TOTAL - done;
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)(done + i * 31);
        if (write_full(c, buf, n) != (ssize_t)n)
            return (void *)1;
        sent_sum = fnv(sent_sum, buf, n);
        done += n;
    }
    return NULL;
}

int main(void)
{
    alarm(60);
    int s;
    fast_pair(AF_INET, 1, &c, &s);
    pid_t pid = fork();
    if (pid == 0) {
        close(c);   /* else our own copy keeps the connection open */
        static char buf[1 << 16];
        ssize_t n;
        while ((n = read(s, buf, sizeof buf)) > 0)
            write_full(s, buf, (size_t)n);
        _exit(0);
    }
    close(s);
    pthread_t t;
    pthread_create(&t, NULL, sender, NULL);
    static unsigned char in[1 << 16];
    uint64_t sum = FNV_INIT;
    for (size_t got = 0; got < TOTAL;) {
        ssize_t n = read(c, in, sizeof in);
        CHECK(n > 0, "read: %s", strerror(errno));
        sum = fnv(sum, in, (size_t)n);
        got += (size_t)n;
    }
    void *r;
    pthread_join(t, &r);
    CHECK(r == NULL, "sender failed");
    CHECK(sum == sent_sum, "echo corrupted");
    close(c);
    CHECK(child_status(pid) == 0, "echo child");
    return 0;
}
