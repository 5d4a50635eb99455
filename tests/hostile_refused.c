/* A peer may write every word of a connection's shared memory, our own
 * line included, so a flag there must never hide what the kernel says.
 * Here the client writes the server's "refused" flag (rx_refused: we shut
 * both directions, docs/design.md 7) and then ends its side with a raw
 * shutdown(SHUT_WR) system call, which loopfast does not see: only the
 * kernel's FIN tells the server.  The server's poll and read must still
 * report the end of the stream, as over kernel TCP.  loopfast trusted the
 * flag: it took the FIN for the echo of its own shutdown and the server
 * waited for good (hostile_region met this once, as a server that kept its
 * attacker's connections).  Kernel TCP and loopfast (both ends opted in):
 * the server's transcripts must be the same. */
#include <poll.h>
#include <sys/syscall.h>

#include "helpers.h"
#include "transcript.h"
#include "../src/internal.h"   /* the slot's layout: what the peer aims at */

#define WAIT_MS 2000

/* Sets the server's rx_refused in every slot this process maps: the slots
 * are the memfd mappings at a nonzero offset (offset 0: the region's
 * head).  The number of slots written. */
static int refuse_for_the_server(void)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps, "/proc/self/maps: %s", strerror(errno));
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end, offset;
        char perms[8];
        if (!strstr(line, "memfd:loopfast") ||
            sscanf(line, "%lx-%lx %7s %lx", &start, &end, perms, &offset) != 4 || offset == 0 ||
            perms[1] != 'w' || end - start < LF_HEADER_SIZE)
            continue;
        struct lf_shared *sh = (struct lf_shared *)start;
        if (sh->magic != LF_MAGIC)
            continue;
        __atomic_store_n(&sh->side[LF_SERVER].rx_refused, 1, __ATOMIC_RELEASE);
        n++;
    }
    fclose(maps);
    return n;
}

static void run(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    int written = refuse_for_the_server();
    if (optin)
        CHECK(written > 0, "no slot of ours found in /proc/self/maps");
    CHECK(syscall(SYS_shutdown, c, SHUT_WR) == 0, "shutdown: %s", strerror(errno));

    struct pollfd p = { .fd = s, .events = POLLIN | POLLRDHUP };
    int k = poll(&p, 1, WAIT_MS);
    char ev[16];
    events_text(ev, sizeof ev, k == 1 ? (unsigned)p.revents : 0);
    note(" poll:%d:%s", k, ev);
    char b;
    note_result("read", recv(s, &b, 1, MSG_DONTWAIT));
    note_readiness("server", s);
    /* the server's own direction still takes bytes; what the client then
     * reads is the attacker's business (it broke its own connection) */
    note_result("write", write(s, "z", 1));
    case_end(c, s, out, size);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(30);
    char kernel[4096], fast[4096];
    run(0, kernel, sizeof kernel);
    run(1, fast, sizeof fast);
    return transcripts_differ("peer wrote our rx_refused, then a raw FIN", kernel, fast);
}
