/*
 * tcpcount.c - what the kernel says a program gave a TCP socket to send:
 * the bytes sent once (retransmissions aside) and those still queued
 * unsent.  A file of its own: the tcp_info with the byte counters is
 * linux/tcp.h's, which cannot be included beside glibc's netinet/tcp.h.
 * A raw system call: our own getsockopt would answer for a fast
 * socket from the rings.
 */
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One call: tcp_info counts the unsent bytes too (tcpi_notsent_bytes, as
 * SIOCOUTQNSD does, since Linux 4.6; the byte counters came in 4.19), from
 * the same look at the socket (an ioctl for them was a second system call
 * at each end's switch). */
int tcp_bytes_given(int fd, uint64_t *given)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof ti.tcpi_bytes_retrans)
        return -1;
    *given = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans + ti.tcpi_notsent_bytes;
    return 0;
}
