#!/usr/bin/env bash
# redis-benchmark SET/GET against redis-server, both with and without
# `loopfast run`, 50 clients and 1 client.  Usage: bench/redis.sh [REQUESTS]
. "$(dirname "$0")/common.sh"
need redis-server redis-server
need redis-benchmark redis-tools
n=${1:-200000}
run() {   # WRAPPER... ; prints "set50 get50 get1"
    local p; p=$(port)
    "$@" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & pids+=($!)
    wait_port "$p"
    local many one
    many=$("$@" redis-benchmark -p "$p" -q -n "$n" -t set,get 2>/dev/null | tr '\r' '\n' |
           sed -n 's/^\(SET\|GET\): \([0-9.]*\) requests per second.*/\2/p' | tr '\n' ' ')
    one=$("$@" redis-benchmark -p "$p" -q -n $((n / 4)) -c 1 -t get 2>/dev/null | tr '\r' '\n' |
          sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p')
    kill "${pids[-1]}"
    echo "$many $one"
}
read -r kset kget kone < <(run env)
read -r fset fget fone < <(run "$LOOPFAST" run --)
ratio "redis SET, 50 clients (rps)" "$kset" "$fset" higher
ratio "redis GET, 50 clients (rps)" "$kget" "$fget" higher
ratio "redis GET, 1 client (rps)" "$kone" "$fone" higher
