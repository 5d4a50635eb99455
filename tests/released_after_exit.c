/* The pages of connections that closed are given back when nothing waits
 * in loopfast any more: a thread-per-connection server (its main thread
 * blocked in accept()) whose client process moved megabytes on four
 * connections, closed them and exited.  Closed connections wait to be
 * released until a thread waits in loopfast, and a slot's pages are kept
 * warm for its next connection until a later wait's round: neither came,
 * and the server kept 40 MB of ring pages until the next client (a
 * helper's sweep: python's threaded servers, guile).  Both ways, the
 * server's shared memory 300 ms after its client exited: the kernel's is
 * none; loopfast's must stay under a megabyte (it was 8 MiB here). */
#include "helpers.h"

#define CONNS 4
#define BYTES (2u << 20)

static void *echo_thread(void *arg)
{
    int c = (int)(intptr_t)arg;
    static __thread char buf[65536];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        if (write_full(c, buf, (size_t)n) != n)
            break;
    close(c);
    return NULL;
}

static void threaded_server(int l)
{
    for (;;) {
        int c = accept(l, NULL, NULL);
        pthread_t t;
        if (c < 0 || pthread_create(&t, NULL, echo_thread, (void *)(intptr_t)c) != 0)
            _exit(2);
        pthread_detach(t);
    }
}

/* The client process: CONNS connections, BYTES echoed on each, closed. */
static void client(const struct sockaddr_storage *addr, socklen_t len, int optin)
{
    static char buf[BYTES], back[BYTES];
    memset(buf, 'm', sizeof buf);
    for (int i = 0; i < CONNS; i++) {
        int fd = connect_to(addr, len, optin);
        client_switch(fd);
        for (size_t done = 0; done < BYTES; done += 65536)
            if (write_full(fd, buf + done, 65536) != 65536 || read_full(fd, back, 65536) != 65536)
                exit(3);
        close(fd);
    }
    exit(0);   /* (not _exit: as a program ends) */
}

static long shared_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    return proc_field(path, "RssShmem: %ld kB");
}

static long run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t server = fork_serving(optin, &addr, &len, threaded_server);
    pid_t c = fork();
    CHECK(c >= 0, "fork");
    if (c == 0)
        client(&addr, len, optin);
    CHECK(child_status(c) == 0, "client");
    sleep_ms(300);
    long kb = shared_kb(server);
    kill(server, SIGKILL);
    child_status(server);
    return kb;
}

int main(void)
{
    alarm(60);
    long kernel = run(0), fast = run(1);
    printf("server's shared memory 300 ms after its client exited: kernel %ld kB, loopfast %ld kB\n",
           kernel, fast);
    CHECK(kernel >= 0 && fast >= 0, "no RssShmem");
    CHECK(fast < 1024, "loopfast's server kept %ld kB of closed connections' ring pages", fast);
    return 0;
}
