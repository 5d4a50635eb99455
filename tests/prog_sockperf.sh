#!/usr/bin/env bash
# sockperf ping-pong and throughput over TCP under `loopfast run`: it
# completes and its traffic bypasses the kernel's IP layer.  The ping-pong
# rate is capped: sockperf sizes its sample array for rates far below what
# the fast path reaches, and overflows it otherwise.
. "$(dirname "$0")/lib.sh"
need sockperf
port=$(free_port)
start timeout 60 "$LOOPFAST" run -- sockperf sr --tcp -i 127.0.0.1 -p "$port"
sleep 0.5
wait_port "$port"
before=$(in_octets)
out=$(timeout 30 "$LOOPFAST" run -- sockperf pp --tcp -i 127.0.0.1 -p "$port" -t 2 -m 64 --mps=100000 2>&1)
echo "$out" | grep -E "Summary: Latency is" || fail "ping-pong: $out"
msgs=$(echo "$out" | sed -n 's/.*SentMessages=\([0-9]*\).*/\1/p' | head -1)
[ -n "$msgs" ] && [ "$msgs" -gt 1000 ] || fail "too few messages: $msgs"
assert_bypassed "$before" $((msgs * 64 * 2))
out=$(timeout 30 "$LOOPFAST" run -- sockperf tp --tcp -i 127.0.0.1 -p "$port" -t 2 -m 64 2>&1)
echo "$out" | grep -E "Summary: Message Rate is" || fail "throughput: $out"
echo ok
