#!/usr/bin/env bash
# Turns `loopfast bench --sizes --json` into docs/latency.png and
# docs/throughput.png (log scales).  Usage: bench/plots.sh [BENCH.json]
. "$(dirname "$0")/common.sh"
need gnuplot gnuplot-nox
need python3 python3
json=${1:-}
tmp=$(mktemp -d)
if [ -z "$json" ]; then
    json="$top/docs/bench.json"
    "$LOOPFAST" bench --sizes --json >"$json"
fi
python3 - "$json" "$tmp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for name, t in d["transports"].items():
    with open(f"{sys.argv[2]}/{name}.dat", "w") as f:
        for z in t["sizes"]:
            f.write(f'{z["size"]} {z["rtt_median_us"]} {z["stream_GBps"]}\n')
PY
plot() {   # FILE TITLE YLABEL COLUMN
    gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set output "$1"
set title "$2"
set logscale xy
set xlabel "message size (bytes)"
set ylabel "$3"
set key left top
set grid
plot for [t in "tcp unix loopfast ring"] "$tmp/".t.".dat" using 1:$4 with linespoints title t
GP
}
plot "$top/docs/latency.png" "round-trip latency (median), lower is better" "microseconds" 2
plot "$top/docs/throughput.png" "stream throughput, higher is better" "GB/s" 3
rm -rf "$tmp"
echo "wrote docs/latency.png and docs/throughput.png from $json"
