#!/usr/bin/env bash
# PostgreSQL under `loopfast run`: a server that forks a backend for each
# connection it accepts (the fork takes the fast connection along), driven by
# psql and pgbench under `loopfast run`.  Query results are exact, pgbench
# runs without a failed transaction, a 20 MB COPY bypasses the kernel's IP
# layer, and a client without loopfast still gets the same answers.
. "$(dirname "$0")/lib.sh"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] && [ -x "$bin/postgres" ] || skip "postgresql is not installed"
need psql pgbench setpriv
port=$(free_port)
# PostgreSQL refuses to run as root: as root, run it as the postgres user.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || skip "no postgres user"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
mkdir -p "$work/data" "$work/sock"
[ ${#as_pg[@]} -eq 0 ] || chown -R postgres: "$work" && chmod 755 "$work"
"${as_pg[@]}" "$bin/initdb" -D "$work/data" -A trust -U postgres >"$work/initdb.log" 2>&1 ||
    fail "initdb: $(tail -3 "$work/initdb.log")"
start timeout 180 "${as_pg[@]}" "$LOOPFAST" run -- "$bin/postgres" -D "$work/data" -p "$port" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$work/sock" -c fsync=off
wait_port "$port"
sql() { timeout 60 "$LOOPFAST" run -- psql -X -q -A -t -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 "$@"; }

sql -c "CREATE TABLE t (id int PRIMARY KEY, v text)" || fail "create table"
sql -c "INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i" || fail "insert"
got=$(sql -c "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t")
want=$(python3 -c "
import hashlib
v = ','.join(hashlib.md5(str(i).encode()).hexdigest() for i in range(1, 20001))
print('20000|' + hashlib.md5(v.encode()).hexdigest())")
[ "$got" = "$want" ] || fail "query result '$got', expected '$want'"

# 20 MB out of the server in one COPY: the payload must not cross IP.
sql -c "CREATE TABLE big AS SELECT i, repeat(md5(i::text), 8) AS v FROM generate_series(1, 70000) i" ||
    fail "create big"
before=$(in_octets)
sql -c "COPY big TO STDOUT" >"$work/copy.out" || fail "copy"
bytes=$(stat -c %s "$work/copy.out")
[ "$bytes" -gt 18000000 ] || fail "COPY gave only $bytes bytes"
assert_bypassed "$before" "$bytes"
sum_fast=$(sha256sum <"$work/copy.out")
sum_plain=$(timeout 60 psql -X -q -h 127.0.0.1 -p "$port" -U postgres -c "COPY big TO STDOUT" | sha256sum)
[ "$sum_fast" = "$sum_plain" ] || fail "a client without loopfast got different bytes"

# pgbench: 4 clients, each its own forked backend, many short transactions.
timeout 60 "$LOOPFAST" run -- pgbench -i -q -h 127.0.0.1 -p "$port" -U postgres postgres \
    >"$work/pgbench-init.log" 2>&1 || fail "pgbench -i: $(tail -3 "$work/pgbench-init.log")"
out=$(timeout 90 "$LOOPFAST" run -- pgbench -c 4 -j 2 -t 300 -h 127.0.0.1 -p "$port" -U postgres postgres 2>&1) ||
    fail "pgbench: $(echo "$out" | tail -5)"
echo "$out" | grep -q "number of transactions actually processed: 1200/1200" || fail "pgbench: $out"
echo "$out" | grep -q "number of failed transactions: 0" || fail "pgbench had failures: $out"
echo "$out" | grep -E "^tps"
echo ok
