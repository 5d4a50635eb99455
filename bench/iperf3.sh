#!/usr/bin/env bash
# iperf3 bulk transfer (its default writes), with and without `loopfast run`.
# Usage: bench/iperf3.sh [SECONDS]
. "$(dirname "$0")/common.sh"
need iperf3 iperf3
need python3 python3
secs=${1:-3}
run() {   # prints Gbit/s received
    local p; p=$(port)
    "$@" iperf3 -s -p "$p" >/dev/null 2>&1 & pids+=($!)
    sleep 0.3
    "$@" iperf3 -c 127.0.0.1 -p "$p" -t "$secs" -J 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9)'
    kill "${pids[-1]}"
}
k=$(run env)
f=$(run "$LOOPFAST" run --)
ratio "iperf3 bulk (Gbit/s)" "$k" "$f" higher
