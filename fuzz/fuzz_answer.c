/*
 * fuzz_answer.c - the client's side of the handshake against a hostile
 * answer: arbitrary message bytes, descriptor counts and flags go through the
 * parser; arbitrary memfd contents, sizes and seals go through link_adopt() and shm_slot();
 * a mapping that passes is then used as a ring while the input scribbles on
 * its header.  The same bytes go through the client's proof parser and,
 * as text, the epoll fdinfo parser that checks the server's proof.  Nothing
 * may crash, leak or touch memory outside the mapping.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int make_memfd(const uint8_t *data, size_t size, uint8_t how)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    /* a region: its header page, then slot 0 (header and rings) */
    size_t len = (how & 1) ? 2 * LF_HEADER_SIZE + 2 * RING_MIN_SIZE : (size_t)(how >> 2) * 1024;
    if (ftruncate(fd, (off_t)len) < 0 || pwrite(fd, data, size < len ? size : len, 0) < 0 ||
        (len > LF_HEADER_SIZE &&
         pwrite(fd, data, size < len - LF_HEADER_SIZE ? size : len - LF_HEADER_SIZE,
                LF_HEADER_SIZE) < 0)) {
        close(fd);
        return -1;
    }
    if (how & 2)
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    return fd;
}

static void use_rings(struct lf_conn *c, const uint8_t *data, size_t size)
{
    static unsigned char buf[2 * RING_MIN_SIZE];
    for (size_t i = 0; i + 9 <= size; i += 9) {
        uint64_t v;
        memcpy(&v, data + i + 1, 8);
        switch (data[i] % 4) {
        case 0:
            ring_write(&c->tx, buf, v % sizeof buf);
            break;
        case 1:
            ring_read(&c->rx, buf, v % sizeof buf, data[i] & 0x10);
            break;
        default:   /* scribble anywhere in the header page */
            memcpy((char *)c->sh + (v >> 32) % (LF_HEADER_SIZE - 8), &v, 8);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    libc_init();
    if (size < 3)
        return 0;
    uint8_t nfds = data[0] % 8, flags = data[1], how = data[2];
    data += 3;
    size -= 3;
    uint64_t ring_size, ino, dev;
    struct answer_msg a;
    size_t msg_len = size < sizeof a ? size : sizeof a + (size_t)(flags & 1);
    struct proof_msg p;
    (void)proof_parse(data, size < 24 ? size : 24 + (size_t)(flags & 1), nfds % 3, (flags & 2) ? MSG_CTRUNC : 0, &p);
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = 0;
        (void)fdinfo_only_target(text, &ino, &dev);
        free(text);
    }
    if (answer_parse(data, msg_len, nfds, (flags & 2) ? MSG_TRUNC : 0, &a) == 0)
        ring_size = a.ring_size;
    else
        ring_size = (how & 1) ? RING_MIN_SIZE : (uint64_t)flags << 12;   /* attach anyway */
    int fd = make_memfd(data, size, how);
    if (fd < 0)
        return 0;
    int pair[2] = { -1, -1 };
    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair);
    if (pair[1] >= 0)
        close(pair[1]);
    int fds[4] = { fd, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                   pair[0] };
    struct lf_link *l = link_adopt(fds, 1, ring_size, 0);   /* owns fds */
    struct lf_conn *c = l && link_covers(l, 0) ? shm_slot(l, 0, LF_CLIENT, 0) : NULL;
    if (l)
        link_put(l);
    if (!c)
        return 0;
    use_rings(c, data, size);
    c->leased_by = 0;   /* no lease to give back: nobody made it */
    conn_free(c);   /* the link goes with the idle ones */
    return 0;
}
