/* An idle fast connection in an event loop costs no system call per wait.
 * 200 connections whose server read the clients' first bytes on TCP before
 * they switched, then idle in an epoll set: 1000 epoll_wait(0) calls.  Bug
 * fixed: each wait asked the kernel (poll) about every such connection,
 * because only a read noted that its direction had moved to the ring
 * (200 200 poll calls; now none).  Counted with strace, which runs this
 * program again as "inner". */
#include <sys/epoll.h>
#include <sys/wait.h>

#include "helpers.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#define CONNS 200
#define WAITS 1000

static void inner(void)
{
    struct sockaddr_storage a;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &a, &len);
    int ep = epoll_create1(0), c[CONNS], s[CONNS], fast = 0;
    for (int i = 0; i < CONNS; i++) {
        char b;
        c[i] = connect_to(&a, len, 1);
        CHECK(write_full(c[i], "x", 1) == 1, "write");   /* on TCP: no answer yet */
        s[i] = accept(l, NULL, NULL);
        CHECK(s[i] >= 0 && read_full(s[i], &b, 1) == 1, "server read");
        CHECK(write_full(s[i], "y", 1) == 1 && read_full(c[i], &b, 1) == 1, "client read");
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = s[i] };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s[i], &ev) == 0, "epoll_ctl");
    }
    struct epoll_event out[8];
    for (int k = 0; k < WAITS; k++)
        CHECK(epoll_wait(ep, out, 8, 0) == 0, "an idle connection reported ready");
    for (int i = 0; i < CONNS; i++)
        fast += loopfast_fd_is_fast(s[i]);
    CHECK(fast == CONNS, "only %d of %d fast", fast, CONNS);
    exit(0);
}

int main(int argc, char **argv)
{
    lift_fd_cap(argv);
    if (argc > 1 && !strcmp(argv[1], "inner"))
        inner();
#ifdef UNDER_TSAN
    SKIP("strace of a ThreadSanitizer build takes minutes");
#endif
    if (system("strace -V >/dev/null 2>&1") != 0)
        SKIP("strace is not installed");
    alarm(60);
    char out[] = "/tmp/loopfast-strace.XXXXXX";
    int fd = mkstemp(out);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "readlink /proc/self/exe");
    self[n] = 0;
    pid_t pid = fork();
    if (pid == 0) {
        execlp("strace", "strace", "-f", "-qq", "-c", "-e", "trace=poll", "-o", out, self,
               "inner", (char *)NULL);
        _exit(127);
    }
    CHECK(child_status(pid) == 0, "the traced program failed");
    FILE *f = fopen(out, "r");
    CHECK(f, "strace output");
    char line[256];
    long polls = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        long calls;
        double pct, secs;
        long usecs;
        if (sscanf(line, "%lf %lf %ld %ld %*s %63s", &pct, &secs, &usecs, &calls, name) == 5 &&
            !strcmp(name, "poll"))
            polls = calls;
        else if (sscanf(line, "%lf %lf %ld %ld %63s", &pct, &secs, &usecs, &calls, name) == 5 &&
                 !strcmp(name, "poll"))
            polls = calls;
    }
    fclose(f);
    unlink(out);
    printf("%ld poll calls for %d idle connections and %d waits\n", polls, CONNS, WAITS);
    CHECK(polls < CONNS * 2, "%ld poll calls: the idle connections cost a system call per wait", polls);
    return 0;
}
