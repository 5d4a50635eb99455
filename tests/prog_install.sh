#!/usr/bin/env bash
# make install / uninstall into a temporary prefix (and with DESTDIR), a
# program built with pkg-config against the installed copy using the
# Windows opt-in through <loopfast/winsock.h>, the installed CLI, man pages.
. "$(dirname "$0")/lib.sh"
need pkg-config cc make
prefix="$work/usr"
make -s -C "$top" install PREFIX="$prefix" >/dev/null || fail "make install"
for f in lib/libloopfast.so lib/libloopfast.a bin/loopfast include/loopfast.h \
         include/loopfast/winsock.h lib/pkgconfig/loopfast.pc share/man/man1/loopfast.1 \
         share/man/man7/loopfast.7 share/man/man3/loopfast_ioctl.3 share/man/man3/loopfast_fd_is_fast.3; do
    [ -e "$prefix/$f" ] || fail "make install did not install $f"
done
cat >"$work/win.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <loopfast/winsock.h>
int main(void)
{
    SOCKET s = socket(AF_INET, SOCK_STREAM, 0);
    int OptionValue = 1;
    DWORD NumberOfBytesReturned = 7;
    int status = WSAIoctl(s, SIO_LOOPBACK_FAST_PATH, &OptionValue, sizeof(OptionValue), NULL, 0,
                          &NumberOfBytesReturned, 0, 0);
    if (status == SOCKET_ERROR || NumberOfBytesReturned != 0) return 1;
    int p[2];
    if (pipe(p)) return 2;
    if (WSAIoctl(p[0], SIO_LOOPBACK_FAST_PATH, &OptionValue, sizeof(OptionValue), NULL, 0,
                 &NumberOfBytesReturned, 0, 0) != SOCKET_ERROR || WSAGetLastError() != WSAENOTSOCK) return 3;
    char out[4];
    if (WSAIoctl(s, SIO_LOOPBACK_FAST_PATH, &OptionValue, sizeof(OptionValue), out, sizeof out,
                 &NumberOfBytesReturned, 0, 0) != SOCKET_ERROR || WSAGetLastError() != WSAEINVAL) return 4;
    if (WSAIoctl(s, SIO_LOOPBACK_FAST_PATH, NULL, 0, NULL, 0, NULL, 0, 0) != SOCKET_ERROR ||
        WSAGetLastError() != WSAEFAULT) return 5;
    if (WSAIoctl(s, SIO_LOOPBACK_FAST_PATH, &OptionValue, sizeof(OptionValue), NULL, 0, NULL,
                 (LPWSAOVERLAPPED)&OptionValue, 0) != SOCKET_ERROR || WSAGetLastError() != WSAEOPNOTSUPP) return 6;
    puts("winsock ok");
    return 0;
}
C
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs loopfast) || fail "pkg-config"
cc -Wall -Wextra -Werror -o "$work/win" "$work/win.c" $flags || fail "build against the installed copy: $flags"
LD_LIBRARY_PATH="$prefix/lib" "$work/win" || fail "the Windows opt-in snippet failed (exit $?)"
"$prefix/bin/loopfast" --help >/dev/null || fail "installed loopfast --help"
"$prefix/bin/loopfast" run -- /bin/true || fail "installed loopfast run could not find its library"
make -s -C "$top" uninstall PREFIX="$prefix" >/dev/null || fail "make uninstall"
left=$(find "$prefix" -type f | head -5)
[ -z "$left" ] || fail "make uninstall left: $left"
make -s -C "$top" install DESTDIR="$work/stage" PREFIX=/usr/local >/dev/null || fail "install with DESTDIR"
[ -e "$work/stage/usr/local/lib/pkgconfig/loopfast.pc" ] || fail "DESTDIR not honoured"
grep -q "^prefix=/usr/local$" "$work/stage/usr/local/lib/pkgconfig/loopfast.pc" || fail "pc file prefix"
echo ok
