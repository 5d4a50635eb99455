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

/* The median of the rounds' ratios, and their range: the spread says how
 * much the host moved while the two were measured. */
static void ceiling_stats(const struct ceiling *c, enum ceiling_metric m, double *median,
                          double *lo, double *hi)
{
    double v[CEILING_MAX_ROUNDS];
    for (int i = 0; i < c->rounds; i++)
        v[i] = c->ratio[m][i];
    *median = median_of(v, c->rounds);
    *lo = c->rounds ? v[0] : NAN;
    *hi = c->rounds ? v[c->rounds - 1] : NAN;
}

static void print_ceiling(const struct ceiling *c)
{
    double lat[3], msgs[3], stream[3];
    ceiling_stats(c, CM_LATENCY, &lat[0], &lat[1], &lat[2]);
    ceiling_stats(c, CM_MSGS, &msgs[0], &msgs[1], &msgs[2]);
    ceiling_stats(c, CM_STREAM, &stream[0], &stream[1], &stream[2]);
    printf("loopfast against the bare ring (the ceiling; median of %d alternated rounds, their "
           "range in brackets):\n  latency %.2fx [%.2f-%.2f], messages %.0f%% [%.0f-%.0f], "
           "stream %.0f%% [%.0f-%.0f]\n", c->rounds, lat[0], lat[1], lat[2], 100 * msgs[0],
           100 * msgs[1], 100 * msgs[2], 100 * stream[0], 100 * stream[1], 100 * stream[2]);
}

static void print_ratios(const struct bench_result *r)
{
    const struct bench_result *k = &r[T_TCP], *f = &r[T_LOOPFAST];
    printf("\nagainst kernel TCP (same run):\n");
    for (int t = T_UNIX; t < T_COUNT; t++)
        printf("  %-9s latency %6.1fx lower   messages %6.1fx higher   stream %5.1fx higher\n",
               transport_name(t), ratio(k->rtt_median_us, r[t].rtt_median_us),
               ratio(r[t].msgs_per_s, k->msgs_per_s), ratio(r[t].stream_gbps, k->stream_gbps));
    printf("  loopfast  a short connection (connect, 1-byte echo, close; after 16 in a row no "
           "offer) %.2fx the kernel's time (CPU of both ends %.0f us vs %.0f us: %.2fx)\n", ratio(f->connect_us, k->connect_us), f->connect_cpu_us,
           k->connect_cpu_us, ratio(f->connect_cpu_us, k->connect_cpu_us));
    printf("  loopfast  a connection that switches (connect, two 1-byte echoes, close) %.2fx the "
           "kernel's time (%.0f us vs %.0f us)\n", ratio(f->connect2_us, k->connect2_us),
           f->connect2_us, k->connect2_us);
    printf("  loopfast  with LOOPFAST_SPIN_US=0 latency %.2f us = %.2fx the kernel's\n",
           f->rtt_nospin_us, ratio(f->rtt_nospin_us, k->rtt_median_us));
    print_ceiling(&f->ceiling);
    if (f->fast)
        printf("loopfast was on the fast path (loopfast_fd_is_fast() = 1 after warm-up)\n");
    else
        printf("loopfast was NOT on the fast path: its row is ordinary kernel TCP "
               "(loopfast_fd_is_fast() = 0 after warm-up)\n");
}

/* What a connection costs the machine at one moment, both ends together:
 * each process's proportional share of its pages (Pss counts a shared ring
 * page once in all) plus the kernel's objects (Slab: sockets, files).
 * Those stay as they were made; their growth is taken right after set-up,
 * the shortest time in which other processes on the machine move Slab. */
static double machine_kib(const struct conn_cost *c, enum cost_phase ph)
{
    return c->pss_kib[ph][END_CLIENT] + c->pss_kib[ph][END_SERVER] + c->slab_kib[PH_SETUP];
}

/* "client/server", or "-" for what was not measured. */
static const char *pair(char *buf, size_t len, const double v[END_COUNT])
{
    if (isnan(v[END_CLIENT]) || isnan(v[END_SERVER]))
        return "-";
    snprintf(buf, len, "%.1f/%.1f", v[END_CLIENT], v[END_SERVER]);
    return buf;
}

/* "set-up/busy/idle", "-" for a moment not measured. */
static const char *phases(char *buf, size_t len, const double v[PH_COUNT])
{
    size_t at = 0;
    for (int ph = 0; ph < PH_COUNT && at < len; ph++) {
        int n = isnan(v[ph]) ? snprintf(buf + at, len - at, "%s-", ph ? "/" : "")
                             : snprintf(buf + at, len - at, "%s%.1f", ph ? "/" : "", v[ph]);
        at += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

#define COST_FORMAT "%-9s %11s %12s %13s %12s %20s %22s\n"

static void print_cost_row(enum transport t, const struct conn_cost *c)
{
    char b[6][48];
    double all[PH_COUNT];
    for (int ph = 0; ph < PH_COUNT; ph++)
        all[ph] = machine_kib(c, (enum cost_phase)ph);
    printf(COST_FORMAT, transport_name(t), pair(b[0], sizeof b[0], c->fds),
           pair(b[1], sizeof b[1], c->rss_kib[PH_SETUP]),
           pair(b[2], sizeof b[2], c->rss_kib[PH_BUSY]),
           pair(b[3], sizeof b[3], c->rss_kib[PH_IDLE]),
           phases(b[4], sizeof b[4], c->shmem_kib), phases(b[5], sizeof b[5], all));
}

/* "loopfast's vs the kernel's = ratio" for the machine's memory at ph. */
static void print_machine_ratio(const char *what, const struct conn_cost *f,
                                const struct conn_cost *k, enum cost_phase ph)
{
    double a = machine_kib(f, ph), b = machine_kib(k, ph), x = ratio(a, b);
    if (!isnan(a) && !isnan(b))
        printf(isnan(x) ? ", %s %.1f vs %.1f KiB" : ", %s %.1f vs %.1f KiB = %.1fx", what, a, b,
               x);
}

static void print_cost(const struct bench_result *r)
{
    const struct conn_cost *k = &r[T_TCP].cost, *f = &r[T_LOOPFAST].cost;
    if (!k->n || !f->n) {
        printf("\nper connection: not measured (the descriptor limit, `ulimit -n`, is too "
               "low)\n");
        return;
    }
    printf("\nper connection, %d open at once, KiB; c/s: client/server; set-up: connect and "
           "1-byte\necho, busy: after 64 KiB each way, idle: after 1.5 s in epoll_wait; "
           "machine: Pss of\nboth ends + Slab; Shmem and Slab are machine-wide:\n", k->n);
    printf(COST_FORMAT, "transport", "descr. c/s", "Rss set-up", "Rss busy", "Rss idle",
           "Shmem set/busy/idle", "machine set/busy/idle");
    for (int t = 0; t < T_COUNT; t++)
        if (r[t].cost.n)
            print_cost_row((enum transport)t, &r[t].cost);
    printf("  loopfast  descriptors %.1fx / %.1fx the kernel's (client / server); machine "
           "memory", ratio(f->fds[END_CLIENT], k->fds[END_CLIENT]),
           ratio(f->fds[END_SERVER], k->fds[END_SERVER]));
    print_machine_ratio("after set-up", f, k, PH_SETUP);
    print_machine_ratio("busy", f, k, PH_BUSY);
    print_machine_ratio("idle", f, k, PH_IDLE);
    printf("\n");
    if (f->fast < f->n)
        printf("  only %d of loopfast's %d connections were fast\n", f->fast, f->n);
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
    print_cost(r);
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

static const char *const phase_names[PH_COUNT] = { "setup", "busy", "idle" };

/* {"setup": x, "busy": y, "idle": z} under `key`. */
static void json_phases(const char *key, const double v[PH_COUNT])
{
    printf(", \"%s\": {", key);
    for (int ph = 0; ph < PH_COUNT; ph++) {
        printf("%s", ph ? ", " : "");
        jnum(phase_names[ph], v[ph], 2);
    }
    printf("}");
}

/* The same for one end of a [phase][end] table. */
static void json_end(const char *key, const double v[PH_COUNT][END_COUNT], enum cost_end e)
{
    double w[PH_COUNT];
    for (int ph = 0; ph < PH_COUNT; ph++)
        w[ph] = v[ph][e];
    json_phases(key, w);
}

static void json_cost(const struct conn_cost *c)
{
    double all[PH_COUNT];
    if (!c->n) {
        printf(", \"per_connection\": null");
        return;
    }
    for (int ph = 0; ph < PH_COUNT; ph++)
        all[ph] = machine_kib(c, (enum cost_phase)ph);
    printf(", \"per_connection\": {\"connections\": %d, \"fast\": %d, ", c->n, c->fast);
    jnum("fds_client", c->fds[END_CLIENT], 2);
    printf(", ");
    jnum("fds_server", c->fds[END_SERVER], 2);
    json_end("rss_kib_client", c->rss_kib, END_CLIENT);
    json_end("rss_kib_server", c->rss_kib, END_SERVER);
    json_end("pss_kib_client", c->pss_kib, END_CLIENT);
    json_end("pss_kib_server", c->pss_kib, END_SERVER);
    json_phases("shmem_kib", c->shmem_kib);
    json_phases("slab_kib", c->slab_kib);
    json_phases("machine_kib", all);
    printf("}");
}

/* loopfast / kernel TCP per connection: descriptors of each end, and the
 * machine's memory (Pss of both ends + Slab) at each moment. */
static void json_cost_ratios(const struct conn_cost *f, const struct conn_cost *k)
{
    double all[PH_COUNT];
    printf(", \"loopfast_per_connection_vs_kernel\": ");
    if (!f->n || !k->n) {
        printf("null");
        return;
    }
    for (int ph = 0; ph < PH_COUNT; ph++)
        all[ph] = ratio(machine_kib(f, (enum cost_phase)ph), machine_kib(k, (enum cost_phase)ph));
    printf("{");
    jnum("fds_client", ratio(f->fds[END_CLIENT], k->fds[END_CLIENT]), 3);
    printf(", ");
    jnum("fds_server", ratio(f->fds[END_SERVER], k->fds[END_SERVER]), 3);
    json_phases("machine_memory", all);
    printf("}");
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
    printf(", ");
    jnum("connect2_us", r->connect2_us, 3);
    if (t == T_TCP || t == T_LOOPFAST)
        printf(", \"fast\": %s", r->fast ? "true" : "false");
    if (t == T_LOOPFAST) {
        printf(", ");
        jnum("rtt_nospin_us", r->rtt_nospin_us, 3);
    }
    json_sizes(r);
    json_cost(&r->cost);
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

/* loopfast / ring for each metric, the median of the alternated rounds' ratios
 * (how far loopfast is from the ceiling), and each round's. */
static void json_to_ceiling(const struct ceiling *c)
{
    static const char *const names[CM_COUNT] = { "latency", "msgs", "stream" };
    printf("\"loopfast_vs_ring\": {");
    for (int m = 0; m < CM_COUNT; m++) {
        double median, lo, hi;
        ceiling_stats(c, (enum ceiling_metric)m, &median, &lo, &hi);
        jnum(names[m], median, 3);
        printf(", ");
    }
    printf("\"rounds\": [");
    for (int i = 0; i < c->rounds; i++) {
        printf("%s{", i ? ", " : "");
        for (int m = 0; m < CM_COUNT; m++) {
            printf("%s", m ? ", " : "");
            jnum(names[m], c->ratio[m][i], 3);
        }
        printf("}");
    }
    printf("]}");
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
    json_to_ceiling(&f->ceiling);
    printf(", ");
    jnum("loopfast_connect_vs_kernel", ratio(f->connect_us, k->connect_us), 3);
    printf(", ");
    jnum("loopfast_connect_cpu_vs_kernel", ratio(f->connect_cpu_us, k->connect_cpu_us), 3);
    printf(", ");
    jnum("loopfast_connect2_vs_kernel", ratio(f->connect2_us, k->connect2_us), 3);
    printf(", ");
    jnum("loopfast_nospin_latency_vs_kernel", ratio(f->rtt_nospin_us, k->rtt_median_us), 3);
    json_cost_ratios(&f->cost, &k->cost);
    printf("}}\n");
}
