/* A fresh connection's first lap, and a burst after its rings were
 * trimmed, take no page fault per page of ring: each process maps the pages
 * ahead of its copies in one madvise(MADV_POPULATE_*) call (ring.c), where
 * a fault costs 14 us (writer) and 8 us (reader) on a virtual machine that
 * traps them, and 64 KiB after an idle second took 2-3x the kernel's time.
 * The writer (this process) sends BYTES on a new connection to a new
 * server process; each side counts the minor faults its copies take over
 * the transfer (a software perf event: not those madvise takes for it).
 * Over kernel TCP both stay near 0; with loopfast each must stay within
 * SLACK of that, against BYTES / 4096 = 64 before.  Then the same
 * after the connection sat idle long enough for its rings to be trimmed. */
#include <linux/perf_event.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "helpers.h"

#define BYTES (256 << 10)
#define SLACK 16   /* AddressSanitizer's shadow of 256 KiB: 8 pages */
#define IDLE_MS 1500   /* trim.c: rounds 400 ms apart, a ring idle two rounds is trimmed */

/* The page faults this process took in its own instructions: the
 * kernel's software event leaves out those taken on its behalf (madvise's
 * populating), which getrusage counts too. */
static int fault_counter = -1;

static long minor_faults(void)
{
    if (fault_counter < 0) {
        struct perf_event_attr a = { .type = PERF_TYPE_SOFTWARE, .size = sizeof a,
                                     .config = PERF_COUNT_SW_PAGE_FAULTS_MIN };
        fault_counter = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
        if (fault_counter < 0)
            SKIP("perf_event_open: %s: cannot count page faults", strerror(errno));
    }
    long long n;
    CHECK(read(fault_counter, &n, sizeof n) == sizeof n, "reading the fault counter");
    return (long)n;
}

/* Reads BYTES twice, the faults of each reading written to `report`. */
static void server(int l, int report)
{
    if (fault_counter >= 0)
        close(fault_counter);   /* the parent's: this process counts its own */
    fault_counter = -1;
    int c = accept(l, NULL, NULL);
    CHECK(c >= 0, "accept");
    server_switch(c);
    static char buf[64 << 10];
    for (int round = 0; round < 2; round++) {
        long before = -1, got = 0;
        while (got < BYTES) {
            ssize_t n = read(c, buf, sizeof buf);
            CHECK(n > 0, "server read: %zd %s", n, strerror(errno));
            if (before < 0)
                before = minor_faults();   /* after the wake-up's own faults */
            got += n;
        }
        long faults = minor_faults() - before;
        CHECK(write(report, &faults, sizeof faults) == sizeof faults, "report");
        CHECK(write_full(c, "k", 1) == 1, "ack");
    }
    exit(0);
}

/* Writer's and reader's faults over BYTES, fresh and after idling. */
static void transfer(int optin, long faults[2][2])
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l, p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t srv = fork_with_listener(optin, &addr, &len, &l);
    if (srv == 0) {
        close(p[0]);
        server(l, p[1]);
    }
    close(p[1]);
    int c = connect_to(&addr, len, optin);
    client_switch(c);
    CHECK(loopfast_fd_is_fast(c) == optin, "fast: %d", loopfast_fd_is_fast(c));
    static char buf[BYTES];
    memset(buf, 'b', sizeof buf);
    for (int round = 0; round < 2; round++) {
        if (round)
            for (int waited = 0; waited < IDLE_MS; waited += 100)
                poll(NULL, 0, 100);   /* waits loopfast sees: its trims run before them */
        long before = minor_faults();
        CHECK(write_full(c, buf, sizeof buf) == sizeof buf, "write");
        faults[round][0] = minor_faults() - before;
        char k;
        CHECK(read_full(c, &k, 1) == 1, "ack");
        CHECK(read_full(p[0], &faults[round][1], sizeof faults[round][1]) ==
                  sizeof faults[round][1], "the server's report");
    }
    close(c);
    CHECK(child_status(srv) == 0, "server failed");
    close(p[0]);
}

int main(void)
{
    alarm(30);
#ifdef UNDER_TSAN
    SKIP("ThreadSanitizer's shadow of each ring page faults in the copies");
#endif
    void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(probe != MAP_FAILED, "mmap");
    if (madvise(probe, 4096, 23 /* MADV_POPULATE_WRITE */) != 0)
        SKIP("this kernel has no MADV_POPULATE_WRITE (5.14): pages fault as they are used");
    long kernel[2][2], fast[2][2];
    transfer(0, kernel);
    transfer(1, fast);
    const char *when[2] = { "fresh connection", "after idling" };
    for (int r = 0; r < 2; r++) {
        printf("%s, %d KiB: minor faults writer/reader: kernel %ld/%ld, loopfast %ld/%ld\n",
               when[r], BYTES >> 10, kernel[r][0], kernel[r][1], fast[r][0], fast[r][1]);
        for (int side = 0; side < 2; side++)
            CHECK(fast[r][side] <= kernel[r][side] + SLACK,
                  "%s: the %s took %ld faults for %d pages of ring (kernel %ld)", when[r],
                  side ? "reader" : "writer", fast[r][side], BYTES / 4096, kernel[r][side]);
    }
    return 0;
}
