/*
 * loopfast.h - the public interface of loopfast, a TCP loopback fast path.
 *
 * Two processes on one machine that talk TCP over 127.0.0.0/8 or ::1 can move
 * their payload onto shared memory instead of the kernel's TCP/IP stack.  The
 * contract is that of Windows' SIO_LOOPBACK_FAST_PATH control code:
 *
 *   - both ends opt in: the connecting socket before connect(), the listening
 *     socket before accept() (every socket it accepts inherits the choice);
 *   - when only one end opted in, the connection is ordinary TCP;
 *   - once a connection is on the fast path it stays there for its life.
 *
 * A program gets the fast path by linking libloopfast (or LD_PRELOAD of
 * libloopfast.so) and opting in:
 *
 *     int on = 1;
 *     if (loopfast_ioctl(fd, LOOPFAST_SIO_LOOPBACK_FAST_PATH,
 *                        &on, sizeof on, NULL, 0, NULL) != 0)
 *         perror("loopfast_ioctl");   // the socket simply stays ordinary TCP
 *
 * After that the ordinary calls (read, write, send, recv, poll, epoll, close,
 * ...) work on the socket as on any TCP socket.  See loopfast_ioctl(3),
 * loopfast_fd_is_fast(3) and loopfast(7).
 */
#ifndef LOOPFAST_H
#define LOOPFAST_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The value of Windows' SIO_LOOPBACK_FAST_PATH (_WSAIOW(IOC_VENDOR, 16)). */
#define LOOPFAST_SIO_LOOPBACK_FAST_PATH 0x98000010UL

/*
 * loopfast_ioctl - the WSAIoctl() of loopfast, for one control code.
 *
 * With code LOOPFAST_SIO_LOOPBACK_FAST_PATH, `in` points to an int (Windows
 * BOOL): non-zero opts the TCP socket `fd` in, zero opts it out.  The output
 * buffer is unused: out_len must be 0.  *bytes_returned, when given, is set
 * to 0.
 *
 * Returns 0, or -1 with errno:
 *   EFAULT    in is NULL
 *   EINVAL    in_len < sizeof(int), out_len != 0, unknown code, or fd is a
 *             socket that is not TCP (UDP, AF_UNIX, raw)
 *   EBADF     fd is not open
 *   ENOTSOCK  fd is not a socket
 *   EISCONN   the TCP socket is already connected (opt in before connect())
 */
int loopfast_ioctl(int fd, unsigned long code, const void *in, size_t in_len,
                   void *out, size_t out_len, size_t *bytes_returned);

/*
 * loopfast_fd_is_fast - is this connection's data on the fast path?
 *
 * Returns 1 when the payload of the connection on `fd` flows through shared
 * memory (it stays 1 after end-of-file, until close), 0 when it is ordinary
 * TCP or not connected, -1 with errno EBADF (not open) or ENOTSOCK.
 */
int loopfast_fd_is_fast(int fd);

#ifdef __cplusplus
}
#endif

#endif /* LOOPFAST_H */
