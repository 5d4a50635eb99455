/* Fast connections cost their TCP socket alone (docs/design.md, 11), so a
 * program reaches the scale it reaches over kernel TCP, every connection
 * fast:
 *  - a server at RLIMIT_NOFILE 1024 accepts 1000 connections from a client
 *    process, then opens files until EMFILE;
 *  - one client and one server process hold 10 000 connections at 20 000
 *    (skipped where the hard limit is lower).
 * Every connection echoes a checksummed message twice (once while the
 * others are being opened, once when all are open), and the server then
 * opens files until EMFILE: loopfast may take a small constant of them,
 * never a number per connection.  Run both ways. */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "helpers.h"

#define MSG 64
/* loopfast's constant: per region of 952 connections its memfd, doorbells,
 * channel and verdicts (five: eleven regions at 10 000), the spare (eight),
 * wait epoll... */
#define OURS 64

struct report { int fast, files, bad; };

static void message(char *m, unsigned conn, unsigned round)
{
    for (unsigned k = 0; k < MSG; k++)
        m[k] = (char)(conn * 7 + round * 131 + k);
}

static int set_limit(rlim_t n)
{
    struct rlimit r = { n, n };
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_max < n)
        return -1;
    r.rlim_cur = n;
    return setrlimit(RLIMIT_NOFILE, &r);
}

static int echo_once(int fd)
{
    char m[MSG];
    return read_full(fd, m, MSG) == MSG && write_full(fd, m, MSG) == MSG ? 0 : -1;
}

struct server_args { int n; rlim_t limit; };

/* Accepts n connections, echoing one message on each as it comes and one
 * more on each once all are open; then counts the files it can open. */
static struct report serve(int l, int n)
{
    struct report r = { 0, 0, 0 };
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        fds[i] = accept(l, NULL, NULL);
        if (fds[i] < 0 || echo_once(fds[i]) < 0) {
            r.bad = i + 1;
            return r;
        }
    }
    for (int i = 0; i < n; i++) {
        if (echo_once(fds[i]) < 0)
            r.bad = i + 1;
        r.fast += loopfast_fd_is_fast(fds[i]) == 1;
    }
    while (open("/dev/null", O_RDONLY) >= 0)
        r.files++;
    return r;
}

/* The server process: serve() under its descriptor limit, reported. */
static void server_main(int l, int report, void *arg)
{
    const struct server_args *a = arg;
    CHECK(set_limit(a->limit) == 0, "setrlimit %llu", (unsigned long long)a->limit);
    struct report r = serve(l, a->n);
    CHECK(write(report, &r, sizeof r) == sizeof r, "report");
}

static int client(const struct sockaddr_storage *addr, socklen_t len, int n, int optin)
{
    int *fds = calloc((size_t)n, sizeof *fds), fast = 0;
    char out[MSG], in[MSG];
    for (int i = 0; i < n; i++) {
        fds[i] = connect_to(addr, len, optin);
        message(out, (unsigned)i, 0);
        CHECK(write_full(fds[i], out, MSG) == MSG && read_full(fds[i], in, MSG) == MSG &&
              memcmp(in, out, MSG) == 0, "connection %d: echo: %s", i, strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        message(out, (unsigned)i, 1);
        CHECK(write_full(fds[i], out, MSG) == MSG && read_full(fds[i], in, MSG) == MSG &&
              memcmp(in, out, MSG) == 0, "connection %d: second echo", i);
        fast += loopfast_fd_is_fast(fds[i]) == 1;
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    return fast;
}

static struct report run(int optin, int n, rlim_t server_limit, rlim_t client_limit, int *cfast)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len), report;
    struct server_args args = { n, server_limit };
    pid_t s = fork_reporting_server(l, &report, server_main, &args);
    CHECK(set_limit(client_limit) == 0, "setrlimit %llu", (unsigned long long)client_limit);
    *cfast = client(&addr, len, n, optin);
    struct report r;
    CHECK(read(report, &r, sizeof r) == sizeof r, "the server failed");
    CHECK(child_status(s) == 0, "server exit");
    close(report);
    return r;
}

static void scale(int n, rlim_t server_limit, rlim_t client_limit)
{
    int kfast, ffast;
    struct report k = run(0, n, server_limit, client_limit, &kfast);
    CHECK(!k.bad, "kernel TCP: connection %d failed", k.bad);
    struct report f = run(1, n, server_limit, client_limit, &ffast);
    printf("%d connections, server limit %llu: kernel then %d files; loopfast %d fast "
           "(client %d), then %d files\n", n, (unsigned long long)server_limit, k.files, f.fast,
           ffast, f.files);
    CHECK(!f.bad, "loopfast: connection %d failed", f.bad);
    CHECK(f.fast == n && ffast == n, "only %d (server) / %d (client) of %d fast", f.fast, ffast, n);
    CHECK(f.files >= k.files - OURS, "%d files, kernel %d: loopfast took more than %d", f.files,
          k.files, OURS);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    scale(1000, 1024, r.rlim_max < 4096 ? r.rlim_max : 4096);
    if (r.rlim_max < 20000)
        SKIP("10 000 connections need RLIMIT_NOFILE 20 000 (hard limit %llu)",
             (unsigned long long)r.rlim_max);
    scale(10000, 20000, 20000);
    return 0;
}
