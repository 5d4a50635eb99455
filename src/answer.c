/*
 * answer.c - the server's answer message, as the client checks it.
 *
 * Kept apart from handshake.c so that the fuzzer can drive the parser alone.
 */
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* Checks an answer's bytes as received: `n` bytes in buf, `nfds` descriptors,
 * recvmsg's flags.  0 and the ring size when it is well formed. */
int answer_parse(const void *buf, size_t n, int nfds, int msg_flags, uint64_t *ring_size)
{
    struct answer_msg a;
    if (n != sizeof a || nfds != ANSWER_FDS || (msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
        return -1;
    memcpy(&a, buf, sizeof a);
    if (a.magic != LF_MAGIC || a.version != LF_VERSION || !ring_size_valid(a.ring_size))
        return -1;
    *ring_size = a.ring_size;
    return 0;
}
