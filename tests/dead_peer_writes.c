/* Slow writes to a peer that was killed.  Over kernel TCP the first write
 * after the death is taken (the dead end answers it with a reset) and the
 * second fails with EPIPE or ECONNRESET.  loopfast's short write path once
 * read the coarse clock for its TCP look only every few writes while they
 * came fast, and a writer that slowed down after a burst took up to 15
 * writes more; a writer that writes slowly, after a burst or not, with or
 * without reads between, must fail at the same write as over the kernel
 * (design 7).  Run over kernel TCP and over loopfast. */
#include <sys/wait.h>

#include "helpers.h"

enum shape { SLOW, BURST_THEN_READ, BURST_ONLY };
static const char *const shape_names[] = { "slow", "burst, then a read", "burst, writes only" };
#define BURST 1000

/* The peer: switches the connection, drains what it is sent and tells
 * `done` when it has `expect` bytes; the parent kills it. */
static void peer(const struct sockaddr_storage *addr, socklen_t len, int optin, size_t expect,
                 int reply, int done)
{
    int c = connect_to(addr, len, optin);
    char b[4096];
    if (write_full(c, "x", 1) != 1 || read_full(c, b, 1) != 1 || write_full(c, "z", 1) != 1)
        _exit(1);
    for (size_t got = 0; got < expect;) {
        ssize_t n = read(c, b, expect - got < sizeof b ? expect - got : sizeof b);
        if (n <= 0)
            _exit(1);
        got += (size_t)n;
    }
    if (reply)
        usleep(50000);   /* the writer's read waits for the reply */
    if ((reply && write_full(c, "k", 1) != 1) || write_full(done, "d", 1) != 1)
        _exit(1);
    pause();
    _exit(0);
}

/* The number of the slow write that failed after the peer's death (0: none
 * of 40 did). */
static int failing_write(int optin, enum shape shape)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), done[2];
    CHECK(pipe(done) == 0, "pipe");
    size_t burst = shape == SLOW ? 1 : BURST;
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0)
        peer(&addr, len, optin, burst * 64, shape == BURST_THEN_READ, done[1]);
    int a = accept(l, NULL, NULL);
    close(l);
    char b[64] = { 0 };
    CHECK(read_full(a, b, 1) == 1 && write_full(a, "y", 1) == 1 && read_full(a, b, 1) == 1,
          "the first exchanges");
    CHECK(!optin || loopfast_fd_is_fast(a) == 1, "%s: not fast", shape_names[shape]);
    for (size_t i = 0; i < burst; i++)
        CHECK(write_full(a, b, 64) == 64, "burst write %zu: %s", i, strerror(errno));
    if (shape == BURST_THEN_READ)
        CHECK(read_full(a, b, 1) == 1, "the peer's reply");
    CHECK(read_full(done[0], b, 1) == 1, "the peer read the burst");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    usleep(10000);
    int failed = 0;
    for (int i = 1; i <= 40 && !failed; i++) {
        ssize_t n = write(a, "w", 1);
        if (n < 0) {
            CHECK(errno == EPIPE || errno == ECONNRESET, "%s: write %d: %s", shape_names[shape], i,
                  strerror(errno));
            failed = i;
        }
        usleep(5000);   /* past the coarse clock's tick (4 ms at HZ 250) */
    }
    close(a);
    close(done[0]);
    close(done[1]);
    return failed;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(30);
    for (enum shape s = SLOW; s <= BURST_ONLY; s++) {
        int kernel = failing_write(0, s), fast = failing_write(1, s);
        printf("%-20s kernel: write %d failed; loopfast: write %d\n", shape_names[s], kernel, fast);
        CHECK(kernel > 0, "%s: no write failed over kernel TCP", shape_names[s]);
        CHECK(fast == kernel, "%s: write %d failed, the kernel's %d", shape_names[s], fast, kernel);
    }
    return 0;
}
