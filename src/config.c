/*
 * config.c - loopfast's settings, read once from the environment.
 *
 *   LOOPFAST_MODE     optin (default) | all | off
 *   LOOPFAST_SPIN_US  how long a blocked call spins before it sleeps
 *   LOOPFAST_RING_KB  bytes of each direction's ring, in KiB
 *   LOOPFAST_MAX_FDS  most descriptors loopfast keeps in a process
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define DEFAULT_SPIN_US 50
/* Bulk throughput depends on the ring's depth far more than latency does:
 * iperf3's 128 KiB writes run at about 2x the kernel with 256 KiB, 2.7x with
 * 512 KiB, 4-4.7x with 1 MiB (docs/performance.md).  Without
 * LOOPFAST_RING_KB a ring holds what kernel TCP holds for a writer whose
 * reader reads nothing (bufsize_tcp_hold: 4.29 MB with Linux's defaults, in
 * an 8 MiB ring), so that a program that writes that much before it reads
 * blocks where it would over TCP, not earlier: a 1 MiB ring made one that
 * writes 4 MB before reading its echo wait for ever.  Pages are taken only
 * as they are written, and given back when idle (trim.c). */
#define RING_SIZE_LEAST (1u << 20)

struct lf_config lf_config = {
    .mode = LF_MODE_OPTIN,
    .spin_us = DEFAULT_SPIN_US,
};

static void warn_bad(const char *name, const char *value, const char *what)
{
    fprintf(stderr, "loopfast: ignoring %s=%s: %s\n", name, value, what);
}

static void read_mode(void)
{
    const char *v = getenv("LOOPFAST_MODE");
    if (!v || !*v)
        return;
    if (!strcmp(v, "optin"))
        lf_config.mode = LF_MODE_OPTIN;
    else if (!strcmp(v, "all"))
        lf_config.mode = LF_MODE_ALL;
    else if (!strcmp(v, "off"))
        lf_config.mode = LF_MODE_OFF;
    else
        warn_bad("LOOPFAST_MODE", v, "use optin, all or off");
}

/* Parses a whole decimal number in [lo, hi]; returns 0 when it is one. */
static int parse_number(const char *v, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

static void read_spin(void)
{
    const char *v = getenv("LOOPFAST_SPIN_US");
    unsigned long n;
    if (!v || !*v)
        return;
    if (parse_number(v, 0, 1000000, &n))
        warn_bad("LOOPFAST_SPIN_US", v, "use microseconds from 0 to 1000000");
    else
        lf_config.spin_us = (unsigned)n;
}

static void read_ring(void)
{
    const char *v = getenv("LOOPFAST_RING_KB");
    unsigned long n;
    if (!v || !*v)
        return;
    if (parse_number(v, RING_MIN_SIZE >> 10, RING_MAX_SIZE >> 10, &n)) {
        warn_bad("LOOPFAST_RING_KB", v, "use KiB from 4 to 65536");
        return;
    }
    uint64_t size = RING_MIN_SIZE;
    while (size < (uint64_t)n << 10)
        size <<= 1;
    lf_config.ring_size = size;
}

static void read_max_fds(void)
{
    const char *v = getenv("LOOPFAST_MAX_FDS");
    unsigned long n;
    if (!v || !*v)
        return;
    if (parse_number(v, 0, 1u << 20, &n))
        warn_bad("LOOPFAST_MAX_FDS", v, "use a number of descriptors from 0 to 1048576");
    else
        lf_config.max_fds = (unsigned)n;
}

uint64_t config_ring_size(void)
{
    if (lf_config.ring_size)
        return lf_config.ring_size;
    static uint64_t size;   /* threads may race to fill it in: they agree */
    uint64_t v = __atomic_load_n(&size, __ATOMIC_RELAXED);
    if (!v) {
        uint64_t hold = bufsize_tcp_hold();
        for (v = RING_SIZE_LEAST; v < hold && v < RING_MAX_SIZE; v <<= 1)
            ;
        __atomic_store_n(&size, v, __ATOMIC_RELAXED);
    }
    return v;
}

uint64_t config_ring_hold(uint64_t ring_size)
{
    uint64_t hold = lf_config.ring_size ? ring_size : bufsize_tcp_hold();
    return hold < ring_size ? hold : ring_size;
}

void config_init(void)
{
    read_mode();
    read_spin();
    read_ring();
    read_max_fds();
    policy_init();
}

uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
