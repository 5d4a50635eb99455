#!/usr/bin/env bash
# A program that cannot be interposed (statically linked, so LD_PRELOAD has
# no effect) talks to a server running under `loopfast run`: the connection
# stays ordinary TCP and works, in both directions.
. "$(dirname "$0")/lib.sh"
need redis-server cc
cat >"$work/client.c" <<'C'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 2;
    char big[70000], cmd[71000], buf[80000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    int n = snprintf(cmd, sizeof cmd, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%zu\r\n%s\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                     strlen(big), big);
    if (write(fd, cmd, n) != n) return 3;
    size_t got = 0, want = 5 + 8 + strlen(big) + 2;
    while (got < want) { ssize_t r = read(fd, buf + got, sizeof buf - got); if (r <= 0) return 4; got += r; }
    return memcmp(buf, "+OK\r\n$69999\r\n", 13) || memcmp(buf + 13, big, strlen(big)) ? 5 : 0;
}
C
cc -static -O1 -o "$work/client" "$work/client.c" 2>"$work/cc.log" || skip "no static libc to link with"
port=$(free_port)
start timeout 60 "$LOOPFAST" run -- redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no
wait_port "$port"
for i in 1 2 3; do
    LOOPFAST_MODE=all LD_PRELOAD="$top/build/libloopfast.so" timeout 10 "$work/client" "$port" ||
        fail "static client run $i exited $?"
done
echo ok
