/* The program's descriptor numbers are the kernel's: with fast connections
 * open, every socket(), accept() and open() returns the lowest free number,
 * as it would without loopfast (wrk indexes arrays by descriptor; select()
 * takes numbers below FD_SETSIZE only).  In one process (client and server
 * ends side by side) and with the server in another process. */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/select.h>

#include "helpers.h"

#define CONNS 24

static int lowest_free(void)
{
    int n = 0;
    while (fcntl(n, F_GETFD) >= 0)
        n++;
    return n;
}

/* Runs `call` (which makes one descriptor) and checks that it got the
 * number the kernel would have given. */
#define EXPECT_LOWEST(what, call) ({                                           \
        int expect_ = lowest_free(), got_ = (call);                            \
        CHECK(got_ == expect_, "%s returned %d, the lowest free number is %d", \
              what, got_, expect_);                                            \
        got_; })

static void exchange(int a, int b, char tag)
{
    char x;
    CHECK(write_full(a, &tag, 1) == 1 && read_full(b, &x, 1) == 1 && x == tag, "a -> b");
    CHECK(write_full(b, &tag, 1) == 1 && read_full(a, &x, 1) == 1 && x == tag, "b -> a");
}

/* Waits with select() until every client has had its byte: each number
 * must be below FD_SETSIZE. */
static void select_until_read(const int *clients, int n)
{
    int left = n, done[CONNS] = { 0 };
    while (left > 0) {
        fd_set r;
        FD_ZERO(&r);
        int max = -1;
        for (int i = 0; i < n; i++) {
            CHECK(clients[i] < FD_SETSIZE, "client %d has number %d >= FD_SETSIZE", i, clients[i]);
            if (!done[i]) {
                FD_SET(clients[i], &r);
                max = clients[i] > max ? clients[i] : max;
            }
        }
        struct timeval tv = { 10, 0 };
        int k = select(max + 1, &r, NULL, NULL, &tv);
        CHECK(k > 0, "select: %d, %d clients not readable", k, left);
        for (int i = 0; i < n; i++) {
            char x;
            if (done[i] || !FD_ISSET(clients[i], &r))
                continue;
            CHECK(read(clients[i], &x, 1) == 1 && x == 's', "read after select");
            done[i] = 1;
            left--;
        }
    }
}

static void select_all(const int *clients, const int *servers, int n)
{
    for (int i = 0; i < n; i++)
        CHECK(write_full(servers[i], "s", 1) == 1, "write");
    select_until_read(clients, n);
}

/* Fills the table up to `upto` with /dev/null, so that the program's sockets
 * come next to FD_SETSIZE: loopfast's own descriptors must not push them
 * beyond it. */
static void fill_to(int upto)
{
    while (lowest_free() < upto)
        CHECK(open("/dev/null", O_RDONLY) >= 0, "open: %s", strerror(errno));
}

static void same_process(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    int clients[CONNS], servers[CONNS], fast = 0;
    for (int i = 0; i < CONNS; i++) {
        int c = EXPECT_LOWEST("socket()", socket(AF_INET, SOCK_STREAM, 0));
        CHECK(opt_in(c) == 0, "opt in");
        CHECK(connect(c, (struct sockaddr *)&addr, len) == 0, "connect: %s", strerror(errno));
        servers[i] = EXPECT_LOWEST("accept()", accept(l, NULL, NULL));
        clients[i] = c;
        exchange(c, servers[i], (char)i);
        fast += loopfast_fd_is_fast(c) && loopfast_fd_is_fast(servers[i]);
        int f = EXPECT_LOWEST("open()", open("/dev/null", O_RDONLY));
        close(f);
    }
    CHECK(fast == CONNS, "only %d of %d connections fast", fast, CONNS);
    select_all(clients, servers, CONNS);
    for (int i = 0; i < CONNS; i++) {
        close(clients[i]);
        close(servers[i]);
    }
    close(l);
}

/* The server in a child: it checks its own accept() numbers, echoes one
 * byte per connection and keeps them open until the client is done. */
static void other_process(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    int done[2];
    CHECK(pipe(done) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(done[1]);
        int s[CONNS];
        for (int i = 0; i < CONNS; i++) {
            s[i] = EXPECT_LOWEST("the server's accept()", accept(l, NULL, NULL));
            char x;
            CHECK(read_full(s[i], &x, 1) == 1 && write_full(s[i], &x, 1) == 1, "echo");
        }
        for (int i = 0; i < CONNS; i++)   /* one byte for select() */
            CHECK(write_full(s[i], "s", 1) == 1, "write");
        char x;
        read(done[0], &x, 1);   /* the client has taken every answer by now */
        for (int i = 0; i < CONNS; i++)
            CHECK(loopfast_fd_is_fast(s[i]) == 1, "server end %d not fast", i);
        _exit(0);
    }
    close(done[0]);
    close(l);
    int clients[CONNS];
    for (int i = 0; i < CONNS; i++) {
        int c = clients[i] = EXPECT_LOWEST("socket()", socket(AF_INET, SOCK_STREAM, 0));
        CHECK(opt_in(c) == 0, "opt in");
        CHECK(connect(c, (struct sockaddr *)&addr, len) == 0, "connect: %s", strerror(errno));
        char x = (char)i;
        CHECK(write_full(c, &x, 1) == 1 && read_full(c, &x, 1) == 1 && x == (char)i, "echo");
        CHECK(loopfast_fd_is_fast(c) == 1, "client %d not fast", i);
        int f = EXPECT_LOWEST("open()", open("/dev/null", O_RDONLY));
        close(f);
    }
    select_until_read(clients, CONNS);
    close(done[1]);
    CHECK(child_status(pid) == 0, "server process failed");
    for (int i = 0; i < CONNS; i++)
        close(clients[i]);
}

int main(void)
{
    alarm(25);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 2048)
        SKIP("RLIMIT_NOFILE %llu: too small to fill up to FD_SETSIZE", (unsigned long long)rl.rlim_cur);
    same_process();
    other_process();
    /* Near FD_SETSIZE: loopfast's descriptors must not push the program's
     * sockets past it. */
    fill_to(FD_SETSIZE - 2 * CONNS - 4);
    same_process();
    other_process();
    printf("socket, accept and open numbers as the kernel's, %d connections, select below FD_SETSIZE\n",
           CONNS);
    return 0;
}
