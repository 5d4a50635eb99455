#!/usr/bin/env bash
# The examples in examples/ work as their README says: the client's message
# comes back and the connection was on the fast path.
. "$(dirname "$0")/lib.sh"
port=$(free_port)
start timeout 30 "$top/build/examples/echo_server" "$port"
wait_port "$port"
out=$(timeout 10 "$top/build/examples/echo_client" "$port" "hello, loopfast") || fail "echo_client: $out"
echo "$out"
echo "$out" | grep -q "^echo: hello, loopfast$" || fail "wrong echo"
echo "$out" | grep -q "^fast path: yes$" || fail "not on the fast path"
echo ok
