/* A signal caught while a call blocks on a fast socket ends the call with
 * EINTR (handler without SA_RESTART), as it does over kernel TCP, wherever in
 * loopfast's wait it lands: in the spin, between two sleeps (a slice cut
 * short to trim idle rings), or in the sleep itself.  A blocked read, write
 * (buffers full; a write that moved some bytes returns their count, as the
 * kernel's), poll and epoll_wait each take 40 signals at random moments;
 * each must come back with EINTR within 3 s (a lost one blocks for ever: the
 * connection stays idle).  Run with LOOPFAST_SPIN_US=2000, so that many
 * signals land in the spin. */
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>

#include "helpers.h"

#define SIGNALS 40

enum op { OP_READ, OP_WRITE, OP_POLL, OP_EPOLL, OPS };
static const char *op_name[OPS] = { "read", "write", "poll", "epoll_wait" };

struct shared {
    volatile int in_op;      /* the child is inside (or about to enter) the call */
    volatile int handled;    /* signals its handler ran */
};
static struct shared *sh;

static void on_usr1(int sig) { (void)sig; sh->handled++; }

static void fill(int fd)
{
    static char junk[65536];
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    /* TCP grows its buffers a while after they filled: until nothing goes */
    for (long put = 1; put > 0; usleep(50000)) {
        ssize_t n;
        for (put = 0; (n = write(fd, junk, sizeof junk)) > 0; put += n)
            ;
        CHECK(errno == EAGAIN, "filling: %s", strerror(errno));
    }
    fcntl(fd, F_SETFL, fl);
}

/* Blocks in `op` until a signal; each EINTR is reported with a byte. */
static void child(enum op op, int fd, int report)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;   /* no SA_RESTART */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll");
    if (op == OP_WRITE)
        fill(fd);
    static char b[1 << 20];   /* a write never fits whole: only EINTR or a part ends it */
    for (int i = 0; i < SIGNALS; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        sh->in_op = 1;
        long r = op == OP_READ ? read(fd, b, 4096) : op == OP_WRITE ? write(fd, b, sizeof b) :
                 op == OP_POLL ? poll(&p, 1, -1) : epoll_wait(ep, &ev, 1, -1);
        int e = errno;
        sh->in_op = 0;
        int part = op == OP_WRITE && r > 0 && r < (long)sizeof b;   /* as the kernel's, some went */
        if ((r != -1 || e != EINTR) && !part) {
            fprintf(stderr, "%s gave %ld (%s)\n", op_name[op], r, strerror(e));
            _exit(2);
        }
        if (write(report, "x", 1) != 1)
            _exit(3);
    }
    _exit(0);
}

static void run(enum op op, int optin)
{
    int c, s, rep[2];
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(pipe(rep) == 0, "pipe");
    sh->handled = sh->in_op = 0;
    pid_t pid = fork();
    if (pid == 0) {
        close(rep[0]);
        child(op, s, rep[1]);
    }
    close(rep[1]);
    int lost = 0;
    for (int i = 0; i < SIGNALS; i++) {
        while (!sh->in_op) {
            CHECK(waitpid(pid, NULL, WNOHANG) == 0, "%s (%s): the child ended at signal %d",
                  op_name[op], optin ? "loopfast" : "kernel", i);
            usleep(100);
        }
        usleep(200 + (unsigned)(rand() % 5000));   /* spin (2 ms), sleep, trims */
        int before = sh->handled;
        kill(pid, SIGUSR1);
        struct pollfd p = { .fd = rep[0], .events = POLLIN };
        char x;
        while (poll(&p, 1, 3000) == 0) {   /* lost: another signal frees the child */
            CHECK(sh->handled > before, "%s (%s): signal %d never reached the handler", op_name[op],
                  optin ? "loopfast" : "kernel", i);
            lost++;
            kill(pid, SIGUSR1);
        }
        CHECK(read(rep[0], &x, 1) == 1, "%s (%s): child died at signal %d (exit %d)", op_name[op],
              optin ? "loopfast" : "kernel", i, child_status(pid));
    }
    int st = child_status(pid);
    printf("%s (%s): %d signals, %d lost, child exit %d\n", op_name[op],
           optin ? "loopfast" : "kernel", SIGNALS, lost, st);
    CHECK(lost == 0 && st == 0, "%s (%s): a signal did not end the blocked call with EINTR",
          op_name[op], optin ? "loopfast" : "kernel");
    close(rep[0]);
    close(c);
    close(s);
}

int main(int argc, char **argv)
{
    (void)argc;
    run_with_spin_us(argv, "2000");
    alarm(200);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED, "mmap");
    srand((unsigned)time(NULL));
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int op = 0; op < OPS; op++)
        for (int optin = 0; optin < 2; optin++)
            run((enum op)op, optin);
    return 0;
}
