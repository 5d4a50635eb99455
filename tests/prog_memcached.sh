#!/usr/bin/env bash
# memcached under `loopfast run` with a client speaking its text protocol:
# every value comes back as stored, and the payload bypasses IP.
. "$(dirname "$0")/lib.sh"
need memcached python3
port=$(free_port)
start timeout 60 "$LOOPFAST" run -- memcached -u root -l 127.0.0.1 -p "$port" -U 0 -t 2 -m 256
wait_port "$port"
before=$(in_octets)
timeout 60 "$LOOPFAST" run -- python3 - "$port" <<'PY' || fail "memcached client"
import hashlib, os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
values = {}
for i in range(2000):
    v = os.urandom(1 + (i * 7919) % 20000)
    values[b"k%d" % i] = v
    s.sendall(b"set k%d 0 0 %d\r\n" % (i, len(v)) + v + b"\r\n")
    assert f.readline() == b"STORED\r\n"
for k, v in values.items():
    s.sendall(b"get " + k + b"\r\n")
    head = f.readline().split()
    assert head[0] == b"VALUE" and int(head[3]) == len(v), head
    assert f.read(len(v) + 2)[:-2] == v, k
    assert f.readline() == b"END\r\n"
print("2000 values stored and read back intact")
PY
assert_bypassed "$before" 20000000
echo ok
