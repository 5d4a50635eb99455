/*
 * answer.c - the handshake's messages and the server's proof, as the
 * receiving end checks them (docs/design.md, 4.3 and 4.7).
 *
 * Kept apart from handshake.c so that the fuzzer can drive the parsers alone.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* Checks an answer's bytes as received: `n` bytes in buf, `nfds` descriptors,
 * recvmsg's flags.  0 and the ring size when it is well formed. */
int answer_parse(const void *buf, size_t n, int nfds, int msg_flags, struct answer_msg *out)
{
    struct answer_msg a;
    if (n != sizeof a || (msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
        return -1;
    memcpy(&a, buf, sizeof a);
    if (a.magic != LF_MAGIC || a.version != LF_VERSION || !ring_size_valid(a.ring_size) ||
        (a.flags & ~(ANSWER_NEW_LINK | ANSWER_ALONE)) || a.slot >= LINK_SLOTS ||
        nfds != ((a.flags & ANSWER_NEW_LINK) ? ANSWER_FDS : 1))
        return -1;
    *out = a;
    return 0;
}

/* The client's proof as the server receives it: 0 and its header when
 * well formed (one descriptor). */
int proof_parse(const void *buf, size_t n, int nfds, int msg_flags, struct proof_msg *out)
{
    struct proof_msg p;
    if (n != sizeof p || (msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
        return -1;
    memcpy(&p, buf, sizeof p);
    if (p.magic != LF_MAGIC || p.version != LF_VERSION || p.slot >= LINK_SLOTS || p.pad ||
        nfds != 1)
        return -1;
    *out = p;
    return 0;
}

/* The kernel writes one line per file an epoll holds:
 *   "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x"
 * after the epoll's own pos, flags, mnt_id and ino lines. */
int fdinfo_only_target(const char *text, uint64_t *ino, uint64_t *dev)
{
    const char *t = strstr(text, "tfd:");
    if (!t || strstr(t + 4, "tfd:"))
        return -1;
    int tfd;
    unsigned events;
    unsigned long long data, i, d;
    long long pos;
    if (sscanf(t, "tfd: %d events: %x data: %llx pos:%lli ino:%llx sdev:%llx", &tfd, &events,
               &data, &pos, &i, &d) != 6)
        return -1;
    *ino = i;
    *dev = d;
    return 0;
}
