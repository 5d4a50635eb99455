#!/usr/bin/env bash
# HAProxy relaying with kernel splicing (option splice-request,
# splice-response, then splice-auto) between curl and nginx: a 20 MB file
# arrives intact through the proxy without loopfast, and with all three
# under `loopfast run`, where the payload bypasses the kernel's IP layer.
# HAProxy splices a socket into its own blocking pipe with SPLICE_F_NONBLOCK;
# loopfast once blocked there and the download hung after about 1 MB.
. "$(dirname "$0")/lib.sh"
need nginx haproxy curl sha256sum
[ "$(id -u)" -eq 0 ] || skip "haproxy test runs nginx as root"
web=$(free_port)
mkdir -p "$work/www"
head -c 20000000 /dev/urandom >"$work/www/big.bin"
echo hello >"$work/www/small.txt"
want=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)
nginx_conf nginx 1 "sendfile on;
    server { listen 127.0.0.1:$web; root $work/www; }"

# haproxy_conf PORT SPLICE-OPTIONS...
haproxy_conf() {
    local port=$1
    shift
    {
        echo "global"
        echo "    maxconn 64"
        echo "defaults"
        echo "    mode http"
        echo "    timeout connect 5s"
        echo "    timeout client 20s"
        echo "    timeout server 20s"
        for o in "$@"; do echo "    option $o"; done
        echo "frontend in"
        echo "    bind 127.0.0.1:$port"
        echo "    default_backend web"
        echo "backend web"
        echo "    server nginx 127.0.0.1:$web"
    } >"$work/haproxy-$port.cfg"
}

# fetch RUN PORT: the small file, then the big one three times on one
# connection (its first answer lets the connection switch to the rings).
fetch() {
    local run=$1 port=$2 u="http://127.0.0.1:$2"
    rm -f "$work"/b? "$work/s"
    $run timeout 25 curl -sf --fail-early --max-time 15 "$u/small.txt" "$u/big.bin" "$u/big.bin" "$u/big.bin" \
        -o "$work/s" -o "$work/b1" -o "$work/b2" -o "$work/b3" || fail "curl through haproxy ($run, port $port): exit $?"
    [ "$(cat "$work/s")" = hello ] || fail "small file differs ($run)"
    for i in 1 2 3; do
        [ "$(sha256sum <"$work/b$i" | cut -d' ' -f1)" = "$want" ] || fail "download $i differs ($run)"
    done
}

# round RUN SPLICE-OPTIONS...: nginx and haproxy started under RUN, curl too.
round() {
    local run=$1
    shift
    local port
    port=$(free_port)
    haproxy_conf "$port" "$@"
    start $run haproxy -f "$work/haproxy-$port.cfg" -db
    wait_port "$port"
    fetch "$run" "$port"
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null
}

lf="$LOOPFAST run --"
start timeout 120 nginx -c "$work/nginx.conf" -e "$work/error.log"
wait_port "$web"
round "" splice-request splice-response
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null

start timeout 120 $lf nginx -c "$work/nginx.conf" -e "$work/error.log"
wait_port "$web"
before=$(in_octets)
round "$lf" splice-request splice-response
assert_bypassed "$before" 120000000
round "$lf" splice-auto
echo ok
