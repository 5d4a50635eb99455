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
cat >"$work/nginx.conf" <<CONF
daemon off;
user root;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work;
    proxy_temp_path $work;
    fastcgi_temp_path $work;
    uwsgi_temp_path $work;
    scgi_temp_path $work;
    server { listen 127.0.0.1:$port; root $work/www; }
}
CONF
start timeout 120 "$LOOPFAST" run -- nginx -c "$work/nginx.conf" -e "$work/error.log"
wait_port "$port"
want=$(sha256sum <"$work/www/big.bin")
before=$(in_octets)
for i in 1 2 3; do
    got=$(timeout 30 "$LOOPFAST" run -- curl -sf "http://127.0.0.1:$port/big.bin" | sha256sum)
    [ "$got" = "$want" ] || fail "download $i differs"
done
assert_bypassed "$before" 60000000
[ "$(timeout 10 curl -sf "http://127.0.0.1:$port/small.txt")" = hello ] || fail "plain curl"
echo ok
