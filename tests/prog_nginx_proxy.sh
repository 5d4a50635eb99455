#!/usr/bin/env bash
# nginx as a reverse proxy (keep-alive upstream connections, which nginx adds
# to epoll edge-triggered before connect()) in front of a second nginx, all
# under `loopfast run`, driven by curl, ab -k and wrk; the same without
# loopfast; and wrk alone under loopfast against a plain nginx (its sockets
# register in epoll while their offer is pending, then fall back to TCP).
. "$(dirname "$0")/lib.sh"
need nginx curl sha256sum ab wrk
[ "$(id -u)" -eq 0 ] || skip "nginx test runs as root"
up=$(free_port)
proxy=$(free_port)
while [ "$proxy" = "$up" ]; do proxy=$(free_port); done
mkdir -p "$work/www"
head -c 20000000 /dev/urandom >"$work/www/big.bin"
echo hello >"$work/www/small.txt"
want=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)

nginx_conf upstream 2 "sendfile on; server { listen 127.0.0.1:$up; root $work/www; }"
nginx_conf proxy 2 "sendfile on; upstream backend { server 127.0.0.1:$up; keepalive 8; }
    server { listen 127.0.0.1:$proxy;
             location / { proxy_pass http://backend; proxy_http_version 1.1;
                          proxy_set_header Connection \"\"; proxy_buffering off; } }"

# $@: the command prefix for every program (empty: plain)
run_servers() {
    "$@" nginx -c "$work/upstream.conf" -e "$work/upstream.error.log" >"$work/up.log" 2>&1 &
    up_pid=$!
    pids+=($up_pid)
    "$@" nginx -c "$work/proxy.conf" -e "$work/proxy.error.log" >"$work/proxy.log" 2>&1 &
    proxy_pid=$!
    pids+=($proxy_pid)
    wait_port "$up"
    wait_port "$proxy"
}

stop_servers() {
    kill "$up_pid" "$proxy_pid" 2>/dev/null
    wait "$up_pid" "$proxy_pid" 2>/dev/null
}

# wrk's summary: "<requests> <socket errors> <non-2xx>"
wrk_summary() {
    awk '/requests in/ { r = $1 }
         /Socket errors/ { gsub(",", ""); e = $4 + $6 + $8 + $10 }
         /Non-2xx/ { n = $NF }
         END { print r + 0, e + 0, n + 0 }' "$1"
}

# $1: label; $@: the command prefix
check_proxy() {
    local label=$1
    shift
    local u="http://127.0.0.1:$proxy"
    for i in 1 2 3; do
        timeout 60 "$@" curl -sf "$u/small.txt" "$u/big.bin" -o "$work/s" -o "$work/b" ||
            fail "$label: curl $i"
        [ "$(cat "$work/s")" = hello ] || fail "$label: small page differs"
        [ "$(sha256sum <"$work/b" | cut -d' ' -f1)" = "$want" ] || fail "$label: download $i differs"
    done
    timeout 60 "$@" ab -q -k -n 2000 -c 4 "$u/small.txt" >"$work/ab" 2>&1 || fail "$label: ab: $(tail -3 "$work/ab")"
    grep -q '^Failed requests: *0$' "$work/ab" || fail "$label: ab: $(grep -i failed "$work/ab")"
    grep -q '^Complete requests: *2000$' "$work/ab" || fail "$label: ab incomplete"
    timeout 30 "$@" wrk -t1 -c4 -d2s "$u/small.txt" >"$work/wrk" 2>&1 || fail "$label: wrk"
    read -r n errs non2xx < <(wrk_summary "$work/wrk")
    echo "$label: wrk $n requests, $errs socket errors, $non2xx non-2xx"
    [ "$errs" -eq 0 ] && [ "$non2xx" -eq 0 ] || fail "$label: wrk: $(cat "$work/wrk")"
    [ "$n" -gt 500 ] || fail "$label: wrk did only $n requests in 2 s"
}

# Without loopfast: the reference.
run_servers
check_proxy plain
# wrk under loopfast against a plain nginx: the one-sided case.
timeout 30 "$LOOPFAST" run -- wrk -t1 -c4 -d2s "http://127.0.0.1:$up/small.txt" >"$work/wrk1" 2>&1 ||
    fail "one-sided wrk"
read -r n errs non2xx < <(wrk_summary "$work/wrk1")
echo "one-sided: wrk $n requests, $errs socket errors, $non2xx non-2xx"
[ "$errs" -eq 0 ] && [ "$non2xx" -eq 0 ] || fail "one-sided wrk: $(cat "$work/wrk1")"
[ "$n" -gt 500 ] || fail "one-sided wrk did only $n requests in 2 s"
stop_servers

# Everything under loopfast.
run_servers "$LOOPFAST" run --
before=$(in_octets)
# The first request's answer lets the keep-alive connections switch before
# the big transfer (bytes sent before the switch travel on TCP, by design).
u="http://127.0.0.1:$proxy"
timeout 60 "$LOOPFAST" run -- curl -sf "$u/small.txt" "$u/big.bin" -o "$work/s" -o "$work/b" ||
    fail "loopfast: first curl"
[ "$(sha256sum <"$work/b" | cut -d' ' -f1)" = "$want" ] || fail "loopfast: first download differs"
assert_bypassed "$before" 40000000
check_proxy loopfast "$LOOPFAST" run --
stop_servers
echo ok
