/*
 * stat.c - `loopfast stat`: the live fast-path connections this user may see,
 * as `ss -t` would list them, with each end's counters.
 *
 * No daemon: every connection's shared memory is a slot of a region, a
 * memfd named "loopfast" that both processes hold, so /proc/PID/fd shows
 * where they are; the headers of its leased slots are read (and checked,
 * as any reader must).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "stat.h"

#define MAX_CONNS 65536

struct conn_view {
    ino_t ino;              /* the region */
    uint32_t slot;
    uint64_t mem;           /* bytes of the slot with pages: what the connection holds */
    struct lf_shared hdr;   /* a copy: the live one keeps changing */
};

static struct conn_view *views;
static int nviews;

static int seen(ino_t ino)
{
    for (int i = 0; i < nviews; i++)
        if (views[i].ino == ino)
            return 1;
    return 0;
}

static int pid_alive(int pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* Is any process that holds the end (those listed in its line, and the one
 * that last took it) still there?  When none is known: yes.  (A holder
 * that exited without close() leaves its count behind until another
 * holder lets go: docs/design.md 7.) */
static int taker_alive(const struct lf_shared *h, int side)
{
    int known = 0;
    for (int i = 0; i < LF_HOLDER_PIDS; i++) {
        int pid = h->side[side].holder_pid[i];
        if (pid > 0 && (known = 1, pid_alive(pid)))
            return 1;
    }
    int pid = h->stats[side].pid;
    return pid > 0 ? pid_alive(pid) : !known;
}

/* The process shown for an end: the one that last took it while it still
 * holds it, else the first live one its line lists (a server that forks
 * per connection took it in the parent, which closed its copy: the child
 * holds it), else the last taker. */
static int end_pid(const struct lf_shared *h, int side)
{
    int taker = h->stats[side].pid, first_alive = 0;
    for (int i = 0; i < LF_HOLDER_PIDS; i++) {
        int pid = h->side[side].holder_pid[i];
        if (pid > 0 && pid == taker && pid_alive(pid))
            return pid;
        if (pid > 0 && !first_alive && pid_alive(pid))
            first_alive = pid;
    }
    return first_alive ? first_alive : taker;
}

/* Processes also hold memory that is no live connection: a server's spare
 * answer (no addresses yet), connections both ends have closed, waiting
 * to be released at the next blocking call (docs/design.md 4.6), and ends
 * whose last process exited without closing them. */
static int is_live(const struct lf_shared *h)
{
    const struct lf_side *client = &h->side[LF_CLIENT], *server = &h->side[LF_SERVER];
    if (h->addr[LF_SERVER].ss_family == 0)
        return 0;
    return (server->holders != 0 && taker_alive(h, LF_SERVER)) ||
           (client->holders != 0 && client->ready && taker_alive(h, LF_CLIENT));
}

/* Bytes of [from, to) of the memfd that have pages: a ring's page is
 * allocated when first written and given back when trimmed (holes). */
static uint64_t allocated(int fd, off_t from, off_t to)
{
    uint64_t sum = 0;
    while (from < to) {
        off_t data = lseek(fd, from, SEEK_DATA);
        if (data < 0 || data >= to)
            break;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0 || hole > to)
            hole = to;
        sum += (uint64_t)(hole - data);
        from = hole;
    }
    return sum;
}

/* Reads the headers of a region's leased slots through /proc/PID/fd/N,
 * each checked as any reader of shared memory must. */
static void read_region(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    struct lf_region reg;
    if (fd < 0 || fstat(fd, &st) < 0 || pread(fd, &reg, sizeof reg, 0) != (ssize_t)sizeof reg ||
        reg.magic != LF_MAGIC || reg.version != LF_VERSION || !ring_size_valid(reg.ring_size)) {
        if (fd >= 0)
            close(fd);
        return;
    }
    uint64_t slot_size = LF_HEADER_SIZE + 2 * reg.ring_size;
    for (uint32_t k = 0; k < LINK_SLOTS && nviews < MAX_CONNS; k++) {
        uint64_t at = LF_REGION_HEAD + k * slot_size;
        if (at + LF_HEADER_SIZE > (uint64_t)st.st_size)
            break;
        struct conn_view *v = &views[nviews];
        if (!reg.lease[k] || pread(fd, &v->hdr, sizeof v->hdr, (off_t)at) != (ssize_t)sizeof v->hdr ||
            v->hdr.magic != LF_MAGIC || v->hdr.version != LF_VERSION || !is_live(&v->hdr))
            continue;
        v->ino = st.st_ino;
        v->slot = k;
        v->mem = allocated(fd, (off_t)at, (off_t)(at + slot_size));
        nviews++;
    }
    close(fd);
}

static void scan_process(const char *pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
    DIR *d = opendir(dir);
    if (!d)
        return;   /* another user's process: not ours to see */
    for (struct dirent *e; (e = readdir(d)) && nviews < MAX_CONNS;) {
        char path[384], target[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strncmp(target, "/memfd:loopfast", 15))
            continue;
        struct stat st;
        if (stat(path, &st) < 0 || seen(st.st_ino))
            continue;
        read_region(path);
    }
    closedir(d);
}

static void scan(void)
{
    nviews = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
            scan_process(e->d_name);
    if (d)
        closedir(d);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, len, "%s:%u", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, len, "[%s]:%u", host, port);
    } else {
        snprintf(out, len, "*");
    }
}

static void process_name(int pid, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(out, (int)len, f))
        snprintf(out, len, "?");
    out[strcspn(out, "\n")] = 0;
    if (f)
        fclose(f);
}

static const char *state(const struct lf_shared *h, int side)
{
    if (h->side[side].closed || h->side[!side].closed)
        return "CLOSING";
    if (h->side[side].shut_wr || h->side[!side].shut_wr)
        return "HALF-CLOSED";
    /* the server answered; the client takes the rings at its next
     * exchange, if it comes (a keep-alive connection idle after one
     * request stays so, on TCP, and its client end has no process yet) */
    return h->side[LF_CLIENT].ready ? "ESTAB" : "OFFERED";
}

/* One line (or JSON object) per end of every connection. */
static void print_end(const struct conn_view *v, int side, int json, int first)
{
    const struct lf_shared *h = &v->hdr;
    char local[80], peer[80], name[32];
    addr_text(&h->addr[side], local, sizeof local);
    addr_text(&h->addr[!side], peer, sizeof peer);
    const struct lf_stats *s = &h->stats[side];
    int pid = end_pid(h, side);
    if (pid > 0)
        process_name(pid, name, sizeof name);
    else
        snprintf(name, sizeof name, "-");
    if (json) {
        printf("%s{\"state\": \"%s\", \"side\": \"%s\", \"local\": \"%s\", \"peer\": \"%s\", "
               "\"pid\": %d, \"process\": \"%s\", \"ring_bytes\": %llu, \"tx_bytes\": %llu, "
               "\"tx_msgs\": %llu, \"rx_bytes\": %llu, \"rx_msgs\": %llu, \"wakeups\": %llu, "
               "\"spin_hits\": %llu, \"mem_bytes\": %llu}",
               first ? "" : ",\n  ", state(h, side), side == LF_CLIENT ? "client" : "server", local,
               peer, pid, name, (unsigned long long)h->ring_size,
               (unsigned long long)s->tx_bytes, (unsigned long long)s->tx_msgs,
               (unsigned long long)s->rx_bytes, (unsigned long long)s->rx_msgs,
               (unsigned long long)s->wakeups, (unsigned long long)s->spin_hits,
               (unsigned long long)v->mem);
        return;
    }
    char proc[64];
    snprintf(proc, sizeof proc, "%s,pid=%d", name, pid);
    printf("%-11s %-24s %-24s %-22s %12llu %10llu %12llu %10llu %8llu %9llu %7llu\n", state(h, side),
           local, peer, proc, (unsigned long long)s->tx_bytes, (unsigned long long)s->tx_msgs,
           (unsigned long long)s->rx_bytes, (unsigned long long)s->rx_msgs,
           (unsigned long long)s->wakeups, (unsigned long long)s->spin_hits,
           (unsigned long long)(v->mem >> 10));
}

static void print_all(int json)
{
    if (json) {
        printf("{\"connections\": %d, \"ends\": [", nviews);
        for (int i = 0; i < nviews; i++)
            for (int side = 0; side < 2; side++)
                print_end(&views[i], side, 1, i == 0 && side == 0);
        printf("]}\n");
        return;
    }
    printf("%-11s %-24s %-24s %-22s %12s %10s %12s %10s %8s %9s %7s\n", "State", "Local", "Peer",
           "Process", "TxBytes", "TxMsgs", "RxBytes", "RxMsgs", "Wakeups", "SpinHits", "MemKiB");
    for (int i = 0; i < nviews; i++)
        for (int side = 0; side < 2; side++)
            print_end(&views[i], side, 0, 0);
    if (!nviews)
        printf("(no fast-path connections that this user may see)\n");
}

static void usage(FILE *f)
{
    fputs("usage: loopfast stat [--json] [-w]\n"
          "\n"
          "Lists the live fast-path connections this user may see (root sees all), one\n"
          "line per end, as `ss -t` would: state, local and peer address, process, and\n"
          "the end's counters: bytes and messages written to and read from the rings,\n"
          "wake-ups (sleeps ended by the peer) and spin hits (waits that ended while\n"
          "spinning); and the connection's memory (MemKiB, the same on both ends: its\n"
          "header and the ring pages it holds, which both processes share).  Needs no\n"
          "daemon: it reads each connection's shared header.\n"
          "\n"
          "States: ESTAB (on the rings), OFFERED (the server answered, the client\n"
          "takes the rings at its next exchange; until then the connection is TCP and\n"
          "its client end has no process, pid 0), HALF-CLOSED (an end shut its\n"
          "writing down), CLOSING (an end closed).\n"
          "\n"
          "  --json   print one JSON object instead of the table\n"
          "  -w       refresh every second in place (Ctrl-C to stop)\n"
          "\n"
          "Exit status: 0 ok, 1 runtime failure, 2 usage error.\n", f);
}

int stat_main(int argc, char **argv)
{
    int json = 0, watch = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "-w") || !strcmp(argv[i], "--watch")) {
            watch = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "loopfast stat: unknown option %s; see loopfast stat --help\n", argv[i]);
            return 2;
        }
    }
    views = calloc(MAX_CONNS, sizeof *views);
    if (!views) {
        fprintf(stderr, "loopfast stat: out of memory\n");
        return 1;
    }
    do {
        scan();
        if (watch && isatty(STDOUT_FILENO))
            fputs("\033[H\033[2J", stdout);
        print_all(json);
        fflush(stdout);
    } while (watch && sleep(1) == 0);
    free(views);
    return 0;
}
