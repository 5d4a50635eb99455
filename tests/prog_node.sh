#!/usr/bin/env bash
# node.js (libuv) as an echo server and as its client, both under `loopfast
# run`: several connections in a row to one server, each writing lines one
# write() at a time, half-closing, and checking every byte of the echo and
# the server's goodbye.  libuv closes with syscall(SYS_close), past close():
# the server's second connection read EOF after 8 bytes; and it takes a read
# shorter than its buffer, after the peer's FIN, for the end: the client got
# only the bytes that came before the server's switch.  Kernel TCP first, the
# reference; then loopfast, whose payload must bypass the IP layer.
. "$(dirname "$0")/lib.sh"
need node

cat >"$work/server.js" <<'JS'
const net = require('net');
net.createServer(s => {
    s.on('data', d => s.write(d));
    s.on('end', () => s.end('SERVER-BYE\n'));
    s.on('error', e => console.error('server:', e.code));
}).listen(Number(process.argv[2]), '127.0.0.1');
JS
cat >"$work/client.js" <<'JS'
const net = require('net');
const n = Number(process.argv[3]), lines = [];
for (let i = 0; i < n; i++) lines.push('line ' + i + ' ' + 'x'.repeat(i % 2000));
const s = net.connect(Number(process.argv[2]), '127.0.0.1');
let got = '', i = 0;
function more() {
    while (i < n) if (!s.write(lines[i++] + '\n')) return s.once('drain', more);
    s.end();
}
s.on('connect', more);
s.on('data', d => got += d);
s.on('end', () => {
    const want = lines.join('\n') + '\nSERVER-BYE\n';
    console.log(got === want ? 'ok' : 'got ' + got.length + ' of ' + want.length + ' bytes');
});
s.on('error', e => { console.log('client: ' + e.code); process.exit(3); });
JS

LINES=400   # about 83 KB each way a connection
# The bytes the lines really make, both ways, five connections.  node's
# client writes its whole burst at once, and what it writes before its
# switch goes on TCP (19-39% of it, as timing has it): bypassed means
# under half of it on IP (over kernel TCP: all of it, and the headers).
# (Checked against 4 MB as 400 KB lines, a twentieth, it failed one run
# in four, at 213-330 KB.)
sent=0
for ((i = 0; i < LINES; i++)); do sent=$((sent + 7 + ${#i} + i % 2000)); done
sent=$((5 * 2 * sent))
for mode in "" "$LOOPFAST run --"; do
    port=$(free_port)
    start timeout 120 $mode node "$work/server.js" "$port"
    wait_port "$port"
    before=$(in_octets)
    for i in 1 2 3 4 5; do
        out=$(timeout 30 $mode node "$work/client.js" "$port" "$LINES" 2>&1)
        [ "$out" = ok ] || fail "${mode:-kernel TCP}: connection $i: $out"
    done
    [ -n "$mode" ] && assert_bypassed "$before" $((10 * sent))   # (a twentieth of ten times)
    # a plain client of the same server: the numbers the fast ones freed
    out=$(timeout 30 node "$work/client.js" "$port" "$LINES" 2>&1)
    [ "$out" = ok ] || fail "${mode:-kernel TCP}: a plain client: $out"
    kill "${pids[-1]}"
done
echo ok
