/* An idle fast connection in an event loop costs no system call per wait.
 * 200 connections whose server read the clients' first bytes on TCP before
 * they switched, then idle in an epoll set: 1000 epoll_wait(0) calls.  Bug
 * fixed: each wait asked the kernel (poll) about every such connection,
 * because only a read noted that its direction had moved to the ring
 * (200 200 poll calls; now none).  Second case, the client's side: 200
 * connections whose server never touched them after accept() (its writes
 * never switched, so TCP still counts for their reads), in the client's set,
 * and a client that never sleeps (epoll_wait(0)).  Bug fixed: records left
 * the list of those looked at only before a sleep, so each call asked TCP
 * about all 200 (200 000 poll calls; bench_idle_rtt's round trip at 2000
 * idle connections went from 1.5 us to 4 ms whenever its client happened
 * never to sleep).  Third case: 8 connections whose clients sent their
 * first bytes on TCP, read the answer and went idle without another call
 * (so their writes never switched, and TCP still counts for the server's
 * reads), in the server's set.  Bug fixed: 16 records or fewer not ready
 * stayed on the list looked at until 8192 looks had passed, each look of
 * each a poll() (8 000 poll calls; now a look that had to ask TCP and
 * found nothing makes the record idle at once).  Counted with strace,
 * which runs this program again as "inner". */
#include <sys/epoll.h>
#include <sys/wait.h>

#include "helpers.h"

#define CONNS 200
#define WAITS 1000

enum { SERVER_SIDE, CLIENT_SIDE, SERVER_FEW };

static void inner(int side)
{
    int client_side = side == CLIENT_SIDE, conns = side == SERVER_FEW ? 8 : CONNS;
    struct sockaddr_storage a;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &a, &len);
    int ep = epoll_create1(0), c[CONNS], s[CONNS], fast = 0;
    for (int i = 0; i < conns; i++) {
        char b;
        c[i] = connect_to(&a, len, 1);
        s[i] = accept(l, NULL, NULL);
        CHECK(s[i] >= 0, "accept");
        if (client_side) {
            /* the client takes the answer at its first write after a read */
            CHECK(write_full(c[i], "x", 1) == 1 && read_full(s[i], &b, 1) == 1 &&
                  write_full(s[i], "y", 1) == 1 && read_full(c[i], &b, 1) == 1, "first exchange");
            CHECK(write_full(c[i], "z", 1) == 1, "write");   /* takes the answer: fast */
        } else {
            CHECK(write_full(c[i], "x", 1) == 1, "write");   /* on TCP: no answer yet */
            CHECK(read_full(s[i], &b, 1) == 1, "server read");
            CHECK(write_full(s[i], "y", 1) == 1 && read_full(c[i], &b, 1) == 1, "client read");
            /* the second exchange: the client switches, the server reads its proof */
            if (side == SERVER_SIDE)
                CHECK(write_full(c[i], "z", 1) == 1 && read_full(s[i], &b, 1) == 1, "second write");
        }
        int mine = client_side ? c[i] : s[i];
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = mine };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, mine, &ev) == 0, "epoll_ctl");
    }
    struct epoll_event out[8];
    for (int k = 0; k < WAITS; k++)
        CHECK(epoll_wait(ep, out, 8, 0) == 0, "an idle connection reported ready");
    /* SERVER_FEW: the client takes its answer now (its server end was fast) */
    for (int i = 0; i < conns; i++)
        fast += loopfast_fd_is_fast(side != SERVER_SIDE ? c[i] : s[i]);
    CHECK(fast == conns, "only %d of %d fast", fast, conns);
    exit(0);
}

/* Runs the inner program under strace; its poll() calls, checked. */
static void count_polls(int side)
{
    static const char *names[] = { "server", "client", "server-few" };
    int conns = side == SERVER_FEW ? 8 : CONNS;
    char out[] = "/tmp/loopfast-strace.XXXXXX";
    int fd = mkstemp(out);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    char self[4096];
    self_exe(self, sizeof self);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("strace", "strace", "-f", "-qq", "-c", "-e", "trace=poll", "-o", out, self,
               "inner", names[side], (char *)NULL);
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
    printf("%s: %ld poll calls for %d idle connections and %d waits\n", names[side], polls, conns,
           WAITS);
    /* a few per connection once (set-up, the look as it goes idle); one
     * per connection and wait would be conns * WAITS */
    CHECK(polls <= conns * 6, "%ld poll calls: the idle connections cost a system call per wait", polls);
}

int main(int argc, char **argv)
{
    lift_fd_cap(argv);
    if (argc > 2 && !strcmp(argv[1], "inner"))
        inner(!strcmp(argv[2], "client") ? CLIENT_SIDE : !strcmp(argv[2], "server") ? SERVER_SIDE : SERVER_FEW);
#ifdef UNDER_TSAN
    SKIP("strace of a ThreadSanitizer build takes minutes");
#endif
    if (system("strace -V >/dev/null 2>&1") != 0)
        SKIP("strace is not installed");
    alarm(60);
    count_polls(SERVER_SIDE);
    count_polls(CLIENT_SIDE);
    count_polls(SERVER_FEW);
    return 0;
}
