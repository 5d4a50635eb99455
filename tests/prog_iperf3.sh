#!/usr/bin/env bash
# iperf3 (bulk transfer) under `loopfast run`: the bytes it reports moved
# bypass the kernel's IP layer.
. "$(dirname "$0")/lib.sh"
need iperf3 python3
port=$(free_port)
start timeout 60 "$LOOPFAST" run -- iperf3 -s -p "$port"
wait_port "$port"
before=$(in_octets)
timeout 30 "$LOOPFAST" run -- iperf3 -c 127.0.0.1 -p "$port" -t 2 -J >"$work/out.json" || fail "iperf3 client"
bytes=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bytes"]))' "$work/out.json")
echo "iperf3 moved $bytes bytes"
[ "$bytes" -gt 100000000 ] || fail "only $bytes bytes moved"
assert_bypassed "$before" "$bytes"
echo ok
