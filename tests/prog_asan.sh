#!/usr/bin/env bash
# A program built with AddressSanitizer starts under `loopfast run` (the ASan
# runtime it needs stays first in LD_PRELOAD, before libloopfast.so), its
# connection takes the fast path, the echoed bytes are exact and both ends
# exit 0; the same programs over kernel TCP agree.
. "$(dirname "$0")/lib.sh"
need gcc
cat >"$work/echo.c" <<'C'
#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int is_fast(int fd)   /* -1: loopfast is not loaded */
{
    int (*f)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "loopfast_fd_is_fast");
    return f ? f(fd) : -1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    static char buf[1 << 16];
    if (!strcmp(argv[1], "server")) {
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8))
            return 2;
        for (;;) {   /* the test's port probe brings no data: serve the next */
            int c = accept(s, NULL, NULL);
            long total = 0;
            ssize_t n;
            while ((n = read(c, buf, 1 << 16)) > 0 && write(c, buf, (size_t)n) == n)
                total += n;
            int fast = is_fast(c);
            close(c);
            if (total) {
                printf("server: %ld bytes, fast %d\n", total, fast);
                return 0;
            }
        }
    }
    if (connect(s, (struct sockaddr *)&a, sizeof a))
        return 2;
    unsigned sum = 0, back = 0;
    for (int round = 0; round < 64; round++) {
        for (int i = 0; i < 4096; i++)
            sum += (unsigned char)(buf[i] = (char)(round * 31 + i));
        if (write(s, buf, 4096) != 4096)
            return 3;
        for (int got = 0; got < 4096;) {
            ssize_t n = read(s, buf + got, 4096 - got);
            if (n <= 0)
                return 4;
            got += (int)n;
        }
        for (int i = 0; i < 4096; i++)
            back += (unsigned char)buf[i];
    }
    printf("client: sum %u back %u, fast %d\n", sum, back, is_fast(s));
    close(s);
    return sum == back ? 0 : 5;
}
C
gcc -fsanitize=address -g -o "$work/echo" "$work/echo.c" -ldl 2>"$work/cc.log" ||
    skip "gcc cannot build with -fsanitize=address: $(tail -n 1 "$work/cc.log")"
"$work/echo" none 0 >/dev/null 2>&1
[ $? -eq 2 ] || skip "the ASan program does not run here"

# runs server and client, with loopfast ($1 = yes) or without; prints both outputs
both() {
    local port run=()
    port=$(free_port)
    [ "$1" = yes ] && run=("$LOOPFAST" run --)
    timeout 20 "${run[@]}" "$work/echo" server "$port" >"$work/server.out" 2>&1 &
    local server=$!
    pids+=("$server")
    wait_port "$port"
    timeout 20 "${run[@]}" "$work/echo" client "$port" >"$work/client.out" 2>&1 ||
        fail "client ($1) failed: $(cat "$work/client.out")"
    wait "$server" || fail "server ($1) failed: $(cat "$work/server.out")"
    cat "$work/client.out" "$work/server.out"
}
kernel=$(both no) || exit 1
echo "$kernel"
echo "$kernel" | grep -q "fast -1" || fail "loopfast was loaded without loopfast run"
fast=$(both yes) || exit 1
echo "$fast"
[ "$(echo "$fast" | grep -c "fast 1")" -eq 2 ] || fail "not on the fast path under loopfast run"
[ "$(echo "$kernel" | sed 's/fast -1//')" = "$(echo "$fast" | sed 's/fast 1//')" ] ||
    fail "loopfast and kernel TCP disagree"
echo ok
