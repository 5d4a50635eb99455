#!/usr/bin/env bash
# apache2 with its event MPM, both ends under `loopfast run`: its listener
# thread sleeps in epoll_wait while worker threads add connections that
# finished a request, the shape that made the listener read loopfast's own
# entries as its connection records (SIGSEGV/SIGBUS in the children, no
# error for curl).  Short connections, one per request, then keep-alive
# downloads checked byte for byte and bypassing the IP layer; no child may
# die of a signal.
. "$(dirname "$0")/lib.sh"
need apache2 curl sha256sum
[ "$(id -u)" -eq 0 ] || skip "apache test runs as root"
mods=/usr/lib/apache2/modules
[ -f "$mods/mod_mpm_event.so" ] || skip "apache2's event MPM module is not installed"
port=$(free_port)
mkdir -p "$work/www" "$work/logs"
head -c 5000000 /dev/urandom >"$work/www/big.bin"
echo hello >"$work/www/small.txt"
cat >"$work/httpd.conf" <<CONF
ServerRoot $work
PidFile $work/logs/httpd.pid
Listen 127.0.0.1:$port
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
User root
Group root
ServerName localhost
DocumentRoot $work/www
ErrorLog $work/logs/error.log
LogLevel warn
KeepAlive On
StartServers 2
EnableSendfile On
<Directory />
  Require all granted
</Directory>
CONF
# apache refuses to run as root unless built to; Debian's build is not: -DFOREGROUND as root
# works with User root only when the binary allows it, so fall back to www-data.
if ! apache2 -t -f "$work/httpd.conf" >/dev/null 2>&1; then
    sed -i 's/^User root/User www-data/; s/^Group root/Group www-data/' "$work/httpd.conf"
    chmod -R a+rX "$work"
fi
apache2 -t -f "$work/httpd.conf" >/dev/null 2>&1 || skip "apache2 does not accept the test's configuration"
start timeout 120 "$LOOPFAST" run -- apache2 -f "$work/httpd.conf" -DFOREGROUND
wait_port "$port"
u="http://127.0.0.1:$port"
for i in $(seq 20); do
    [ "$(timeout 10 "$LOOPFAST" run -- curl -sf "$u/small.txt")" = hello ] || fail "short request $i"
done
want=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)
before=$(in_octets)
timeout 60 "$LOOPFAST" run -- curl -sf "$u/small.txt" "$u/big.bin" "$u/big.bin" "$u/big.bin" \
    -o "$work/s" -o "$work/b1" -o "$work/b2" -o "$work/b3" || fail "keep-alive curl"
for i in 1 2 3; do
    [ "$(sha256sum <"$work/b$i" | cut -d' ' -f1)" = "$want" ] || fail "download $i differs"
done
assert_bypassed "$before" 15000000
[ "$(timeout 10 curl -sf "$u/small.txt")" = hello ] || fail "plain curl"
sleep 0.5
if grep -q "exit signal" "$work/logs/error.log"; then
    grep "exit signal" "$work/logs/error.log" >&2
    fail "apache children died of a signal"
fi
echo ok
