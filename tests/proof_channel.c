/* A server that has answered many connections whose clients have not
 * proved themselves yet holds no descriptor per connection beyond its TCP
 * socket: the proofs come on its region's channel (docs/design.md, 4.7),
 * not on a unix socket per answer.  The clients then prove themselves
 * (two exchanges each: the first stays on TCP) and every server end is
 * fast.  Run both ways. */
#include "helpers.h"

#define N 64
#define OURS 24   /* the spare, regions, channel, epolls...: not per connection */

struct report { int grown, fast; };

static void serve(int l, int report, void *arg)
{
    (void)arg;
    int fds[N], before = count_open_fds();
    for (int i = 0; i < N; i++)
        CHECK((fds[i] = accept(l, NULL, NULL)) >= 0, "accept %d", i);
    struct report r = { count_open_fds() - before - N, 0 };
    for (int i = 0; i < N; i++) {
        char b;
        CHECK(read_full(fds[i], &b, 1) == 1 && b == 'x' && write_full(fds[i], "y", 1) == 1 &&
              read_full(fds[i], &b, 1) == 1 && b == 'z', "connection %d: exchanges", i);
        r.fast += loopfast_fd_is_fast(fds[i]) == 1;
    }
    CHECK(write(report, &r, sizeof r) == sizeof r, "report");
}

static struct report run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), report, fds[N];
    pid_t server = fork_reporting_server(l, &report, serve, NULL);
    for (int i = 0; i < N; i++)
        CHECK((fds[i] = connect_to(&addr, len, optin)) >= 0, "connect %d", i);
    for (int i = 0; i < N; i++) {
        char b;
        CHECK(write_full(fds[i], "x", 1) == 1 && read_full(fds[i], &b, 1) == 1 && b == 'y' &&
              write_full(fds[i], "z", 1) == 1, "client %d", i);
    }
    struct report r;
    CHECK(read(report, &r, sizeof r) == sizeof r, "the server failed");
    CHECK(child_status(server) == 0, "server exit");
    for (int i = 0; i < N; i++)
        close(fds[i]);
    close(report);
    return r;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct report k = run(0), f = run(1);
    printf("%d connections answered: kernel +%d descriptors, loopfast +%d (then %d fast)\n", N,
           k.grown, f.grown, f.fast);
    CHECK(f.grown <= k.grown + OURS, "the server holds %d descriptors beyond its %d sockets",
          f.grown, N);
    CHECK(f.fast == N, "only %d of %d server ends fast", f.fast, N);
    return 0;
}
