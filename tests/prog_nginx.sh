#!/usr/bin/env bash
# nginx serving files with sendfile on, fetched with curl, both under
# `loopfast run`: the files arrive intact and bypass the kernel's IP layer.
. "$(dirname "$0")/lib.sh"
need nginx curl sha256sum
[ "$(id -u)" -eq 0 ] || skip "nginx test runs as root"
port=$(free_port)
mkdir -p "$work/www"
head -c 20000000 /dev/urandom >"$work/www/big.bin"
echo hello >"$work/www/small.txt"
nginx_conf nginx 2 "sendfile on; tcp_nopush on;
    server { listen 127.0.0.1:$port; root $work/www; }"
start timeout 120 "$LOOPFAST" run -- nginx -c "$work/nginx.conf" -e "$work/error.log"
wait_port "$port"
want=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)
before=$(in_octets)
# One keep-alive connection: the small first answer lets it switch before the
# big ones (bytes sent before the switch travel on TCP, by design).
u="http://127.0.0.1:$port"
timeout 60 "$LOOPFAST" run -- curl -sf "$u/small.txt" "$u/big.bin" "$u/big.bin" "$u/big.bin" \
    -o "$work/s" -o "$work/b1" -o "$work/b2" -o "$work/b3" || fail "curl"
[ "$(cat "$work/s")" = hello ] || fail "small file differs"
for i in 1 2 3; do
    [ "$(sha256sum <"$work/b$i" | cut -d' ' -f1)" = "$want" ] || fail "download $i differs"
done
assert_bypassed "$before" 60000000
[ "$(timeout 10 curl -sf "http://127.0.0.1:$port/small.txt")" = hello ] || fail "plain curl"
echo ok
