#!/usr/bin/env bash
# pgbench against PostgreSQL, both with and without `loopfast run`: read-only
# transactions (-S: one primary-key SELECT each) with 1 client and 8 clients.
# Usage: bench/pgbench.sh [SECONDS]
. "$(dirname "$0")/common.sh"
need pgbench postgresql
secs=${1:-5}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/postgres" ] || { echo "postgresql is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg=()
[ "$(id -u)" -ne 0 ] || as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
data=$(mktemp -d /tmp/loopfast-pgbench.XXXXXX)
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$data"' EXIT
[ ${#as_pg[@]} -eq 0 ] || chown postgres: "$data"
"${as_pg[@]}" "$bin/initdb" -D "$data/db" -A trust -U postgres >/dev/null 2>&1 || { echo "initdb failed" >&2; exit 1; }
run() {   # WRAPPER... ; prints "tps1 tps8"
    local p; p=$(port)
    "${as_pg[@]}" "$@" "$bin/postgres" -D "$data/db" -p "$p" -k "$data" -c listen_addresses=127.0.0.1 \
        -c fsync=off >/dev/null 2>&1 & pids+=($!)
    wait_port "$p"
    "$@" pgbench -i -q -h 127.0.0.1 -p "$p" -U postgres postgres >/dev/null 2>&1
    local t1 t8
    t1=$("$@" pgbench -S -c 1 -T "$secs" -h 127.0.0.1 -p "$p" -U postgres postgres 2>/dev/null |
         sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    t8=$("$@" pgbench -S -c 8 -j 2 -T "$secs" -h 127.0.0.1 -p "$p" -U postgres postgres 2>/dev/null |
         sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null
    echo "${t1:-0} ${t8:-0}"
}
read -r k1 k8 < <(run env)
read -r f1 f8 < <(run "$LOOPFAST" run --)
ratio "pgbench -S, 1 client (tps)" "$k1" "$f1" higher
ratio "pgbench -S, 8 clients (tps)" "$k8" "$f8" higher
