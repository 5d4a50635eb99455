#!/usr/bin/env bash
# `loopfast run` where /proc is not mounted (a chroot, a bare container):
# it finds libloopfast.so beside itself by the path it was started by, and
# a forked echo through loopfast gives every byte back.  It used to stop
# with "cannot find libloopfast.so".
. "$(dirname "$0")/lib.sh"
need cc unshare umount
[ "$(id -u)" -eq 0 ] || skip "needs root for a mount namespace"
unshare -m true 2>/dev/null || skip "no mount namespaces here"
cat >"$work/echo.c" <<'C'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, len) || listen(l, 8) || getsockname(l, (struct sockaddr *)&a, &len))
        return 2;
    pid_t pid = fork();
    if (pid == 0) {
        int c = accept(l, NULL, NULL);
        char b[256];
        ssize_t n;
        while ((n = read(c, b, sizeof b)) > 0)
            if (write(c, b, (size_t)n) != n)
                return 3;
        return n == 0 ? 0 : 4;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, len))
        return 5;
    for (int i = 0; i < 100; i++) {
        char out[64], in[64];
        int n = snprintf(out, sizeof out, "message %d", i);
        if (write(c, out, (size_t)n) != n || read(c, in, sizeof in) != n || memcmp(in, out, (size_t)n))
            return 6;
    }
    close(c);
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 7;
}
C
cc -O1 -o "$work/echo" "$work/echo.c" || fail "cannot build the echo program"
out=$(unshare -m sh -c 'umount -l /proc && exec "$0" run -- "$1"' "$LOOPFAST" "$work/echo" 2>&1)
rc=$?
[ $rc -eq 0 ] || fail "loopfast run without /proc: exit $rc: $out"
echo "without /proc: loopfast run found its library, 100 echoes back"
