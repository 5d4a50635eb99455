#!/usr/bin/env bash
# squid as a forward proxy between curl and a Python HTTP/1.1 server: GETs,
# then a CONNECT tunnel, without loopfast and with all three under
# `loopfast run`; every file arrives intact and, on the rings, the tunnel's
# payload bypasses the kernel's IP layer.  squid's worker runs as `proxy`
# and the server as root: the worker may not read the server's
# /proc/<pid>/fd, the proof a later connection between two processes gets
# by default (docs/design.md 4.8), and the tunnel, the second connection
# of that pair, found out with its own readlink and stayed on TCP (10 MB
# of 10 on IP).
. "$(dirname "$0")/lib.sh"
need squid curl python3 sha256sum
[ "$(id -u)" -eq 0 ] || skip "squid test runs squid as root (its worker as proxy)"
id proxy >/dev/null 2>&1 || skip "no proxy user"
chmod 755 "$work"
mkdir -p "$work/www"
head -c 5000000 /dev/urandom >"$work/www/big.bin"
echo hello >"$work/www/small.txt"
want=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)
cat >"$work/server.py" <<'PY'
import http.server, os, sys
os.chdir(sys.argv[2])
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive: squid keeps its server connections
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

# fetch RUN PROXY-PORT WEB-PORT CURL-OPTIONS: the small file, then the big one
# twice on one connection to the proxy.
fetch() {
    local run=$1 u="http://127.0.0.1:$3"
    rm -f "$work"/b? "$work/s"
    $run timeout 30 curl -sf --max-time 20 -x "127.0.0.1:$2" $4 "$u/small.txt" "$u/big.bin" "$u/big.bin" \
        -o "$work/s" -o "$work/b1" -o "$work/b2" || fail "curl $4 through squid (${run:-kernel TCP}): exit $?"
    [ "$(cat "$work/s")" = hello ] || fail "small file differs (${run:-kernel TCP}, $4)"
    for i in 1 2; do
        [ "$(sha256sum <"$work/b$i" | cut -d' ' -f1)" = "$want" ] || fail "download $i differs (${run:-kernel TCP}, $4)"
    done
}

for run in "" "$LOOPFAST run --"; do
    web=$(free_port)
    sp=$(free_port)
    cat >"$work/squid.conf" <<CONF
http_port 127.0.0.1:$sp
http_access allow all
cache deny all
pid_filename none
access_log none
cache_log $work/cache.log
cache_effective_user proxy
shutdown_lifetime 0 seconds
CONF
    start timeout 60 $run python3 "$work/server.py" "$web" "$work/www"
    wait_port "$web"
    start timeout 60 $run squid -N -f "$work/squid.conf"
    wait_port "$sp"
    before=$(in_octets)
    fetch "$run" "$sp" "$web" ""   # GET: squid's first connections to the server
    [ -z "$run" ] || assert_bypassed "$before" 10000000
    before=$(in_octets)
    fetch "$run" "$sp" "$web" -p   # CONNECT: a tunnel, squid's next connection to the server
    [ -z "$run" ] || assert_bypassed "$before" 10000000
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    pids=()
done
echo ok
