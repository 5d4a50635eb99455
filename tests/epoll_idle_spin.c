/* A spinning epoll_wait hears its idle registrations.  A server holds
 * CONNS connections in one epoll set and echoes; the client makes ROUNDS
 * round trips, each on another connection, so that every registration sits
 * idle (armed, its doorbell in the kernel's set) between its messages.  The
 * server's wait spins before it sleeps; a message to an idle registration
 * must be found by that spin, from the news bits the writer sets before it
 * rings.  Heard only at the wait's next look at the kernel (every 64 us,
 * longer than the 50 us spin), each spin ran out first: the server burnt
 * its whole spin on every request, and a round trip took 2x the kernel's.
 * So the server's CPU per round trip must stay under half its spin: found
 * by the spin, a request costs it a few microseconds (the kernel's server,
 * printed beside, a sleep and three system calls).  The bytes must come
 * back as sent either way. */
#include "helpers.h"

#define CONNS 100
#define ROUNDS 3000
#define SPIN_US 50

static void server(int l)
{
    int ep = epoll_create1(0), c[CONNS];
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    for (int i = 0; i < CONNS; i++) {
        CHECK((c[i] = accept(l, NULL, NULL)) >= 0, "accept: %s", strerror(errno));
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c[i], &ev) == 0, "epoll_ctl: %s", strerror(errno));
    }
    for (int open = CONNS; open > 0;) {
        struct epoll_event ev[16];
        int n = epoll_wait(ep, ev, 16, -1);
        CHECK(n > 0, "epoll_wait: %d %s", n, strerror(errno));
        for (int k = 0; k < n; k++) {
            int fd = c[ev[k].data.u32];
            char b[4096];
            ssize_t got = read(fd, b, sizeof b);
            if (got == 0) {
                CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0, "DEL");
                open--;
                continue;
            }
            CHECK(got > 0 && write_full(fd, b, (size_t)got) == got, "echo: %s", strerror(errno));
        }
    }
    exit(10 + loopfast_fd_is_fast(c[0]));
}

/* The server's CPU over ROUNDS scattered round trips, in ns. */
static long long scattered_rounds(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l, c[CONNS];
    pid_t srv = fork_with_listener(optin, &addr, &len, &l);
    if (srv == 0) {
        server(l);
        _exit(99);
    }
    for (int i = 0; i < CONNS; i++)
        c[i] = connect_to(&addr, len, optin);   /* the server accepts them all, then echoes */
    for (int i = 0; i < CONNS; i++) {
        client_echo_rounds(c[i], 2, "warm-up");   /* both ways on the rings */
        CHECK(loopfast_fd_is_fast(c[i]) == optin, "connection %d: fast %d", i,
              loopfast_fd_is_fast(c[i]));
    }
    usleep(20000);   /* every registration goes idle */
    long long before = cpu_ns_of(srv);
    CHECK(before >= 0, "no switches for the server");
    for (int k = 0; k < ROUNDS; k++) {
        int i = (int)(((unsigned)k * 37u) % CONNS);
        char out[8], in[8];
        memcpy(out, &k, sizeof k);
        memcpy(out + 4, &i, sizeof i);
        CHECK(write_full(c[i], out, sizeof out) == sizeof out, "write %d", k);
        CHECK(read_full(c[i], in, sizeof in) == sizeof in, "read %d: %s", k, strerror(errno));
        CHECK(memcmp(in, out, sizeof in) == 0, "round trip %d on connection %d: other bytes", k, i);
    }
    long long cpu = cpu_ns_of(srv) - before;
    for (int i = 0; i < CONNS; i++)
        close(c[i]);
    CHECK(child_status(srv) == 10 + optin, "server's end");
    return cpu;
}

int main(int argc, char **argv)
{
    (void)argc;
#ifdef UNDER_TSAN
    SKIP("under ThreadSanitizer the client takes longer than the spin to send its next request");
#endif
#ifdef UNDER_ASAN
    /* its figure is CPU time, which the instrumentation inflates: 28-37 us
     * a round trip against the 25 allowed, failing 3 runs in 5 on a quiet
     * host with this session's library and the one before it alike */
    SKIP("under AddressSanitizer the server's instrumented path costs more than half the spin");
#endif
    run_with_spin_us(argv, "50");   /* SPIN_US */
    alarm(60);
    /* Up to three tries: a moment of the host's noise (the kernel's own
     * figure 13.9 us against 5) failed a clean-clone run at 78 us, where
     * a spin that does not hear its registrations fails every try. */
    long long kernel = 0, fast = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        kernel = scattered_rounds(0), fast = scattered_rounds(1);
        printf("server's CPU per round trip, each on another of %d connections: kernel %.2f us, "
               "loopfast %.2f us\n", CONNS, kernel / 1e3 / ROUNDS, fast / 1e3 / ROUNDS);
        if (fast / ROUNDS < SPIN_US * 1000 / 2)
            break;
    }
    CHECK(fast / ROUNDS < SPIN_US * 1000 / 2,
          "the server's spin did not hear its idle registrations: %.2f us of its CPU per round "
          "trip (kernel %.2f us)", fast / 1e3 / ROUNDS, kernel / 1e3 / ROUNDS);
    return 0;
}
