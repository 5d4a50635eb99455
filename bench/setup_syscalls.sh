#!/bin/bash
# setup_syscalls.sh - system calls per short connection (connect, 1-byte
# echo, close, as in `loopfast bench`'s set-up row), on each end, kernel TCP
# against loopfast, by name.  strace -ff over N connections between two
# processes (build/bench_setup_conns); the first 10 and the last are left
# out.  The server's calls made between its marker and accept() (the next
# connection's spare, the last one's leftovers) are shown apart: they are
# made before it waits, off the client's path.  Two shapes: the server
# closes first, right after its echo (`loopfast bench`; under strace's
# slowness its client mostly takes the answer after that close, and stays
# plain), the client closes first (the server reads its end of stream;
# every connection goes fast), and two echoes before the client's close
# (the connection switches at its second exchange: `loopfast bench`'s
# "connection that switches" line).
#
#   bench/setup_syscalls.sh [N]     (default 200)
set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog="$top/build/bench_setup_conns"
n=${1:-200}
warm=10
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)" >&2; exit 1; }
[ -x "$prog" ] || make -C "$top" -s build/bench_setup_conns >/dev/null || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# count MODE: one line per (end, name) with the calls per connection
count() {
    local mode=$1 out
    rm -f "$tmp/$mode".*
    out=$(strace -qq -ff -o "$tmp/$mode" "$prog" "$mode" "$n" $shape) || exit 1
    echo "$mode: $out"
    for f in "$tmp/$mode".*; do
        if grep -q '^connect(.*AF_INET' "$f"; then end=client
        elif grep -q '^accept' "$f"; then end=server
        else continue; fi
        awk -v end="$end" -v mode="$mode" -v lo=$((warm + 1)) -v hi=$((n - 1)) '
            /^getppid\(/ { seg++; waiting = (end == "server"); next }
            /^getuid\(/ { skip = !skip; next }
            {
                name = $0; sub(/\(.*/, "", name)
                if (name !~ /^[a-z_0-9]+$/ || skip || seg < lo || seg > hi) next
                if (waiting && name ~ /^accept/) waiting = 0
                col = mode "-" end (waiting ? "-before-accept" : "")
                c[col " " name]++
            }
            END { for (k in c) printf "%s %.2f\n", k, c[k] / (hi - lo + 1) }' "$f"
    done
}

for shape in "" client-first two-echoes; do
echo "== ${shape:-server-first}: the $([ -n "$shape" ] && echo client || echo server) closes first"
{ count kernel; count loopfast; } > "$tmp/counts"
grep ' connections ' "$tmp/counts"
sed -i '/ connections /d' "$tmp/counts"
cols="kernel-client kernel-server loopfast-client loopfast-server loopfast-server-before-accept"
table() {
    awk -v cols="$cols" -v what="$1" '
        { v[$1 " " $2] = $3; names[$2] = 1; tot[$1] += $3 }
        END {
            nc = split(cols, col, " ")
            for (name in names) {
                if (what == "total") break
                line = sprintf("%-18s", name)
                for (j = 1; j <= nc; j++) {
                    x = v[col[j] " " name]
                    line = line sprintf(j < 3 ? " %8s" : j < 5 ? " %9s" : " %15s", x == "" ? "-" : x + 0)
                }
                print line
            }
            if (what != "total") exit
            printf "%-18s", "total"
            for (j = 1; j <= nc; j++)
                printf (j < 3 ? " %8s" : j < 5 ? " %9s" : " %15s"), tot[col[j]] + 0
            printf "\n"
        }' "$tmp/counts"
}
printf "%-18s %8s %8s %9s %9s %15s\n" "per connection" kernel kernel loopfast loopfast "loopfast server"
printf "%-18s %8s %8s %9s %9s %15s\n" "system call" client server client server "before accept"
table names | sort
table total
done
