#!/usr/bin/env bash
# redis-server and its clients under `loopfast run`: correct answers, and the
# payload bypasses the kernel's IP layer.
. "$(dirname "$0")/lib.sh"
need redis-server redis-benchmark redis-cli
port=$(free_port)
start timeout 120 "$LOOPFAST" run -- redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no
wait_port "$port"
before=$(in_octets)
out=$(timeout 60 "$LOOPFAST" run -- redis-benchmark -p "$port" -q -n 20000 -c 10 -d 1000 -t set,get 2>&1)
echo "$out" | grep -o "[A-Z]*: [0-9.]* requests per second" || fail "redis-benchmark: $out"
assert_bypassed "$before" $((20000 * 1000 * 2))
head -c 300000 /dev/urandom | base64 -w0 >"$work/value"
timeout 20 "$LOOPFAST" run -- redis-cli -p "$port" -x set bigkey <"$work/value" | grep -q OK || fail "set"
timeout 20 "$LOOPFAST" run -- redis-cli -p "$port" --raw get bigkey | head -c -1 >"$work/back"
cmp -s "$work/value" "$work/back" || fail "a 400 KB value came back different"
# a client without loopfast still gets the same data over plain TCP
timeout 20 redis-cli -p "$port" --raw get bigkey | head -c -1 | cmp -s "$work/value" - || fail "plain client"
echo ok
