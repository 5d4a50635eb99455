/*
 * bench.c - `loopfast bench`: kernel TCP, AF_UNIX, loopfast and a bare ring,
 * measured side by side in one run, printed as a table with ratios to kernel
 * TCP, or as JSON.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_util.h"

static const char *names[T_COUNT] = { "tcp", "unix", "loopfast", "ring" };
const size_t sweep_sizes[] = { 64, 1024, 16384, 65536, 262144, 1048576 };
const int nsweep_sizes = sizeof sweep_sizes / sizeof sweep_sizes[0];

const char *transport_name(enum transport t)
{
    return names[t];
}

static void usage(FILE *f)
{
    fputs("usage: loopfast bench [--json] [--quick] [--sizes]\n"
          "\n"
          "Measures, in one run and side by side, kernel TCP over 127.0.0.1, AF_UNIX\n"
          "stream sockets, loopfast (TCP with both ends opted in) and a bare\n"
          "shared-memory ring (the ceiling): 64 B round-trip latency (median, p99),\n"
          "64 B messages per second, 64 KiB stream throughput, the cost of a short\n"
          "connection (connect, 1-byte echo, close) and loopfast's latency with\n"
          "spinning off, with ratios against kernel TCP.\n"
          "\n"
          "  --json    print one JSON object instead of the tables\n"
          "  --quick   0.2 s per measurement instead of 1 s\n"
          "  --sizes   also sweep message sizes from 64 B to 1 MiB (latency, throughput)\n"
          "\n"
          "Exit status: 0 done, 1 a transport failed, 2 usage error.\n", f);
}

static int measure(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    double bps;
    int rc = 0;
    memset(r, 0, sizeof *r);
    if (t == T_RING) {
        rc |= ring_rtt(o, 64, &r->rtt_median_us, &r->rtt_p99_us);
        rc |= ring_stream(o, 64, &bps);
        r->msgs_per_s = bps / 64;
        rc |= ring_stream(o, 65536, &bps);
        r->stream_gbps = bps / 1e9;
    } else {
        rc |= sock_rtt(t, o, 64, &r->rtt_median_us, &r->rtt_p99_us, &r->fast);
        rc |= sock_stream(t, o, 64, &bps);
        r->msgs_per_s = bps / 64;
        rc |= sock_stream(t, o, 65536, &bps);
        r->stream_gbps = bps / 1e9;
        rc |= sock_connect_cost(t, o, &r->connect_us);
    }
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

/* loopfast's latency with LOOPFAST_SPIN_US=0, measured by a copy of this
 * program started with that setting (the library reads it at start-up). */
static double nospin_rtt(const struct bench_opts *o)
{
    char cmd[4200], exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 0;
    exe[n] = 0;
    snprintf(cmd, sizeof cmd, "LOOPFAST_SPIN_US=0 '%s' bench --internal-nospin %g", exe, o->seconds);
    FILE *p = popen(cmd, "r");
    double v = 0;
    if (!p || fscanf(p, "%lf", &v) != 1)
        v = 0;
    if (p)
        pclose(p);
    return v;
}

static void print_sweep(const struct bench_result *r)
{
    printf("\nmessage size sweep: round-trip median (us) / stream (GB/s)\n%-9s", "size");
    for (int t = 0; t < T_COUNT; t++)
        printf(" %22s", names[t]);
    printf("\n");
    for (int i = 0; i < r[0].nsizes; i++) {
        printf("%-9zu", r[0].sizes[i].size);
        for (int t = 0; t < T_COUNT; t++)
            printf(" %11.2f /%8.2f", r[t].sizes[i].rtt_median_us, r[t].sizes[i].stream_gbps);
        printf("\n");
    }
}

static void print_table(const struct bench_result *r)
{
    printf("%-9s %14s %12s %14s %12s %12s\n", "transport", "rtt_median_us", "rtt_p99_us",
           "msgs_per_s", "stream_GBps", "connect_us");
    for (int t = 0; t < T_COUNT; t++)
        printf("%-9s %14.2f %12.2f %14.0f %12.2f %12.2f%s\n", names[t], r[t].rtt_median_us,
               r[t].rtt_p99_us, r[t].msgs_per_s, r[t].stream_gbps, r[t].connect_us,
               t == T_LOOPFAST && !r[t].fast ? "   (NOT on the fast path)" : "");
    const struct bench_result *k = &r[T_TCP], *f = &r[T_LOOPFAST], *c = &r[T_RING];
    printf("\nagainst kernel TCP (same run):\n");
    for (int t = T_UNIX; t < T_COUNT; t++)
        printf("  %-9s latency %6.1fx lower   messages %6.1fx higher   stream %5.1fx higher\n",
               names[t], k->rtt_median_us / r[t].rtt_median_us, r[t].msgs_per_s / k->msgs_per_s,
               r[t].stream_gbps / k->stream_gbps);
    printf("  loopfast  connection set-up %.2fx the kernel's; with LOOPFAST_SPIN_US=0 "
           "latency %.2f us = %.2fx the kernel's\n",
           f->connect_us / k->connect_us, f->rtt_nospin_us, f->rtt_nospin_us / k->rtt_median_us);
    printf("loopfast against the bare ring: latency %.1fx, messages %.0f%%, stream %.0f%%\n",
           f->rtt_median_us / c->rtt_median_us, 100 * f->msgs_per_s / c->msgs_per_s,
           100 * f->stream_gbps / c->stream_gbps);
    if (r[0].nsizes)
        print_sweep(r);
}

static void print_json(const struct bench_result *r)
{
    const struct bench_result *k = &r[T_TCP];
    printf("{\"transports\": {");
    for (int t = 0; t < T_COUNT; t++) {
        printf("%s\"%s\": {\"rtt_median_us\": %.3f, \"rtt_p99_us\": %.3f, \"msgs_per_s\": %.0f, "
               "\"stream_GBps\": %.3f, \"connect_us\": %.3f",
               t ? ", " : "", names[t], r[t].rtt_median_us, r[t].rtt_p99_us, r[t].msgs_per_s,
               r[t].stream_gbps, r[t].connect_us);
        if (t == T_LOOPFAST)
            printf(", \"fast\": %s, \"rtt_nospin_us\": %.3f", r[t].fast ? "true" : "false",
                   r[t].rtt_nospin_us);
        printf(", \"sizes\": [");
        for (int i = 0; i < r[t].nsizes; i++)
            printf("%s{\"size\": %zu, \"rtt_median_us\": %.3f, \"rtt_p99_us\": %.3f, \"stream_GBps\": %.3f}",
                   i ? ", " : "", r[t].sizes[i].size, r[t].sizes[i].rtt_median_us,
                   r[t].sizes[i].rtt_p99_us, r[t].sizes[i].stream_gbps);
        printf("]}");
    }
    printf("}, \"ratios\": {");
    for (int t = T_UNIX; t < T_COUNT; t++)
        printf("%s\"%s\": {\"latency_lower\": %.3f, \"msgs_higher\": %.3f, \"stream_higher\": %.3f}",
               t > T_UNIX ? ", " : "", names[t], k->rtt_median_us / r[t].rtt_median_us,
               r[t].msgs_per_s / k->msgs_per_s, r[t].stream_gbps / k->stream_gbps);
    const struct bench_result *f = &r[T_LOOPFAST];
    printf(", \"loopfast_connect_vs_kernel\": %.3f, \"loopfast_nospin_latency_vs_kernel\": %.3f}}\n",
           f->connect_us / k->connect_us, f->rtt_nospin_us / k->rtt_median_us);
}

static int parse(int argc, char **argv, struct bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            o->json = 1;
        } else if (!strcmp(argv[i], "--quick")) {
            o->seconds = 0.2;
        } else if (!strcmp(argv[i], "--sizes")) {
            o->sweep = 1;
        } else if (!strcmp(argv[i], "--internal-nospin") && i + 1 < argc) {
            o->seconds = atof(argv[++i]);
            double med, p99;
            int fast;
            if (sock_rtt(T_LOOPFAST, o, 64, &med, &p99, &fast) < 0)
                return 1;
            printf("%.3f\n", med);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "loopfast bench: unknown option %s; see loopfast bench --help\n", argv[i]);
            return 2;
        }
    }
    return -1;
}

int bench_main(int argc, char **argv)
{
    struct bench_opts o = { .seconds = 1.0 };
    signal(SIGPIPE, SIG_IGN);
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    struct bench_result r[T_COUNT];
    int progress = isatty(STDERR_FILENO);
    for (int t = 0; t < T_COUNT; t++) {
        if (progress)
            fprintf(stderr, "\rmeasuring %-9s", names[t]);
        if (measure((enum transport)t, &o, &r[t]) < 0) {
            fprintf(stderr, "loopfast bench: the %s transport failed; run it under strace to see why\n",
                    names[t]);
            return 1;
        }
    }
    r[T_LOOPFAST].rtt_nospin_us = nospin_rtt(&o);
    if (progress)
        fprintf(stderr, "\r%30s\r", "");
    if (o.json)
        print_json(r);
    else
        print_table(r);
    return 0;
}
