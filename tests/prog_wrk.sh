#!/usr/bin/env bash
# wrk against nginx, both under `loopfast run`: wrk only takes descriptor
# numbers below 10 + 3 x connections, so loopfast's own descriptors must not
# push its sockets above them (design 3.1).  No socket errors, as without
# loopfast, and the payload bypasses the kernel's IP layer.
. "$(dirname "$0")/lib.sh"
need nginx wrk
[ "$(id -u)" -eq 0 ] || skip "nginx test runs as root"
port=$(free_port)
mkdir -p "$work/www"
head -c 4096 /dev/urandom >"$work/www/4k.bin"
nginx_conf nginx 2 "keepalive_requests 1000000;
    server { listen 127.0.0.1:$port; root $work/www; }"
start timeout 120 "$LOOPFAST" run -- nginx -c "$work/nginx.conf" -e "$work/error.log"
wait_port "$port"
url="http://127.0.0.1:$port/4k.bin"

# wrk's summary: requests done, and the socket errors line if any.
run_wrk() {   # label, connections, wrk command prefix...
    local label=$1 conns=$2
    shift 2
    timeout 30 "$@" wrk -t2 -c"$conns" -d2s "$url" >"$work/wrk.out" 2>&1 || fail "$label: wrk failed: $(cat "$work/wrk.out")"
    requests=$(awk '/requests in/ { print $1 }' "$work/wrk.out")
    echo "$label -c$conns: $requests requests, $(awk '/Requests\/sec/ { print $2 }' "$work/wrk.out") req/s"
    grep -q "Socket errors" "$work/wrk.out" && fail "$label -c$conns: $(grep 'Socket errors' "$work/wrk.out")"
    grep -q "Non-2xx" "$work/wrk.out" && fail "$label -c$conns: $(grep 'Non-2xx' "$work/wrk.out")"
    [ "${requests:-0}" -gt 0 ] || fail "$label -c$conns: no requests done"
}

for c in 16 64; do
    run_wrk "kernel TCP" "$c" env LOOPFAST_MODE=off
    before=$(in_octets)
    run_wrk "loopfast" "$c" "$LOOPFAST" run --
    assert_bypassed "$before" $((requests * 4096))
done
echo ok
