# common.sh - shared by the bench/ scripts: the CLI, ports, servers that are
# stopped on exit, and a ratio printer.  Sourced, not run.  LOOPFAST, when
# set, names another build's CLI (to compare two builds in one session).
set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOOPFAST=${LOOPFAST:-"$top/build/loopfast"}
[ -x "$LOOPFAST" ] || { echo "build first: make" >&2; exit 1; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
need() { command -v "$1" >/dev/null || { echo "$1 is not installed (apt-get install $2)" >&2; exit 1; }; }
port() { echo $((10000 + RANDOM % 10000)); }   # below the ephemeral range
wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
    echo "nothing listens on $1" >&2; exit 1
}
# ratio NAME KERNEL LOOPFAST higher|lower
ratio() {
    awk -v n="$1" -v k="$2" -v f="$3" -v d="$4" 'BEGIN {
        r = (d == "lower") ? k / f : f / k
        printf "%-28s kernel %12.2f   loopfast %12.2f   %6.1fx %s\n", n, k, f, r, d }'
}
