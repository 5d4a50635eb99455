/* Under an address-space limit (RLIMIT_AS, `ulimit -v`) loopfast's
 * mappings keep to a quarter of it.  Each fast connection maps its slot
 * (2 MiB of rings), where a kernel TCP connection maps nothing: a client
 * limited to what it used plus ROOM, with CONNS fast connections, had
 * 200 MB fewer for its own allocations, and one the kernel's run made
 * failed.  Now the connections beyond the share stay plain TCP, every byte
 * echoed, and the client can still map all its room less the share (the
 * promise: ENOMEM no earlier than without loopfast less a quarter of the
 * limit).  The same over kernel TCP is the reference: its mapping must
 * succeed too. */
#include <sys/mman.h>
#include <sys/resource.h>

#include "helpers.h"

#define CONNS 100
#define ROOM (512L << 20)
#define SLACK (16L << 20)   /* what the client's own calls may map meanwhile */

static long vm_size(void)
{
    long kb = proc_field("/proc/self/status", "VmSize: %ld kB");
    CHECK(kb > 0, "no VmSize");
    return kb << 10;
}

static void server(int l)
{
    int c[CONNS];
    for (int i = 0; i < CONNS; i++) {
        CHECK((c[i] = accept(l, NULL, NULL)) >= 0, "server: accept %d: %s", i, strerror(errno));
        server_switch(c[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        char b;
        CHECK(read(c[i], &b, 1) == 0, "server: connection %d did not end", i);
    }
    exit(0);
}

/* In a forked client: the limit, the connections, then one mapping of the
 * room the promise leaves.  Exits 0 if it was had, 2 if not; prints how many
 * connections were fast. */
static void limited_client(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    pid_t srv = fork_serving(optin, &addr, &len, server);
    long base = vm_size(), limit = base + ROOM;
    struct rlimit r = { (rlim_t)limit, (rlim_t)limit };
    CHECK(setrlimit(RLIMIT_AS, &r) == 0, "setrlimit: %s", strerror(errno));
    int c[CONNS], fast = 0;
    for (int i = 0; i < CONNS; i++) {
        c[i] = connect_to(&addr, len, optin);
        client_switch(c[i]);
        fast += loopfast_fd_is_fast(c[i]) == 1;
    }
    size_t want = (size_t)(ROOM - (optin ? limit / 4 : 0) - SLACK);
    void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("%s: %d of %d connections fast; a mapping of %ld MiB (room %ld MiB): %s\n",
           optin ? "loopfast" : "kernel", fast, CONNS, (long)(want >> 20), ROOM >> 20,
           p == MAP_FAILED ? strerror(errno) : "made");
    for (int i = 0; i < CONNS; i++)
        close(c[i]);
    CHECK(child_status(srv) == 0, "server failed");
    CHECK(!optin || fast > 0, "no connection was fast");
    exit(p == MAP_FAILED ? 2 : 0);
}

static int run(int optin)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        limited_client(optin);
    return child_status(pid);
}

int main(void)
{
    alarm(60);
    if (vm_size() > (64L << 30))
        SKIP("a sanitizer's runtime reserves more address space than any limit could hold");
    CHECK(run(0) == 0, "kernel TCP: the mapping failed");
    CHECK(run(1) == 0, "loopfast's rings took more than a quarter of the address space");
    return 0;
}
