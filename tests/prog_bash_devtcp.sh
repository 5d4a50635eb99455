#!/usr/bin/env bash
# bash's /dev/tcp with a child that switches the connection (a python child
# writing fd 3: its writes move to the ring), then bash's own builtin
# `printf 'END\n' >&3`, which moves the socket onto stdout and writes it
# with stdio, past loopfast.  Those bytes used to reach TCP while the server
# read the ring, and both waited for ever; now bash's writes go back to TCP
# after the ring's bytes and the server gets every byte, as over kernel TCP
# (the reference, in the same run).  A python server greets, then counts
# what came.
. "$(dirname "$0")/lib.sh"
need python3 ss

head -c $((4 << 20)) /dev/zero | tr '\0' 'a' >"$work/big"
cat >"$work/server.py" <<'PY'
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(1)
c, _ = l.accept()
c.sendall(b"HELLO\n")
got = b""
while not got.endswith(b"END\n"):
    d = c.recv(1 << 16)
    if not d:
        break
    got += d
c.sendall(b"GOT %d\n" % len(got))
while c.recv(1 << 16):
    pass
PY
cat >"$work/client.sh" <<'SH'
exec 3<>"/dev/tcp/127.0.0.1/$1"
read -r -u 3 hello   # the greeting: the answer came before it, the fork takes it
python3 -c '
import os, sys
v = memoryview(open(sys.argv[1], "rb").read())
while v:
    v = v[os.write(3, v[:1 << 16]):]
' "$2"
printf 'END\n' >&3
read -r -t 10 -u 3 reply
echo "$reply"
SH

one_run() {   # $1: a prefix for both commands (empty: kernel TCP); prints the reply
    local port
    port=$(free_port)
    $1 python3 "$work/server.py" "$port" 2>>"$work/server.log" &
    local srv=$!
    for _ in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.02; done
    timeout 20 $1 bash "$work/client.sh" "$port" "$work/big" 2>>"$work/client.log"
    kill "$srv" 2>/dev/null
    wait "$srv" 2>/dev/null
}

want="GOT $(((4 << 20) + 4))"
for mode in "" "$LOOPFAST run --"; do
    for i in 1 2 3; do
        before=$(in_octets)
        reply=$(one_run "$mode")
        [ "$reply" = "$want" ] || { tail -n 5 "$work/client.log" >&2; fail "${mode:-kernel TCP}, run $i: \"$reply\", not \"$want\""; }
        [ -z "$mode" ] || assert_bypassed "$before" $((4 << 20))
    done
done
echo ok
