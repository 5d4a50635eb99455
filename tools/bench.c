/*
 * bench.c - `loopfast bench`: its options, and the order in which it measures
 * kernel TCP, AF_UNIX, loopfast and a bare ring side by side in one run.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_proc.h"
#include "bench_util.h"

static const char *const names[T_COUNT] = { "tcp", "unix", "loopfast", "ring" };
const size_t sweep_sizes[] = { 64, 1024, 16384, 65536, 262144, 1048576 };
const int nsweep_sizes = sizeof sweep_sizes / sizeof sweep_sizes[0];

const char *transport_name(enum transport t)
{
    return names[t];
}

static void usage(void)
{
    fputs("usage: loopfast bench [--json] [--quick] [--sizes]\n"
          "\n"
          "Measures, in one run and side by side, four transports between two processes\n"
          "(this one, the client, and a forked peer):\n"
          "  tcp       kernel TCP over 127.0.0.1, TCP_NODELAY, explicitly not opted in\n"
          "  unix      AF_UNIX stream sockets\n"
          "  loopfast  TCP over 127.0.0.1, listener and client opted in with loopfast_ioctl\n"
          "  ring      a bare shared-memory ring pair, both sides busy-polling: the ceiling\n"
          "            (as deep as loopfast's rings: LOOPFAST_RING_KB, or what kernel TCP holds)\n"
          "Columns:\n"
          "  rtt_median_us, rtt_p99_us  64 B round trip (write 64 B, peer echoes), us\n"
          "  msgs_per_s                 64 B writes one way, per second at the reader\n"
          "  stream_GBps                64 KiB writes one way, GB/s at the reader\n"
          "  connect_us                 a short connection: connect, 1-byte echo, close\n"
          "                             (loopfast leaves a first exchange on TCP, and after\n"
          "                             16 such in a row makes no offer there; the ratio\n"
          "                             lines add connect, two echoes, close: connect2_us)\n"
          "                             (time per connection; the ratio line adds the CPU\n"
          "                             both processes spent on one, connect_cpu_us in JSON)\n"
          "  fast                       loopfast_fd_is_fast() of the client after warm-up\n"
          "Then ratios against kernel TCP (latency tcp/x \"lower\", rate and stream x/tcp\n"
          "\"higher\"), loopfast against the ring (loopfast/ring), and loopfast's 64 B\n"
          "latency with LOOPFAST_SPIN_US=0 (measured by a second copy of this program).\n"
          "loopfast and the ring are measured in 12 alternated slices each (5 with --quick),\n"
          "and their rows and ratios are medians: a virtual machine's speed can change\n"
          "within a second, and only neighbouring slices compare like with like; the\n"
          "ratios' range over the slices is printed beside them.\n"
          "If loopfast's connection did not take the fast path, its row says so (fast: no)\n"
          "and measures ordinary kernel TCP.\n"
          "Per connection (tcp, unix, loopfast): a client and a server process open up to\n"
          "200 connections at once (fewer under a low `ulimit -n`), each with a 1-byte\n"
          "echo, and wait in epoll_wait; the growth over the moment before, divided by\n"
          "their number, after set-up, after 64 KiB each way (busy) and after 1.5 s idle\n"
          "(loopfast gives an idle ring's pages back; idle not for unix): open\n"
          "descriptors and Rss of each end (c/s: client/server), machine-wide Shmem, and\n"
          "\"machine\": Pss of both ends + machine-wide Slab (the kernel's sockets and\n"
          "files, taken after set-up).\n"
          "Shmem and Slab move with the rest of the machine: repeat before believing them.\n"
          "\n"
          "  --json      print one JSON object instead of the tables:\n"
          "              {\"transports\": {\"tcp\": {...}, \"unix\": {...},\n"
          "               \"loopfast\": {..., \"fast\": true}, \"ring\": {...}}, \"ratios\": {...}}\n"
          "              (values not measured, such as the ring's connect_us, are null);\n"
          "              per connection: \"per_connection\" in each transport and\n"
          "              \"loopfast_per_connection_vs_kernel\" in \"ratios\"\n"
          "  --quick     about 0.2 s per measurement instead of 1 s, and per connection\n"
          "              only after set-up (about 4.5 s in all instead of about 19 s)\n"
          "  --sizes     also sweep message sizes 64 B .. 1 MiB (round-trip median and p99,\n"
          "              stream GB/s); adds about 50 s, 10 s with --quick\n"
          "  -h, --help  print this help\n"
          "\n"
          "Progress lines go to stderr when it is a terminal.  A measurement that is not\n"
          "over 10 s after twice its time is stopped and the bench fails; no peer process\n"
          "is left behind.\n"
          "\n"
          "Exit status: 0 done, 1 a transport failed or hung (one line on stderr says\n"
          "which), 2 usage error.\n", stdout);
}

static int measure_sizes(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    int rc = 0;
    double bps = 0;
    for (int i = 0; o->sweep && i < nsweep_sizes; i++) {
        struct size_result *z = &r->sizes[r->nsizes++];
        z->size = sweep_sizes[i];
        if (t == T_RING) {
            rc |= ring_rtt(o, z->size, &z->rtt_median_us, &z->rtt_p99_us);
            rc |= ring_stream(o, z->size, &bps);
        } else {
            rc |= sock_rtt(t, o, z->size, &z->rtt_median_us, &z->rtt_p99_us, NULL);
            rc |= sock_stream(t, o, z->size, &bps);
        }
        z->stream_gbps = bps / 1e9;
    }
    return rc;
}

/* One of a transport's 64 B round trip, 64 B messages and 64 KiB stream. */
static int measure_metric(enum transport t, enum ceiling_metric m, const struct bench_opts *o,
                          struct bench_result *r)
{
    double bps = 0;
    size_t size = m == CM_STREAM ? 65536 : 64;
    int rc;
    if (m == CM_LATENCY)
        return t == T_RING ? ring_rtt(o, 64, &r->rtt_median_us, &r->rtt_p99_us)
                           : sock_rtt(t, o, 64, &r->rtt_median_us, &r->rtt_p99_us, &r->fast);
    rc = t == T_RING ? ring_stream(o, size, &bps) : sock_stream(t, o, size, &bps);
    if (m == CM_MSGS)
        r->msgs_per_s = bps / 64;
    else
        r->stream_gbps = bps / 1e9;
    return rc;
}

static int measure_core(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    int rc = 0;
    for (int m = 0; m < CM_COUNT; m++)
        rc |= measure_metric(t, (enum ceiling_metric)m, o, r);
    return rc;
}

/* What only sockets have: set-up time, and the cost of many connections. */
static int measure_connections(enum transport t, const struct bench_opts *o,
                               struct bench_result *r)
{
    int rc = 0;
    double cpu2;   /* a connection that switches: its time is the point */
    rc |= sock_connect_cost(t, o, 1, &r->connect_us, &r->connect_cpu_us);
    rc |= sock_connect_cost(t, o, 2, &r->connect2_us, &cpu2);
    return rc | sock_conn_cost(t, !o->quick, &r->cost);
}

static int measure(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    memset(r, 0, sizeof *r);
    int rc = measure_core(t, o, r);
    return rc | measure_connections(t, o, r) | measure_sizes(t, o, r);
}

double median_of(double *v, int n)
{
    for (int i = 1; i < n; i++)   /* a handful of values: insertion sort */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    return n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : NAN;
}

/* The medians over the rounds, into *r; each round's results in rounds[]. */
static void take_medians(struct bench_result *r, const struct bench_result *rounds, int n)
{
    double rtt[CEILING_MAX_ROUNDS], p99[CEILING_MAX_ROUNDS], msgs[CEILING_MAX_ROUNDS],
        stream[CEILING_MAX_ROUNDS];
    r->fast = 1;
    for (int i = 0; i < n; i++) {
        rtt[i] = rounds[i].rtt_median_us;
        p99[i] = rounds[i].rtt_p99_us;
        msgs[i] = rounds[i].msgs_per_s;
        stream[i] = rounds[i].stream_gbps;
        r->fast &= rounds[i].fast;
    }
    r->rtt_median_us = median_of(rtt, n);
    r->rtt_p99_us = median_of(p99, n);
    r->msgs_per_s = median_of(msgs, n);
    r->stream_gbps = median_of(stream, n);
}

/* loopfast / ring of metric m. */
static double ceiling_ratio(enum ceiling_metric m, const struct bench_result *f,
                            const struct bench_result *c)
{
    if (m == CM_LATENCY)
        return f->rtt_median_us / c->rtt_median_us;
    return m == CM_MSGS ? f->msgs_per_s / c->msgs_per_s : f->stream_gbps / c->stream_gbps;
}

/* loopfast and the ring in short alternated slices, each metric's two right
 * after each other (in turn which first, so that a drift favours neither):
 * this host's speed flips between phases within a second (a cache line's
 * round trip 180 or 720 ns), so only neighbours compare like with like.
 * Then what only loopfast has. */
static int measure_against_ring(const struct bench_opts *o, struct bench_result *f,
                                struct bench_result *c)
{
    struct bench_result lf[CEILING_MAX_ROUNDS], ring[CEILING_MAX_ROUNDS];
    struct bench_opts slice = *o;
    int n = o->quick ? 5 : CEILING_MAX_ROUNDS, rc = 0;
    slice.seconds = o->seconds / n;
    memset(f, 0, sizeof *f);
    memset(c, 0, sizeof *c);
    memset(lf, 0, sizeof lf);
    memset(ring, 0, sizeof ring);
    for (int i = 0; i < n && rc == 0; i++)
        for (int m = 0; m < CM_COUNT && rc == 0; m++) {
            enum ceiling_metric cm = (enum ceiling_metric)m;
            if ((i + m) % 2 == 0)
                rc = measure_metric(T_LOOPFAST, cm, &slice, &lf[i]) |
                     measure_metric(T_RING, cm, &slice, &ring[i]);
            else
                rc = measure_metric(T_RING, cm, &slice, &ring[i]) |
                     measure_metric(T_LOOPFAST, cm, &slice, &lf[i]);
            f->ceiling.ratio[m][i] = ceiling_ratio(cm, &lf[i], &ring[i]);
        }
    if (rc)
        return rc;
    f->ceiling.rounds = n;
    take_medians(f, lf, n);
    take_medians(c, ring, n);
    c->fast = 0;
    c->connect_us = c->connect_cpu_us = c->connect2_us = NAN;
    rc |= measure_connections(T_LOOPFAST, o, f) | measure_sizes(T_LOOPFAST, o, f);
    return rc | measure_sizes(T_RING, o, c);
}

/* The hidden `bench --internal-nospin SECONDS` of the copy started below:
 * prints loopfast's 64 B round-trip median. */
static int internal_nospin(const char *seconds)
{
    struct bench_opts o = { .seconds = atof(seconds) };
    double med, p99;
    if (o.seconds <= 0 || sock_rtt(T_LOOPFAST, &o, 64, &med, &p99, NULL) < 0)
        return 1;
    printf("%.3f\n", med);
    return 0;
}

/* In the forked child: becomes a copy of this program measuring loopfast's
 * latency with LOOPFAST_SPIN_US=0 (the library reads it at start-up), its
 * answer or its error on `out`. */
static void exec_nospin(int out, double seconds)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%g", seconds);
    if (out == STDOUT_FILENO)
        fcntl(out, F_SETFD, 0);
    else
        dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    setenv("LOOPFAST_SPIN_US", "0", 1);
    execl("/proc/self/exe", "loopfast", "bench", "--internal-nospin", secs, (char *)NULL);
    fprintf(stderr, "cannot re-run /proc/self/exe: %s\n", strerror(errno));
    _exit(127);
}

/* Its answer, or -1 after passing on its error as one line. */
static int nospin_rtt(const struct bench_opts *o, double *us)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die("cannot create a pipe: %s; check `ulimit -n`", strerror(errno));
    /* Its own measurement has its own deadline; ours is a little longer. */
    pid_t pid = child_start("loopfast round trip with LOOPFAST_SPIN_US=0", o->seconds + 3);
    if (pid == 0)
        exec_nospin(p[1], o->seconds);
    close(p[1]);
    char out[512] = "";
    ssize_t n = read_full(p[0], out, sizeof out - 1);
    close(p[0]);
    int rc = child_wait(pid);
    if (rc == 0 && n > 0 && sscanf(out, "%lf", us) == 1)
        return 0;
    const char *why = out + strspn(out, " \n");
    if (!strncmp(why, "loopfast bench: ", 16))
        why += 16;
    if (!*why)
        why = "the loopfast round trip failed; run it under strace -f to see why";
    fprintf(stderr, "loopfast bench: with LOOPFAST_SPIN_US=0: %.*s\n", (int)strcspn(why, "\n"),
            why);
    return -1;
}

/* -1 to measure, else the exit status `loopfast bench` has already come to. */
static int parse(int argc, char **argv, struct bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            o->json = 1;
        } else if (!strcmp(argv[i], "--quick")) {
            o->seconds = 0.2;
            o->quick = 1;
        } else if (!strcmp(argv[i], "--sizes")) {
            o->sweep = 1;
        } else if (!strcmp(argv[i], "--internal-nospin") && i + 1 < argc) {
            return internal_nospin(argv[i + 1]);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "loopfast bench: unknown option %s; see loopfast bench --help\n",
                    argv[i]);
            return 2;
        }
    }
    return -1;
}

static int measure_all(const struct bench_opts *o, struct bench_result *r)
{
    int progress = isatty(STDERR_FILENO);
    for (int t = 0; t < T_COUNT; t++) {
        if (t == T_RING)
            continue;   /* measured with loopfast */
        if (progress)
            fprintf(stderr, "measuring %s...\n",
                    t == T_LOOPFAST ? "loopfast and the ring, alternated" : names[t]);
        int rc = t == T_LOOPFAST ? measure_against_ring(o, &r[t], &r[T_RING])
                                 : measure((enum transport)t, o, &r[t]);
        if (rc < 0) {
            fprintf(stderr, "loopfast bench: the %s transport failed; run it under strace -f "
                    "to see why\n", t == T_LOOPFAST ? "loopfast or ring" : names[t]);
            return 1;
        }
    }
    if (progress)
        fprintf(stderr, "measuring loopfast with LOOPFAST_SPIN_US=0...\n");
    return nospin_rtt(o, &r[T_LOOPFAST].rtt_nospin_us) < 0 ? 1 : 0;
}

int bench_main(int argc, char **argv)
{
    struct bench_opts o = { .seconds = 1.0 };
    signal(SIGPIPE, SIG_IGN);
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    struct bench_result r[T_COUNT];
    if (measure_all(&o, r) != 0)
        return 1;
    if (r[T_TCP].fast) {
        fprintf(stderr, "loopfast bench: the kernel TCP baseline took the fast path although it "
                "opted out; this is a loopfast bug, please report it\n");
        return 1;
    }
    if (o.json)
        print_json(r);
    else
        print_table(r);
    return 0;
}
