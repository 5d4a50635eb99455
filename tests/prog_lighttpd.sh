#!/usr/bin/env bash
# lighttpd and clients that half-close after their request (`nc -N`): on
# POLLRDHUP lighttpd asks TCP_INFO whether the client only shut down its
# writes (CLOSE_WAIT) or is gone, and closes a gone one.  On the rings the
# kernel's socket stayed ESTABLISHED: a 3 MB file's body was cut short
# (at 512 KiB, 1-6 runs in 10) and a 1 MB POST to a CGI script got no
# reply at all (34 of 35).  Both ways, every reply whole.  (The uploads
# go fast; a GET's reply is mostly on TCP: the client's first exchange.)
. "$(dirname "$0")/lib.sh"
need lighttpd nc ss
nc -h 2>&1 | grep -q OpenBSD || skip "nc is not OpenBSD's netcat (its -N half-closes)"

mkdir -p "$work/www"
head -c 3000000 /dev/urandom >"$work/www/big.bin"
head -c 1000000 /dev/urandom >"$work/post.bin"
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nwc -c\n' >"$work/www/count.sh"
port=$(free_port)
cat >"$work/lighttpd.conf" <<CONF
server.document-root = "$work/www"
server.port = $port
server.bind = "127.0.0.1"
server.errorlog = "$work/lighttpd.error.log"
server.modules = ("mod_cgi")
cgi.assign = ( ".sh" => "/bin/sh" )
mimetype.assign = ( "" => "application/octet-stream" )
CONF

for mode in "" "$LOOPFAST run --"; do
    $mode lighttpd -D -f "$work/lighttpd.conf" 2>>"$work/server.log" &
    srv=$!
    pids+=("$srv")
    wait_port "$port"
    for i in 1 2 3 4 5; do
        printf 'GET /big.bin HTTP/1.0\r\n\r\n' | timeout 20 $mode nc -N 127.0.0.1 "$port" >"$work/out"
        tail -c 3000000 "$work/out" | cmp -s - "$work/www/big.bin" ||
            fail "${mode:-kernel TCP}: GET $i: $(wc -c <"$work/out") bytes, not the file"
        { printf 'POST /count.sh HTTP/1.0\r\nContent-Length: 1000000\r\n\r\n'; cat "$work/post.bin"; } |
            timeout 20 $mode nc -N 127.0.0.1 "$port" >"$work/out"
        grep -q '^1000000' "$work/out" ||
            fail "${mode:-kernel TCP}: POST $i: $(wc -c <"$work/out") bytes of reply, no count"
    done
    kill "$srv"
    wait "$srv" 2>/dev/null
done
echo ok
