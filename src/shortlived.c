/*
 * shortlived.c - destinations whose connections end before the fast path
 * would pay for itself, learned by the client.
 *
 * A connection's offer and its server's answer cost both processes about
 * twenty system calls (a unix listener, a proof, a slot), 60-100 us on a
 * host where a call costs 1-2 us; the rings save some 15 us a round trip.
 * A connection per request (nginx to php-fpm or uwsgi without keep-alive,
 * lighttpd's mod_proxy) never makes the second exchange that switches it
 * (pending.c), so it paid for nothing: such stacks ran at 0.4-0.7x the
 * kernel's requests per second.  So a client counts, per destination, the
 * connections in a row that closed without switching (also those whose
 * server never answered: no loopfast there), each within DENSE_NS of the
 * one before: after SHORT_STREAK of them its connections there make no
 * offer and are plain TCP from the start, but for one in PROBE_EVERY, which
 * offers as before.  One that switches ends the streak, and so does a
 * pause: sparse short connections (a proxy's health checks beside its
 * long ones to the same server) cost little and never stop the offers.
 * Nor do short ones among long ones: a destination where a connection
 * switched within the last SWITCHED_NS keeps its offers, and the streak
 * is long: a program's first connections may all be short (six threads
 * that each begin with one) before its long ones, which must not lose the
 * fast path for it.
 *
 * The table is small and direct-mapped (a collision forgets a destination,
 * which then offers again); its words are read and written without a lock:
 * a lost update changes only whether one connection offers.
 */
#include <netinet/in.h>
#include <string.h>

#include "internal.h"

#define SLOTS 64
#define SHORT_STREAK 16
#define PROBE_EVERY 16
#define DENSE_NS (100ull * 1000000)
#define SWITCHED_NS (1000ull * 1000000)

static struct {
    uint64_t key;       /* the destination; 0: free */
    uint32_t streak;    /* connections in a row that did not switch */
    uint32_t skipped;   /* connections made without an offer since the last probe */
    uint64_t last;      /* coarse_ns() of the streak's last connection */
    uint64_t switched;  /* coarse_ns() when a connection there last switched; 0: never */
} table[SLOTS];

/* A destination as one word (address and port; IPv6 folded). */
static uint64_t key_of(const struct sockaddr *dst)
{
    uint64_t k = 0;
    if (dst->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)dst;
        k = (uint64_t)in->sin_addr.s_addr << 16 | in->sin_port;
    } else if (dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)dst;
        uint64_t half[2];
        memcpy(half, &in6->sin6_addr, sizeof half);
        k = (half[0] ^ half[1] * 0x9e3779b97f4a7c15ull) ^ in6->sin6_port;
    }
    return k | 1;   /* never 0 */
}

static unsigned slot_of(uint64_t key)
{
    return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> 58) % SLOTS;
}

int shortlived_skip(const struct sockaddr *dst)
{
    uint64_t key = key_of(dst);
    unsigned i = slot_of(key);
    uint64_t now = coarse_ns(), switched = __atomic_load_n(&table[i].switched, __ATOMIC_RELAXED);
    if (__atomic_load_n(&table[i].key, __ATOMIC_RELAXED) != key ||
        __atomic_load_n(&table[i].streak, __ATOMIC_RELAXED) < SHORT_STREAK ||
        now - __atomic_load_n(&table[i].last, __ATOMIC_RELAXED) > DENSE_NS ||
        (switched && now - switched < SWITCHED_NS))
        return 0;
    uint32_t n = __atomic_add_fetch(&table[i].skipped, 1, __ATOMIC_RELAXED);
    return n % PROBE_EVERY != 0;   /* every PROBE_EVERY-th offers */
}

/* The destination's entry, taken over from another if need be. */
static unsigned entry_for(const struct sockaddr_storage *dst)
{
    uint64_t key = key_of((const struct sockaddr *)dst);
    unsigned i = slot_of(key);
    if (__atomic_load_n(&table[i].key, __ATOMIC_RELAXED) != key) {
        __atomic_store_n(&table[i].key, key, __ATOMIC_RELAXED);
        __atomic_store_n(&table[i].streak, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&table[i].skipped, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&table[i].switched, 0, __ATOMIC_RELAXED);
    }
    return i;
}

void shortlived_switched(const struct sockaddr_storage *dst)
{
    unsigned i = entry_for(dst);
    __atomic_store_n(&table[i].streak, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&table[i].switched, coarse_ns() | 1, __ATOMIC_RELAXED);
}

void shortlived_unswitched(const struct sockaddr_storage *dst)
{
    unsigned i = entry_for(dst);
    uint64_t now = coarse_ns();
    uint32_t streak = __atomic_load_n(&table[i].streak, __ATOMIC_RELAXED);
    if (now - __atomic_load_n(&table[i].last, __ATOMIC_RELAXED) > DENSE_NS)
        streak = 1;   /* after a pause: a new streak */
    else if (streak < UINT32_MAX)
        streak++;
    __atomic_store_n(&table[i].streak, streak, __ATOMIC_RELAXED);
    __atomic_store_n(&table[i].last, now, __ATOMIC_RELAXED);
}
