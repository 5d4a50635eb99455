/*
 * verdict.c - the server's verdicts on its clients' proofs (design 4.7),
 * kept in the region where the client can read them but cannot forge them.
 *
 * Every holder of a server end (forked, exec'd, spawned) must see a proof
 * that another holder read from the channel, and the client must not be
 * able to write "proved" for a connection it did not prove.  The verdicts
 * used to live in a memfd of the server's own, one more descriptor per
 * region.  Now they live in the region's verdict pages, each a keyed hash
 * (SipHash-2-4) of what it vouches for, under a key that only the server's
 * process and the images it forks, execs and spawns hold (128 random bits,
 * passed across exec with the connections, design 10).  The client sees
 * the tags of its own past answers; a tag names the region (its id, never
 * in shared memory), the slot and the answer's nonce, which the region's
 * owner never repeats, so no tag it saw vouches for anything else.  A
 * client that scribbles on them only keeps its own connections plain.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

static uint64_t key[2];
static int have_key;
static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;

/* A child forked while another thread made the key starts with the lock
 * free (and makes its own key if that one was not finished). */
static void key_lock_in_child(void)
{
    pthread_mutex_init(&key_lock, NULL);
}

__attribute__((constructor)) static void verdict_init(void)
{
    lf_atfork(NULL, NULL, key_lock_in_child);
}

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND()                                                              \
    do {                                                                         \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);               \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                   \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                   \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);               \
    } while (0)

/* SipHash-2-4 of n little-endian 64-bit words (the reference algorithm,
 * restricted to whole words). */
uint64_t verdict_siphash(const uint64_t k[2], const uint64_t *w, size_t n)
{
    uint64_t v0 = k[0] ^ 0x736f6d6570736575ull, v1 = k[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = k[0] ^ 0x6c7967656e657261ull, v3 = k[1] ^ 0x7465646279746573ull;
    for (size_t i = 0; i < n; i++) {
        v3 ^= w[i];
        SIP_ROUND();
        SIP_ROUND();
        v0 ^= w[i];
    }
    uint64_t last = (uint64_t)(n * 8) << 56;
    v3 ^= last;
    SIP_ROUND();
    SIP_ROUND();
    v0 ^= last;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIP_ROUND();
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The process's key, made on first need: 0 when it has one. */
int verdict_key_ready(void)
{
    if (__atomic_load_n(&have_key, __ATOMIC_ACQUIRE))
        return 0;
    lf_lock(&key_lock);
    if (!have_key && getrandom(key, sizeof key, GRND_NONBLOCK) == sizeof key)
        __atomic_store_n(&have_key, 1, __ATOMIC_RELEASE);
    lf_unlock(&key_lock);
    return have_key ? 0 : -1;
}

/* exec: "%016llx%016llx" of the key into buf (33 bytes); 0 when there is none */
int verdict_key_export(char buf[33])
{
    if (!__atomic_load_n(&have_key, __ATOMIC_ACQUIRE))
        return 0;
    snprintf(buf, 33, "%016llx%016llx", (unsigned long long)key[0], (unsigned long long)key[1]);
    return 1;
}

/* The new image: the old image's key, so that its verdicts still hold. */
int verdict_key_import(const char *hex)
{
    unsigned long long a, b;
    if (strlen(hex) != 32 || sscanf(hex, "%16llx%16llx", &a, &b) != 2)
        return -1;
    lf_lock(&key_lock);
    key[0] = a;
    key[1] = b;
    __atomic_store_n(&have_key, 1, __ATOMIC_RELEASE);
    lf_unlock(&key_lock);
    return 0;
}

enum { TAG_EXPECT = 1, TAG_PROVED = 2 };

static uint64_t tag(int kind, const struct lf_link *l, uint32_t slot, uint64_t nonce,
                    uint64_t cookie)
{
    const uint64_t w[5] = { (uint64_t)kind, l->id, slot, nonce, cookie };
    return verdict_siphash(key, w, 5);
}

static int usable(const struct lf_link *l, uint32_t slot)
{
    return l->verdicts && slot < LINK_SLOTS && __atomic_load_n(&have_key, __ATOMIC_ACQUIRE);
}

/* Before the answer goes: what the slot's proof must be. */
void link_expect(struct lf_link *l, uint32_t slot, uint64_t nonce, uint64_t cookie)
{
    if (!usable(l, slot))
        return;   /* no proof can be believed: the connection stays plain */
    __atomic_store_n(&l->verdicts->slot[slot].expect, tag(TAG_EXPECT, l, slot, nonce, cookie),
                     __ATOMIC_RELEASE);
}

int link_proved(struct lf_link *l, uint32_t slot, uint64_t nonce)
{
    return usable(l, slot) && nonce &&
           __atomic_load_n(&l->verdicts->slot[slot].proved, __ATOMIC_ACQUIRE) ==
               tag(TAG_PROVED, l, slot, nonce, 0);
}

/* A proof read from the channel, for whichever holder's connection it is:
 * believed when it names the answer the slot has now and carries the
 * socket that answer was for. */
void link_record_proof(struct lf_link *l, uint32_t slot, uint64_t nonce, uint64_t cookie)
{
    if (!usable(l, slot) || !nonce)
        return;
    if (__atomic_load_n(&l->verdicts->slot[slot].expect, __ATOMIC_ACQUIRE) ==
        tag(TAG_EXPECT, l, slot, nonce, cookie))
        __atomic_store_n(&l->verdicts->slot[slot].proved, tag(TAG_PROVED, l, slot, nonce, 0),
                         __ATOMIC_RELEASE);
}

/* One reader of the channel at a time among the server's holders, so that
 * the message a reader peeked at is the one it consumes.  A reader that
 * died holding it is replaced.  The word is in the region: a client that
 * scribbles on it stalls or loses only its own proofs.  -1: busy, look
 * again later. */
int link_lock_channel(struct lf_link *l)
{
    if (!l->verdicts || l->chan < 0)
        return -1;
    lf_lock(&l->chan_lock);
    int32_t *r = &l->verdicts->reader, was = 0;
    if (__atomic_compare_exchange_n(r, &was, lf_pid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ||
        ((was == lf_pid || was < 0 || (kill(was, 0) < 0 && errno == ESRCH)) &&   /* stale */
         __atomic_compare_exchange_n(r, &was, lf_pid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        return 0;
    lf_unlock(&l->chan_lock);
    return -1;
}

void link_unlock_channel(struct lf_link *l)
{
    __atomic_store_n(&l->verdicts->reader, 0, __ATOMIC_RELEASE);
    lf_unlock(&l->chan_lock);
}
