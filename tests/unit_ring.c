/* The ring: wrap-around with random sizes and a checksum, full, empty, peek,
 * and hostile indices that must be refused without touching memory outside
 * the data area. */
#include "helpers.h"
#include "ring.h"

#define SIZE RING_MIN_SIZE
#define GUARD 256

static unsigned char area[GUARD + SIZE + GUARD];
static struct ring_ctl ctl;

static void check_guards(void)
{
    for (int i = 0; i < GUARD; i++)
        CHECK(area[i] == 0xAA && area[GUARD + SIZE + i] == 0xAA, "guard byte %d overwritten", i);
}

int main(void)
{
    struct ring r;
    memset(area, 0xAA, sizeof area);
    ring_init(&r, &ctl, area + GUARD, SIZE);
    static unsigned char in[3 * SIZE], out[3 * SIZE];
    uint64_t hin = FNV_INIT, hout = FNV_INIT;
    srand(7);
    CHECK(ring_readable(&r) == 0 && ring_read(&r, out, 10, 0) == 0, "empty ring reads 0");
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)rand() % SIZE;
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)rand();
        ssize_t w = ring_write(&r, in, n);
        CHECK(w >= 0 && (size_t)w <= n, "write");
        hin = fnv(hin, in, (size_t)w);
        size_t m = (size_t)rand() % SIZE;
        ssize_t peek = ring_read(&r, out, m, 1);
        ssize_t got = ring_read(&r, out + SIZE, m, 0);
        CHECK(peek == got && !memcmp(out, out + SIZE, (size_t)got), "peek differs from read");
        hout = fnv(hout, out + SIZE, (size_t)got);
    }
    ssize_t left;
    while ((left = ring_read(&r, out, SIZE, 0)) > 0)
        hout = fnv(hout, out, (size_t)left);
    CHECK(hin == hout, "stream through the ring corrupted");
    /* full */
    CHECK(ring_write(&r, in, 2 * SIZE) == SIZE && ring_writable(&r) == 0 && ring_write(&r, in, 1) == 0,
          "a full ring takes exactly its size");
    /* iovecs */
    CHECK(ring_read(&r, out, SIZE, 0) == SIZE, "drain");
    struct iovec iov[2] = { { in, 5 }, { in + 100, 7 } };
    CHECK(ring_writev(&r, iov, 2) == 12 && ring_read(&r, out, 12, 0) == 12 &&
          !memcmp(out, in, 5) && !memcmp(out + 5, in + 100, 7), "writev/read");
    /* hostile indices */
    uint64_t bad[][2] = { { 100, 200 }, { SIZE + 1, 0 }, { UINT64_MAX, 0 }, { 1ull << 63, 0 } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctl.head = bad[i][0];
        ctl.tail = bad[i][1];
        CHECK(ring_readable(&r) == -1 && ring_writable(&r) == -1, "bad indices %zu accepted", i);
        CHECK(ring_read(&r, out, SIZE, 0) == -1 && ring_write(&r, in, SIZE) == -1, "bad indices %zu used", i);
    }
    /* indices near wrap of the 64-bit counter are fine */
    ctl.head = ctl.tail = UINT64_MAX - 10;
    CHECK(ring_write(&r, in, 100) == 100 && ring_read(&r, out, 100, 0) == 100 && !memcmp(in, out, 100),
          "64-bit wrap");
    check_guards();
    CHECK(ring_size_valid(SIZE) && !ring_size_valid(SIZE + 1) && !ring_size_valid(RING_MIN_SIZE / 2) &&
          !ring_size_valid((uint64_t)RING_MAX_SIZE * 2), "ring_size_valid");
    return 0;
}
