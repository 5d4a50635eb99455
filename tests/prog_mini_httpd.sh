#!/usr/bin/env bash
# mini_httpd and CGIs that read their POST body from the socket itself:
# mini_httpd dup2()s the connection onto the CGI's stdin when it read none
# of the body, and runs the CGI with an environment it builds from scratch
# (no LD_PRELOAD).  The CGIs read with fread(stdin) and fgets(stdin) (a C
# program) or a shell's `head -c | wc -c`.  Two client shapes, each both
# ways (kernel TCP, then both ends under `loopfast run`), every reply's
# count and checksum checked:
#  - curl with `Expect: 100-continue` (--expect100-timeout 0.5): headers,
#    then the body 0.5 s later, after mini_httpd's dup2 held the answer:
#    the connection stays on TCP.
#  - a client that writes each header line with its own send(): 16 calls
#    and it takes the answer, before the CGI's exec, and its body goes on
#    the ring.  The CGI ran without loopfast and waited on TCP for ever (0
#    of 5 replies); now the exec adds loopfast's LD_PRELOAD back (and the
#    new image takes it out of its environment again), and stdin is
#    loopfast's stdio stream (src/exec.c, src/stdio.c).
# Found by a helper's sweep; prints how many of the loopfast requests went
# fast (IP octets of that request below 5% of its body).
. "$(dirname "$0")/lib.sh"
need mini_httpd curl python3 cc ss

mkdir -p "$work/www/cgi-bin" "$work/bin"
cat >"$work/sum.c" <<'EOF'
/* count and adler32 of stdin, read with fread (or fgets: "fgets", for text
 * without NUL bytes) up to CONTENT_LENGTH bytes, or up to EOF without it;
 * as a CGI reply ("cgi"), an nph- one ("nph"), or bare (no argument) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv)
{
    const char *cl = getenv("CONTENT_LENGTH"), *how = argc > 1 ? argv[1] : "";
    long want = cl ? atol(cl) : -1, got = 0;
    uint32_t a = 1, b = 0;
    static char buf[65536];
    while (want < 0 || got < want) {
        size_t cap = want < 0 || want - got > (long)sizeof buf - 1 ? sizeof buf - 1 : (size_t)(want - got), n;
        if (strstr(how, "fgets")) {
            if (!fgets(buf, (int)cap + 1, stdin))
                break;
            n = strlen(buf);
        } else if (!(n = fread(buf, 1, cap, stdin)))
            break;
        for (size_t i = 0; i < n; i++) {
            a = (a + (unsigned char)buf[i]) % 65521;
            b = (b + a) % 65521;
        }
        got += (long)n;
    }
    if (strstr(how, "nph"))
        printf("HTTP/1.0 200 OK\r\n");
    if (strstr(how, "cgi") || strstr(how, "nph"))
        printf("Content-Type: text/plain\r\n\r\n");
    printf("count=%ld adler32=%08x\n", got, b << 16 | a);
    return 0;
}
EOF
cc -O2 -o "$work/bin/sum" "$work/sum.c" || fail "cannot build the CGI"
cgi() {   # $1: name under cgi-bin, $2: shell body (a script mini_httpd runs with its environment)
    printf '#!/bin/sh\n%s\n' "$2" >"$work/www/cgi-bin/$1"
    chmod +x "$work/www/cgi-bin/$1"
}
cgi fread.cgi "exec $work/bin/sum cgi"
cgi nph-fread.cgi "exec $work/bin/sum nph"
cgi fgets.cgi "exec $work/bin/sum cgi,fgets"
cgi count.sh 'printf "Content-Type: text/plain\r\n\r\n"; head -c "$CONTENT_LENGTH" | wc -c'

cat >"$work/linehdr.py" <<'EOF'
# PORT PATH FILE: a POST whose header lines go one per send(), then the body
# after 0.3 s; prints the reply's body.
import socket, sys, time
port, path, body = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], 'rb').read()
s = socket.create_connection(('127.0.0.1', port))
lines = [b'POST %s HTTP/1.0\r\n' % path.encode(), b'Host: 127.0.0.1\r\n']
lines += [b'X-Line-%d: %d\r\n' % (i, i) for i in range(20)]
lines += [b'Content-Length: %d\r\n' % len(body), b'\r\n']
for l in lines:
    s.sendall(l)
    time.sleep(0.005)
time.sleep(0.3)
s.sendall(body)
out = b''
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
sys.stdout.write(out.split(b'\r\n\r\n', 1)[-1].decode(errors='replace'))
EOF

head -c 100000 /dev/urandom >"$work/100k"
head -c 1000000 /dev/urandom >"$work/1m"
head -c 750000 /dev/urandom | base64 -w 76 >"$work/text"   # 1013340 bytes in lines
for f in 100k 1m text; do "$work/bin/sum" <"$work/$f" >"$work/$f.sum"; done

port=$(free_port)

bad=0 fast=0 lfreqs=0
check() {   # $1: mode prefix, $2: what, $3: body file, $4: reply, $5: IP octets of the request
    local want
    case "$2" in
    *count.sh) want=$(wc -c <"$work/$3") ;;
    *) want=$(tr -d ' ' <"$work/$3.sum") ;;
    esac
    if [ "$4" != "$want" ]; then
        echo "WRONG: ${1:-kernel TCP}: $2 $3: got '$4', want '$want'" >&2
        bad=$((bad + 1))
    fi
    if [ -n "$1" ]; then
        lfreqs=$((lfreqs + 1))
        [ "$5" -lt $(($(wc -c <"$work/$3") / 20)) ] && fast=$((fast + 1))
    fi
}

for mode in "" "$LOOPFAST run --"; do
    $mode mini_httpd -D -p "$port" -h 127.0.0.1 -d "$work/www" -c 'cgi-bin/*' -u root \
        -l "$work/access.log" 2>>"$work/server.log" &
    srv=$!
    pids+=("$srv")
    wait_port "$port"
    for f in 100k 1m; do
        for u in fread.cgi nph-fread.cgi count.sh; do
            before=$(in_octets)
            reply=$(timeout 20 $mode curl -sS -H 'Expect: 100-continue' --expect100-timeout 0.5 \
                --data-binary @"$work/$f" "http://127.0.0.1:$port/cgi-bin/$u" 2>>"$work/client.log" | tr -d ' ')
            check "$mode" "curl $u" "$f" "$reply" $(($(in_octets) - before))
        done
        for u in fread.cgi nph-fread.cgi count.sh; do
            before=$(in_octets)
            reply=$(timeout 20 $mode python3 "$work/linehdr.py" "$port" "/cgi-bin/$u" "$work/$f" \
                2>>"$work/client.log" | tr -d ' ')
            check "$mode" "lines $u" "$f" "$reply" $(($(in_octets) - before))
        done
    done
    before=$(in_octets)
    reply=$(timeout 20 $mode python3 "$work/linehdr.py" "$port" /cgi-bin/fgets.cgi "$work/text" \
        2>>"$work/client.log" | tr -d ' ')
    check "$mode" "lines fgets.cgi" text "$reply" $(($(in_octets) - before))
    kill "$srv"
    wait "$srv" 2>/dev/null
done
if [ -n "${LOOPFAST_TEST_NETNS:-}" ]; then
    echo "loopfast: $fast of $lfreqs requests fast (the curl ones stay on TCP: held by the dup2)"
else
    echo "loopfast: fast requests unknown (no network namespace of our own)"
fi
[ "$bad" -eq 0 ] || { tail -n 5 "$work/server.log" "$work/client.log" >&2; fail "$bad replies wrong or missing"; }
[ -z "${LOOPFAST_TEST_NETNS:-}" ] || [ "$fast" -gt 0 ] || fail "no loopfast request went fast"
echo ok
