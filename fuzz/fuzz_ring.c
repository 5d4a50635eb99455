/*
 * fuzz_ring.c - the ring against a hostile peer: the input drives a sequence
 * of writes, reads and peeks, and between them overwrites the shared indices
 * and flags with arbitrary values, as a buggy or malicious peer could.  No
 * call may touch memory outside the ring or return more than asked.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char area[RING_MIN_SIZE];
    static unsigned char buf[2 * RING_MIN_SIZE];
    struct ring_ctl ctl;
    struct ring r;
    memset(&ctl, 0, sizeof ctl);
    ring_init(&r, &ctl, area, RING_MIN_SIZE);
    size_t i = 0;
    while (i + 3 <= size) {
        uint8_t op = data[i];
        size_t len = ((size_t)data[i + 1] << 8 | data[i + 2]) % sizeof buf;
        i += 3;
        ssize_t n = 0;
        switch (op % 5) {
        case 0:
            n = ring_write(&r, buf, len);
            break;
        case 1:
            n = ring_read(&r, buf, len, 0);
            break;
        case 2:
            n = ring_read(&r, buf, len, 1);
            break;
        case 3:   /* the peer scribbles on an index */
            if (i + 8 <= size) {
                uint64_t v;
                memcpy(&v, data + i, 8);
                i += 8;
                if (op & 0x80)
                    ctl.head = v;
                else
                    ctl.tail = v;
            }
            break;
        default: {
            ssize_t a = ring_readable(&r), w = ring_writable(&r);
            if ((a < 0) != (w < 0) || (a >= 0 && (uint64_t)(a + w) != RING_MIN_SIZE))
                abort();
        }
        }
        if (n > (ssize_t)len || n < -1)
            abort();
    }
    return 0;
}
