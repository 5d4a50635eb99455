#!/usr/bin/env bash
# sockperf over TCP, with and without `loopfast run`: 64 B ping-pong latency
# and 64 B throughput, with ratios.  Ping-pong is paced at 100k msg/s: at
# loopfast's speed sockperf would overflow its sample array otherwise.
# Usage: bench/sockperf.sh [SECONDS]
. "$(dirname "$0")/common.sh"
need sockperf sockperf
secs=${1:-3}
run() {   # run WRAPPER... ; prints "latency_us msg_per_s"
    local p; p=$(port)
    "$@" sockperf sr --tcp -i 127.0.0.1 -p "$p" >/dev/null 2>&1 & pids+=($!)
    sleep 0.3; wait_port "$p"
    local lat tp
    lat=$("$@" sockperf pp --tcp -i 127.0.0.1 -p "$p" -t "$secs" -m 64 --mps=100000 2>&1 |
          sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' | head -1)
    tp=$("$@" sockperf tp --tcp -i 127.0.0.1 -p "$p" -t "$secs" -m 64 2>&1 |
         sed -n 's/.*Message Rate is \([0-9]*\).*/\1/p' | head -1)
    kill "${pids[-1]}"
    echo "${lat:-0} ${tp:-0}"
}
read -r klat ktp < <(run env)
read -r flat ftp < <(run "$LOOPFAST" run --)
ratio "sockperf 64 B latency (us)" "$klat" "$flat" lower
ratio "sockperf 64 B msg/s" "$ktp" "$ftp" higher
