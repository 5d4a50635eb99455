/* Soak: many concurrent fast connections between two processes, random
 * message sizes, blocking and non-blocking sockets mixed, both directions at
 * once, checksummed end to end.  Runs LOOPFAST_SOAK_SECONDS (default 20; `make
 * soak` runs longer) and reports bytes moved and errors, which must be 0. */
#include <fcntl.h>
#include <poll.h>
#include <time.h>

#include "helpers.h"

#define CONNS 24

struct stream {
    int fd, nonblocking;
    uint64_t seed_out, seed_in;       /* the byte generators of each direction */
    uint64_t sent, received;
};

/* Says what went wrong the first few times, for whoever reads the log. */
static void note(int *errors, const char *what, int side, int conn)
{
    if ((*errors)++ < 5)
        fprintf(stderr, "soak: %s side, connection %d: %s (%s)\n", side ? "server" : "client", conn,
                what, strerror(errno));
}

static unsigned char next_byte(uint64_t *seed)
{
    *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned char)(*seed >> 56);
}

/* Both ends generate the same sequence; each checks what it receives. */
static int pump(struct stream *s, int side, int conn, uint64_t budget, int done, int *errors)
{
    unsigned char buf[65536];
    size_t n = 1 + (size_t)rand() % sizeof buf;
    if (s->sent < budget) {
        if (n > budget - s->sent)
            n = (size_t)(budget - s->sent);
        uint64_t seed = s->seed_out;
        for (size_t i = 0; i < n; i++)
            buf[i] = next_byte(&seed);
        ssize_t w = write(s->fd, buf, n);
        if (w > 0) {
            for (ssize_t i = 0; i < w; i++)
                next_byte(&s->seed_out);
            s->sent += (uint64_t)w;
        } else if (w < 0 && errno != EAGAIN) {
            note(errors, "write failed", side, conn);
            return -1;
        }
    }
    ssize_t r = read(s->fd, buf, sizeof buf);
    if (r > 0) {
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != next_byte(&s->seed_in)) {
                note(errors, "wrong byte", side, conn);
                return -1;
            }
        s->received += (uint64_t)r;
    } else if ((r == 0 && !done) || (r < 0 && errno != EAGAIN)) {
        /* the peer may close once both are done: not an error then */
        note(errors, r == 0 ? "early EOF" : "read failed", side, conn);
        return -1;
    }
    return 0;
}

/* Both sides stop at the same moment `end` (CLOCK_MONOTONIC seconds), so
 * neither writes to a peer that has already left. */
static void run_side(int *fds, int is_server, uint64_t end, int report)
{
    struct stream st[CONNS];
    int errors = 0;
    srand(is_server ? 11 : 22);
    for (int i = 0; i < CONNS; i++) {
        st[i] = (struct stream){ .fd = fds[i], .nonblocking = i % 2 };
        st[i].seed_out = (uint64_t)i * 2 + (uint64_t)is_server;
        st[i].seed_in = (uint64_t)i * 2 + (uint64_t)!is_server;
        /* a blocking socket would stall the loop: odd ones are non-blocking,
         * even ones blocking but polled before each call */
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        if (!st[i].nonblocking)
            fcntl(fds[i], F_SETFL, 0);
    }
    struct timespec ts;
    uint64_t moved = 0, shown = 0;
    int progress = !is_server && isatty(STDERR_FILENO);   /* quiet in a pipe */
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int done = (uint64_t)ts.tv_sec >= end;
        if (progress && (uint64_t)ts.tv_sec != shown) {
            uint64_t sent = 0;
            for (int i = 0; i < CONNS; i++)
                sent += st[i].sent;
            shown = (uint64_t)ts.tv_sec;
            fprintf(stderr, "\rsoak: %llu s left, %.0f MB sent, %d errors ",
                    (unsigned long long)(end > shown ? end - shown : 0), (double)sent / 1e6, errors);
        }
        struct pollfd p[CONNS];
        for (int i = 0; i < CONNS; i++)
            p[i] = (struct pollfd){ .fd = st[i].fd, .events = POLLIN | (done ? 0 : POLLOUT) };
        if (poll(p, CONNS, 1000) < 0 && errno != EINTR)
            note(&errors, "poll failed", is_server, -1);
        for (int i = 0; i < CONNS; i++) {
            if (!p[i].revents)
                continue;
            if (!st[i].nonblocking) {
                /* blocking socket: only call what poll said would not block */
                unsigned char buf[4096];
                if (!done && (p[i].revents & POLLOUT)) {
                    size_t n = 1 + (size_t)rand() % sizeof buf;
                    uint64_t seed = st[i].seed_out;
                    for (size_t k = 0; k < n; k++)
                        buf[k] = next_byte(&seed);
                    ssize_t w = send(st[i].fd, buf, n, MSG_DONTWAIT);
                    for (ssize_t k = 0; k < w; k++)
                        next_byte(&st[i].seed_out);
                    if (w > 0)
                        st[i].sent += (uint64_t)w;
                }
                if (p[i].revents & POLLIN) {
                    ssize_t r = read(st[i].fd, buf, sizeof buf);
                    for (ssize_t k = 0; k < r; k++)
                        if (buf[k] != next_byte(&st[i].seed_in))
                            note(&errors, "wrong byte", is_server, i);
                    if (r > 0)
                        st[i].received += (uint64_t)r;
                    else if (!done)
                        note(&errors, r == 0 ? "early EOF" : "read failed", is_server, i);
                }
            } else {
                pump(&st[i], is_server, i, done ? st[i].sent : UINT64_MAX, done, &errors);
            }
        }
        if (done)
            break;
    }
    if (progress)
        fputc('\n', stderr);
    for (int i = 0; i < CONNS; i++)
        moved += st[i].sent;
    uint64_t out[2] = { moved, (uint64_t)errors };
    write(report, out, sizeof out);
}

int main(void)
{
    const char *env = getenv("LOOPFAST_SOAK_SECONDS");
    double seconds = env ? atof(env) : 20;
    alarm((unsigned)seconds + 30);
    signal(SIGPIPE, SIG_IGN);   /* a write to a peer that left is an error we count */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t end = (uint64_t)now.tv_sec + 1 + (uint64_t)seconds;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    int cl[CONNS], sv[CONNS];
    for (int i = 0; i < CONNS; i++) {
        cl[i] = connect_to(&addr, len, 1);
        sv[i] = accept(l, NULL, NULL);
    }
    int rep[2], bye[2];
    CHECK(pipe(rep) == 0 && pipe(bye) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(bye[1]);
        for (int i = 0; i < CONNS; i++)
            close(cl[i]);
        run_side(sv, 1, end, rep[1]);
        char b;
        read(bye[0], &b, 1);   /* leave only once the client is done too */
        _exit(0);
    }
    close(bye[0]);
    for (int i = 0; i < CONNS; i++)
        close(sv[i]);
    run_side(cl, 0, end, rep[1]);
    uint64_t a[2], b[2];
    CHECK(read(rep[0], a, sizeof a) == sizeof a && read(rep[0], b, sizeof b) == sizeof b, "reports");
    close(bye[1]);
    child_status(pid);
    int fast = 0;
    for (int i = 0; i < CONNS; i++)
        fast += loopfast_fd_is_fast(cl[i]) == 1;
    printf("soak: %d connections (%d fast), %.0f s, %.1f MB moved, %llu errors\n", CONNS, fast, seconds,
           (double)(a[0] + b[0]) / 1e6, (unsigned long long)(a[1] + b[1]));
    CHECK(a[1] + b[1] == 0, "errors during the soak");
    CHECK(fast == CONNS, "only %d of %d fast", fast, CONNS);
    CHECK(a[0] + b[0] > 0, "nothing moved");
    return 0;
}
