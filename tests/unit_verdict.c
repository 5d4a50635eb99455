/* The server's verdicts in the region (verdict.c): the keyed hash matches
 * SipHash-2-4's published vectors, a proof is believed only for the
 * answer it names and the socket it was for, and no tag a client can see
 * (its own slots' past ones) vouches for another slot, nonce or region. */
#include "helpers.h"
#include "internal.h"

static struct link_verdicts v;

static struct lf_link server_link(uint64_t id)
{
    struct lf_link l;
    memset(&l, 0, sizeof l);
    l.id = id;
    l.verdicts = &v;
    return l;
}

int main(void)
{
    /* key 00 01 .. 0f; messages 00 01 .. of 0 and 8 bytes */
    const uint64_t k[2] = { 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull };
    const uint64_t m = 0x0706050403020100ull;
    CHECK(verdict_siphash(k, NULL, 0) == 0x726fdb47dd0e0e31ull, "SipHash-2-4 of nothing");
    CHECK(verdict_siphash(k, &m, 1) == 0x93f5f5799a932462ull, "SipHash-2-4 of 8 bytes");

    CHECK(verdict_key_ready() == 0, "a key is made");
    char hex[33];
    CHECK(verdict_key_export(hex) == 1 && strlen(hex) == 32, "the key is exported for exec");
    struct lf_link a = server_link(0x1111), b = server_link(0x2222);
    CHECK(!link_proved(&a, 5, 7), "nothing proved before any proof");
    link_expect(&a, 5, 7, 0xc00c1e);
    CHECK(!link_proved(&a, 5, 7), "an answer alone proves nothing");
    link_record_proof(&a, 5, 7, 0xbad);
    CHECK(!link_proved(&a, 5, 7), "a proof with another socket is not believed");
    link_record_proof(&a, 5, 6, 0xc00c1e);
    CHECK(!link_proved(&a, 5, 7), "a proof of another answer is not believed");
    link_record_proof(&a, 5, 7, 0xc00c1e);
    CHECK(link_proved(&a, 5, 7), "the right proof is believed");
    CHECK(!link_proved(&a, 5, 8) && !link_proved(&b, 5, 7), "for that answer and region only");

    /* what a client saw of slot 5, copied to slot 6 or kept for the next answer */
    v.slot[6] = v.slot[5];
    CHECK(!link_proved(&a, 6, 7), "a tag moved to another slot vouches for nothing");
    link_expect(&a, 5, 8, 0xc00c1e);
    CHECK(!link_proved(&a, 5, 8), "an old tag does not prove the slot's next answer");
    link_record_proof(&a, 5, 7, 0xc00c1e);
    CHECK(!link_proved(&a, 5, 8), "a late proof of the old answer proves nothing new");

    /* the new image of an exec: the same key, the same verdicts */
    link_record_proof(&a, 5, 8, 0xc00c1e);
    CHECK(verdict_key_import("0123456789abcdef0123456789abcdef") == 0, "another key taken");
    CHECK(!link_proved(&a, 5, 8), "under another key the tags are worthless");
    CHECK(verdict_key_import(hex) == 0 && link_proved(&a, 5, 8), "the old key brings them back");
    CHECK(verdict_key_import("xyz") < 0 && link_proved(&a, 5, 8), "a bad key is refused");
    CHECK(!link_proved(&a, LINK_SLOTS, 8), "slots beyond the region are refused");
    return 0;
}
