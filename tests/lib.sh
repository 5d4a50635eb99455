# lib.sh - what the shell tests share: the loopfast CLI, free ports, waiting
# for a server, the kernel's IP octet counter, cleanup.  Sourced, not run.
set -u
# In a network namespace of its own where possible (root, unshare and ip):
# the IP octet counter (assert_bypassed) then counts the test's traffic
# alone, not that of whatever else runs on the machine.
if [ "$(id -u)" -eq 0 ] && [ -z "${LOOPFAST_TEST_NETNS:-}" ] && command -v unshare >/dev/null &&
    command -v ip >/dev/null && unshare -n true 2>/dev/null; then
    LOOPFAST_TEST_NETNS=1 exec unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOOPFAST="$top/build/loopfast"
work=$(mktemp -d /tmp/loopfast-test.XXXXXX)
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "$*" >&2; exit 77; }
need() { for p in "$@"; do command -v "$p" >/dev/null 2>&1 || skip "$p is not installed"; done; }

# A TCP port no socket uses, in 20000-31999: below the ephemeral range, so
# that no client connection can take it between our check and the bind.
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 12000))
        ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
    done
    fail "no free port"
}

# Waits up to 10 s for something to listen on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    fail "nothing listens on port $1"
}

# Writes $work/$1.conf: nginx in the foreground as root, its files in $work,
# $2 worker processes, then the http block's own lines ($3: directives and
# server blocks).
nginx_conf() {
    cat >"$work/$1.conf" <<CONF
daemon off;
user root;
worker_processes $2;
pid $work/$1.pid;
error_log $work/$1.error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work;
    proxy_temp_path $work;
    fastcgi_temp_path $work;
    uwsgi_temp_path $work;
    scgi_temp_path $work;
    $3
}
CONF
}

# Starts a server in the background (killed at exit).
start() { "$@" >"$work/server.log" 2>&1 & pids+=($!); }

in_octets() {
    awk '/^IpExt:/ { if (!h) { for (i = 1; i <= NF; i++) n[i] = $i; h = 1 }
                     else for (i = 1; i <= NF; i++) if (n[i] == "InOctets") print $i }' /proc/net/netstat
}

# Asserts that fewer than 5% of $2 payload bytes crossed the IP layer since $1.
assert_bypassed() {
    local delta=$(( $(in_octets) - $1 )) payload=$2
    echo "IP octets: $delta for $payload payload bytes"
    [ "$delta" -lt $((payload / 20)) ] || fail "$delta IP octets for $payload payload bytes: not bypassed"
}
