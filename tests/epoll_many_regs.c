/* Hundreds of fast registrations in one epoll set, added, modified, deleted
 * and closed in a random order, their descriptor numbers reused by new
 * connections: every epoll_ctl answers as the kernel's (EEXIST, ENOENT) and
 * epoll_wait reports exactly the ready ones, each with its own data.  The
 * same steps run over kernel TCP and over loopfast (whose records are found
 * by descriptor in a hash table: this churns its growth, collisions and
 * deletions). */
#include <sys/epoll.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include "helpers.h"

#define PAIRS 300
#define STEPS 4000

struct pair {
    int c, s;
    unsigned gen;        /* tags a registration: a stale one is told apart */
    int in_set;
    uint32_t events;
    int pending;         /* bytes the server end has not read */
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned next_rand(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static uint64_t tag_of(const struct pair *p, int i)
{
    return (uint64_t)p->gen << 32 | (unsigned)i;
}

static int ready(const struct pair *p)
{
    return p->in_set && (((p->events & EPOLLIN) && p->pending) || (p->events & EPOLLOUT));
}

static void ctl(int ep, int op, struct pair *p, int i, uint32_t events)
{
    struct epoll_event e = { .events = events, .data.u64 = tag_of(p, i) };
    int want_err = op == EPOLL_CTL_ADD ? (p->in_set ? EEXIST : 0) : (p->in_set ? 0 : ENOENT);
    errno = 0;
    int rc = epoll_ctl(ep, op, p->s, op == EPOLL_CTL_DEL ? NULL : &e);
    CHECK(want_err ? rc < 0 && errno == want_err : rc == 0, "epoll_ctl op %d on pair %d: rc %d (%s), expected %s",
          op, i, rc, strerror(errno), want_err ? strerror(want_err) : "success");
    if (rc == 0) {
        p->in_set = op != EPOLL_CTL_DEL;
        p->events = events;
    }
}

/* The union of a few non-blocking waits must be the ready pairs, each with
 * the right events, and nothing else. */
static void check_ready(int ep, struct pair *pairs, int step, int optin)
{
    static struct epoll_event ev[PAIRS + 8];
    static char seen[PAIRS];
    int want = 0, got = 0;
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < PAIRS; i++)
        want += ready(&pairs[i]);
    for (int round = 0; round < 100 && got < want; round++) {
        int n = epoll_wait(ep, ev, PAIRS + 8, 0);
        CHECK(n >= 0, "epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            unsigned i = (unsigned)ev[k].data.u64;
            unsigned gen = (unsigned)(ev[k].data.u64 >> 32);
            CHECK(i < PAIRS && gen == pairs[i].gen && ready(&pairs[i]),
                  "%s step %d: reported pair %u gen %u, not ready (gen %u, in set %d, pending %d)", optin ? "loopfast" : "kernel", step, i,
                  gen, i < PAIRS ? pairs[i].gen : 0, i < PAIRS ? pairs[i].in_set : -1,
                  i < PAIRS ? pairs[i].pending : -1);
            int in = (pairs[i].events & EPOLLIN) && pairs[i].pending;
            CHECK(!!(ev[k].events & EPOLLIN) == in, "%s step %d: pair %u reported %#x (registered %#x), pending %d",
                  optin ? "loopfast" : "kernel", step, i, ev[k].events, pairs[i].events, pairs[i].pending);
            if (!seen[i]++)
                got++;
        }
        if (got < want)
            usleep(50);
    }
    CHECK(got == want, "%s step %d: %d of %d ready registrations reported", optin ? "loopfast" : "kernel", step, got, want);
}

/* The server end moves to a number 8 apart from its neighbours': numbers
 * that share a bucket of loopfast's table, which then probes and, on
 * deletion, moves entries back (numbers handed out in a row never collide). */
static void spread(struct pair *p, int i)
{
    int to = 600 + 8 * i;
    while (fcntl(to, F_GETFD) >= 0)
        to++;
    CHECK(dup2(p->s, to) == to, "dup2 to %d: %s", to, strerror(errno));
    close(p->s);
    p->s = to;
}

static void new_pair(struct pair *p, int i, int optin)
{
    fast_pair(AF_INET, optin, &p->c, &p->s);
    spread(p, i);
    int one = 1;   /* else Nagle holds a second byte until the first one's delayed ACK */
    CHECK(setsockopt(p->c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY");
    p->gen++;
    p->in_set = 0;
    p->events = 0;
    p->pending = 0;
}

static void step(int ep, struct pair *pairs, int i, int optin)
{
    struct pair *p = &pairs[i];
    char buf[64];
    switch (next_rand(7)) {
    case 0:
    case 1:
        ctl(ep, EPOLL_CTL_ADD, p, i, next_rand(4) ? EPOLLIN : EPOLLIN | EPOLLOUT);
        break;
    case 2:
        ctl(ep, EPOLL_CTL_MOD, p, i, next_rand(3) ? EPOLLIN : EPOLLOUT);
        break;
    case 3:
        ctl(ep, EPOLL_CTL_DEL, p, i, 0);
        break;
    case 4:
        CHECK(write_full(p->c, "x", 1) == 1, "write");
        p->pending++;
        break;
    case 5:
        if (p->pending) {
            CHECK(read_full(p->s, buf, (size_t)p->pending) == p->pending, "read");
            p->pending = 0;
        }
        break;
    default:   /* the number goes to the next connection (the kernel drops it from the set) */
        close(p->s);
        close(p->c);
        new_pair(p, i, optin);
        break;
    }
}

static void run(int optin)
{
    static struct pair pairs[PAIRS];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    for (int i = 0; i < PAIRS; i++)
        new_pair(&pairs[i], i, optin);
    for (int n = 0; n < STEPS; n++) {
        step(ep, pairs, (int)next_rand(PAIRS), optin);
        if (n % 16 == 15)
            check_ready(ep, pairs, n, optin);
    }
    check_ready(ep, pairs, STEPS, optin);
    for (int i = 0; i < PAIRS; i++) {
        close(pairs[i].c);
        close(pairs[i].s);
    }
    close(ep);
}

int main(int argc, char **argv)
{
    (void)argc;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);   /* before the re-exec: the library reads it at start */
    }
    lift_fd_cap(argv);
    alarm(240);
    run(0);
    run(1);
    printf("ok: %d registrations churned over %d steps, as over kernel TCP\n", PAIRS, STEPS);
    return 0;
}
