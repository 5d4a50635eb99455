/*
 * bench_report.c - how `loopfast bench` shows its results: the human tables
 * with ratios against kernel TCP and the ring, or one JSON object.
 */
#include <math.h>
#include <stdio.h>

#include "bench.h"

/* a / b, or NAN when either is not a positive measurement. */
static double ratio(double a, double b)
{
    return a > 0 && b > 0 && isfinite(a) && isfinite(b) ? a / b : NAN;
}

/* ---- the tables ---- */

static const char *fast_cell(enum transport t, const struct bench_result *r)
{
    if (t != T_TCP && t != T_LOOPFAST)
        return "-";
    return r->fast ? "yes" : "no";
}

static void print_rows(const struct bench_result *r)
{
    printf("%-9s %14s %12s %14s %12s %12s %5s\n", "transport", "rtt_median_us", "rtt_p99_us",
           "msgs_per_s", "stream_GBps", "connect_us", "fast");
    for (int t = 0; t < T_COUNT; t++) {
        printf("%-9s %14.2f %12.2f %14.0f %12.2f ", transport_name(t), r[t].rtt_median_us,
               r[t].rtt_p99_us, r[t].msgs_per_s, r[t].stream_gbps);
        if (isnan(r[t].connect_us))
            printf("%12s", "-");
        else
            printf("%12.2f", r[t].connect_us);
        printf(" %5s\n", fast_cell(t, &r[t]));
    }
}

static void print_ratios(const struct bench_result *r)
{
    const struct bench_result *k = &r[T_TCP], *f = &r[T_LOOPFAST], *c = &r[T_RING];
    printf("\nagainst kernel TCP (same run):\n");
    for (int t = T_UNIX; t < T_COUNT; t++)
        printf("  %-9s latency %6.1fx lower   messages %6.1fx higher   stream %5.1fx higher\n",
               transport_name(t), ratio(k->rtt_median_us, r[t].rtt_median_us),
               ratio(r[t].msgs_per_s, k->msgs_per_s), ratio(r[t].stream_gbps, k->stream_gbps));
    printf("  loopfast  connection set-up %.2fx the kernel's time (CPU of both ends %.0f us "
           "vs %.0f us: %.2fx)\n", ratio(f->connect_us, k->connect_us), f->connect_cpu_us,
           k->connect_cpu_us, ratio(f->connect_cpu_us, k->connect_cpu_us));
    printf("  loopfast  with LOOPFAST_SPIN_US=0 latency %.2f us = %.2fx the kernel's\n",
           f->rtt_nospin_us, ratio(f->rtt_nospin_us, k->rtt_median_us));
    printf("loopfast against the bare ring (the ceiling): latency %.1fx, messages %.0f%%, "
           "stream %.0f%%\n", ratio(f->rtt_median_us, c->rtt_median_us),
           100 * ratio(f->msgs_per_s, c->msgs_per_s), 100 * ratio(f->stream_gbps, c->stream_gbps));
    if (f->fast)
        printf("loopfast was on the fast path (loopfast_fd_is_fast() = 1 after warm-up)\n");
    else
        printf("loopfast was NOT on the fast path: its row is ordinary kernel TCP "
               "(loopfast_fd_is_fast() = 0 after warm-up)\n");
}

static void print_sweep(const struct bench_result *r)
{
    printf("\nmessage size sweep: round-trip median (us) / stream (GB/s)\n%-9s", "size");
    for (int t = 0; t < T_COUNT; t++)
        printf(" %22s", transport_name(t));
    printf("\n");
    for (int i = 0; i < r[0].nsizes; i++) {
        printf("%-9zu", r[0].sizes[i].size);
        for (int t = 0; t < T_COUNT; t++)
            printf(" %11.2f /%8.2f", r[t].sizes[i].rtt_median_us, r[t].sizes[i].stream_gbps);
        printf("\n");
    }
}

void print_table(const struct bench_result *r)
{
    print_rows(r);
    print_ratios(r);
    if (r[0].nsizes)
        print_sweep(r);
}

/* ---- JSON ---- */

/* A JSON number, or null for what was not measured (JSON has no NaN). */
static void jnum(const char *key, double v, int decimals)
{
    if (isfinite(v))
        printf("\"%s\": %.*f", key, decimals, v);
    else
        printf("\"%s\": null", key);
}

static void json_sizes(const struct bench_result *r)
{
    printf(", \"sizes\": [");
    for (int i = 0; i < r->nsizes; i++) {
        const struct size_result *z = &r->sizes[i];
        printf("%s{\"size\": %zu, ", i ? ", " : "", z->size);
        jnum("rtt_median_us", z->rtt_median_us, 3);
        printf(", ");
        jnum("rtt_p99_us", z->rtt_p99_us, 3);
        printf(", ");
        jnum("stream_GBps", z->stream_gbps, 3);
        printf("}");
    }
    printf("]");
}

static void json_transport(enum transport t, const struct bench_result *r)
{
    printf("\"%s\": {", transport_name(t));
    jnum("rtt_median_us", r->rtt_median_us, 3);
    printf(", ");
    jnum("rtt_p99_us", r->rtt_p99_us, 3);
    printf(", ");
    jnum("msgs_per_s", r->msgs_per_s, 0);
    printf(", ");
    jnum("stream_GBps", r->stream_gbps, 3);
    printf(", ");
    jnum("connect_us", r->connect_us, 3);
    printf(", ");
    jnum("connect_cpu_us", r->connect_cpu_us, 3);
    if (t == T_TCP || t == T_LOOPFAST)
        printf(", \"fast\": %s", r->fast ? "true" : "false");
    if (t == T_LOOPFAST) {
        printf(", ");
        jnum("rtt_nospin_us", r->rtt_nospin_us, 3);
    }
    json_sizes(r);
    printf("}");
}

/* x against y: latency y/x lower, rate and stream x/y higher. */
static void json_against(const char *name, const struct bench_result *x,
                         const struct bench_result *y)
{
    printf("\"%s\": {", name);
    jnum("latency_lower", ratio(y->rtt_median_us, x->rtt_median_us), 3);
    printf(", ");
    jnum("msgs_higher", ratio(x->msgs_per_s, y->msgs_per_s), 3);
    printf(", ");
    jnum("stream_higher", ratio(x->stream_gbps, y->stream_gbps), 3);
    printf("}");
}

/* loopfast / ring for each metric: how far loopfast is from the ceiling. */
static void json_to_ceiling(const struct bench_result *f, const struct bench_result *c)
{
    printf("\"loopfast_vs_ring\": {");
    jnum("latency", ratio(f->rtt_median_us, c->rtt_median_us), 3);
    printf(", ");
    jnum("msgs", ratio(f->msgs_per_s, c->msgs_per_s), 3);
    printf(", ");
    jnum("stream", ratio(f->stream_gbps, c->stream_gbps), 3);
    printf("}");
}

void print_json(const struct bench_result *r)
{
    const struct bench_result *k = &r[T_TCP], *f = &r[T_LOOPFAST];
    printf("{\"transports\": {");
    for (int t = 0; t < T_COUNT; t++) {
        printf("%s", t ? ", " : "");
        json_transport(t, &r[t]);
    }
    printf("}, \"ratios\": {");
    for (int t = T_UNIX; t < T_COUNT; t++) {
        printf("%s", t > T_UNIX ? ", " : "");
        json_against(transport_name(t), &r[t], k);
    }
    printf(", ");
    json_to_ceiling(f, &r[T_RING]);
    printf(", ");
    jnum("loopfast_connect_vs_kernel", ratio(f->connect_us, k->connect_us), 3);
    printf(", ");
    jnum("loopfast_connect_cpu_vs_kernel", ratio(f->connect_cpu_us, k->connect_cpu_us), 3);
    printf(", ");
    jnum("loopfast_nospin_latency_vs_kernel", ratio(f->rtt_nospin_us, k->rtt_median_us), 3);
    printf("}}\n");
}
