/*
 * bench.c - `loopfast bench`: kernel TCP, AF_UNIX, loopfast and a bare ring,
 * measured side by side in one run, printed as a table with ratios to kernel
 * TCP, or as JSON.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_util.h"

static const char *names[T_COUNT] = { "tcp", "unix", "loopfast", "ring" };

const char *transport_name(enum transport t)
{
    return names[t];
}

static void usage(FILE *f)
{
    fputs("usage: loopfast bench [--json] [--quick]\n"
          "\n"
          "Measures, in one run and side by side, kernel TCP over 127.0.0.1, AF_UNIX\n"
          "stream sockets, loopfast (TCP with both ends opted in) and a bare\n"
          "shared-memory ring (the ceiling): 64 B round-trip latency (median, p99),\n"
          "64 B messages per second, and 64 KiB stream throughput, with ratios\n"
          "against kernel TCP.\n"
          "\n"
          "  --json    print one JSON object instead of the table\n"
          "  --quick   0.2 s per measurement instead of 1 s\n"
          "\n"
          "Exit status: 0 done, 1 a transport failed, 2 usage error.\n", f);
}

int bench_transport(enum transport t, const struct bench_opts *o, struct bench_result *r)
{
    memset(r, 0, sizeof *r);
    return t == T_RING ? bench_ring(o, r) : bench_socket(t, o, r);
}

static void print_table(const struct bench_result *r)
{
    printf("%-9s %14s %12s %14s %12s\n", "transport", "rtt_median_us", "rtt_p99_us", "msgs_per_s",
           "stream_GBps");
    for (int t = 0; t < T_COUNT; t++)
        printf("%-9s %14.2f %12.2f %14.0f %12.2f%s\n", names[t], r[t].rtt_median_us,
               r[t].rtt_p99_us, r[t].msgs_per_s, r[t].stream_gbps,
               t == T_LOOPFAST && !r[t].fast ? "   (NOT on the fast path)" : "");
    const struct bench_result *k = &r[T_TCP];
    printf("\nagainst kernel TCP (same run):\n");
    for (int t = T_UNIX; t < T_COUNT; t++)
        printf("  %-9s latency %6.1fx lower   messages %6.1fx higher   stream %5.1fx higher\n",
               names[t], k->rtt_median_us / r[t].rtt_median_us, r[t].msgs_per_s / k->msgs_per_s,
               r[t].stream_gbps / k->stream_gbps);
    const struct bench_result *f = &r[T_LOOPFAST], *c = &r[T_RING];
    printf("loopfast against the bare ring: latency %.1fx, messages %.0f%%, stream %.0f%%\n",
           f->rtt_median_us / c->rtt_median_us, 100 * f->msgs_per_s / c->msgs_per_s,
           100 * f->stream_gbps / c->stream_gbps);
}

static void print_json(const struct bench_result *r)
{
    const struct bench_result *k = &r[T_TCP];
    printf("{\"transports\": {");
    for (int t = 0; t < T_COUNT; t++)
        printf("%s\"%s\": {\"rtt_median_us\": %.3f, \"rtt_p99_us\": %.3f, \"msgs_per_s\": %.0f, "
               "\"stream_GBps\": %.3f%s}",
               t ? ", " : "", names[t], r[t].rtt_median_us, r[t].rtt_p99_us, r[t].msgs_per_s,
               r[t].stream_gbps,
               t == T_LOOPFAST ? (r[t].fast ? ", \"fast\": true" : ", \"fast\": false") : "");
    printf("}, \"ratios\": {");
    for (int t = T_UNIX; t < T_COUNT; t++)
        printf("%s\"%s\": {\"latency_lower\": %.3f, \"msgs_higher\": %.3f, \"stream_higher\": %.3f}",
               t > T_UNIX ? ", " : "", names[t], k->rtt_median_us / r[t].rtt_median_us,
               r[t].msgs_per_s / k->msgs_per_s, r[t].stream_gbps / k->stream_gbps);
    printf("}}\n");
}

int bench_main(int argc, char **argv)
{
    struct bench_opts o = { .seconds = 1.0 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            o.json = 1;
        } else if (!strcmp(argv[i], "--quick")) {
            o.seconds = 0.2;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "loopfast bench: unknown option %s; see loopfast bench --help\n", argv[i]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct bench_result r[T_COUNT];
    int progress = isatty(STDERR_FILENO);
    for (int t = 0; t < T_COUNT; t++) {
        if (progress)
            fprintf(stderr, "\rmeasuring %-9s", names[t]);
        if (bench_transport((enum transport)t, &o, &r[t]) < 0) {
            fprintf(stderr, "loopfast bench: the %s transport failed; run with strace to see why\n",
                    names[t]);
            return 1;
        }
    }
    if (progress)
        fprintf(stderr, "\r%30s\r", "");
    if (o.json)
        print_json(r);
    else
        print_table(r);
    return 0;
}
