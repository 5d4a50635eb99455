/*
 * loopfast/winsock.h - the Windows names of the loopback fast path, for code
 * ported from Winsock: SOCKET, DWORD, SOCKET_ERROR, SIO_LOOPBACK_FAST_PATH,
 * WSAIoctl() with the Windows arguments, WSAGetLastError() and the WSA error
 * codes the control code can give, with Windows' values.  The usual opt-in
 *
 *     int OptionValue = 1;
 *     DWORD NumberOfBytesReturned = 0;
 *     int status = WSAIoctl(s, SIO_LOOPBACK_FAST_PATH, &OptionValue,
 *                           sizeof(OptionValue), NULL, 0,
 *                           &NumberOfBytesReturned, 0, 0);
 *     if (status == SOCKET_ERROR && WSAGetLastError() == WSAEOPNOTSUPP)
 *         ...
 *
 * compiles unchanged.  Only SIO_LOOPBACK_FAST_PATH is supported; overlapped
 * (asynchronous) calls are refused with WSAEOPNOTSUPP.
 */
#ifndef LOOPFAST_WINSOCK_H
#define LOOPFAST_WINSOCK_H

#include <errno.h>
#include <stdint.h>

#include <loopfast.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int SOCKET;
typedef uint32_t DWORD;
typedef int BOOL;
typedef DWORD *LPDWORD;
typedef void *LPVOID;
typedef struct loopfast_wsaoverlapped *LPWSAOVERLAPPED;
typedef void (*LPWSAOVERLAPPED_COMPLETION_ROUTINE)(DWORD, DWORD, LPWSAOVERLAPPED, DWORD);

#define INVALID_SOCKET (-1)
#define SOCKET_ERROR (-1)
#define SIO_LOOPBACK_FAST_PATH ((DWORD)LOOPFAST_SIO_LOOPBACK_FAST_PATH)

/* Windows' values. */
#define WSAEBADF 10009
#define WSAEFAULT 10014
#define WSAEINVAL 10022
#define WSAENOTSOCK 10038
#define WSAEOPNOTSUPP 10045
#define WSAEISCONN 10056

static __thread int loopfast_wsa_last_error;

static inline int loopfast_wsa_error(int err)
{
    switch (err) {
    case EBADF: return WSAEBADF;
    case EFAULT: return WSAEFAULT;
    case ENOTSOCK: return WSAENOTSOCK;
    case EOPNOTSUPP: return WSAEOPNOTSUPP;
    case EISCONN: return WSAEISCONN;
    default: return WSAEINVAL;
    }
}

/* The error of the last WSAIoctl() that failed in this thread. */
static inline int WSAGetLastError(void)
{
    return loopfast_wsa_last_error;
}

static inline int WSAIoctl(SOCKET s, DWORD code, LPVOID in, DWORD in_len, LPVOID out,
                           DWORD out_len, LPDWORD bytes_returned, LPWSAOVERLAPPED overlapped,
                           LPWSAOVERLAPPED_COMPLETION_ROUTINE completion)
{
    size_t returned = 0;
    if (overlapped || completion) {
        loopfast_wsa_last_error = WSAEOPNOTSUPP;
        return SOCKET_ERROR;
    }
    if (loopfast_ioctl(s, code, in, in_len, out, out_len, &returned) != 0) {
        loopfast_wsa_last_error = loopfast_wsa_error(errno);
        return SOCKET_ERROR;
    }
    if (bytes_returned)
        *bytes_returned = (DWORD)returned;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* LOOPFAST_WINSOCK_H */
