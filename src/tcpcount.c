/*
 * tcpcount.c - what the kernel says a program gave a TCP socket to send:
 * the bytes sent once (retransmissions aside) and those still queued
 * unsent.  A file of its own: the tcp_info with the byte counters is
 * linux/tcp.h's, which cannot be included beside glibc's netinet/tcp.h.
 * Raw system calls: our own getsockopt and ioctl would answer for a fast
 * socket from the rings.
 */
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int tcp_bytes_given(int fd, uint64_t *given)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    int unsent = 0;
    if (syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof ti.tcpi_bytes_retrans ||
        syscall(SYS_ioctl, fd, SIOCOUTQNSD, &unsent) < 0 || unsent < 0)
        return -1;
    *given = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans + (uint64_t)unsent;
    return 0;
}
