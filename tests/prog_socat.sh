#!/usr/bin/env bash
# The inetd shape: socat accepts and execs /bin/cat onto the accepted socket
# (EXEC:...,nofork); a socat client writes one line and shuts its write side
# at once.  Every reply must come back whole, as over kernel TCP, with both
# ends under `loopfast run`, 50 times.
. "$(dirname "$0")/lib.sh"
need socat ss

one_run() {   # $1: a prefix for both commands (empty: kernel TCP); prints the reply
    local port
    port=$(free_port)
    $1 socat TCP-LISTEN:"$port",bind=127.0.0.1,reuseaddr EXEC:/bin/cat,nofork 2>>"$work/server.log" &
    local srv=$!
    for _ in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.02; done
    echo "hi $2" | timeout 10 $1 socat -t 2 - TCP:127.0.0.1:"$port" 2>>"$work/client.log"
    wait "$srv"
}

for mode in "" "$LOOPFAST run --"; do
    lost=0
    for i in $(seq 50); do
        reply=$(one_run "$mode" "$i")
        [ "$reply" = "hi $i" ] || lost=$((lost + 1))
    done
    [ "$lost" -eq 0 ] || { tail -n 5 "$work/server.log" >&2; fail "${mode:-kernel TCP}: $lost of 50 replies lost"; }
done
echo ok
