#!/usr/bin/env bash
# OpenSSH under `loopfast run`: sshd (privilege separation: a monitor, a
# sandboxed pre-authentication child with RLIMIT_NOFILE 1 and a seccomp
# filter, then a session child) and ssh fetch a file with `cat` and send it
# to `sha256sum`.  Both checksums must match with loopfast on both
# ends, on one end only and on neither, with sshd's default re-exec and
# without it (-r); with both ends under loopfast the payload must not cross
# the IP layer.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root (sshd, and a root login with a key)"
need ssh ssh-keygen sha256sum
sshd=/usr/sbin/sshd
[ -x "$sshd" ] || skip "sshd is not installed"
mkdir -p /run/sshd   # sshd's privilege separation directory

ssh-keygen -q -N '' -t ed25519 -f "$work/host_key" || fail "host key"
ssh-keygen -q -N '' -t ed25519 -f "$work/user_key" || fail "user key"
cp "$work/user_key.pub" "$work/authorized_keys"
port=$(free_port)
cat >"$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $work/sshd.pid
EOF
# 20 MB where the payload must bypass IP; 4 MB where it is plain TCP anyway
# (one end without loopfast), to stay within the time a test may take.
head -c 20000000 /dev/urandom >"$work/big"
head -c 4000000 "$work/big" >"$work/small"

# ssh under "${cli[@]}" (loopfast run, or nothing), with the command "$@".
ssh_cmd() {
    timeout 30 "${cli[@]}" ssh -F /dev/null -i "$work/user_key" -o UserKnownHostsFile="$work/known_hosts" \
        -o StrictHostKeyChecking=no -o BatchMode=yes -o LogLevel=ERROR -p "$port" root@127.0.0.1 "$@"
}

# $1: sshd under loopfast (1/0); $2: ssh under loopfast; $3: sshd flags;
# $4: which commands run (cat, pipe or both).
one_case() {
    local srv=() name="sshd${3:+ $3} loopfast=$1, ssh loopfast=$2"
    [ "$1" = 1 ] && srv=("$LOOPFAST" run --)
    cli=()
    [ "$2" = 1 ] && cli=("$LOOPFAST" run --)
    timeout 60 "${srv[@]}" "$sshd" -D -e -f "$work/sshd_config" $3 >"$work/sshd.log" 2>&1 &
    local sp=$!
    wait_port "$port"
    local before got data=$work/small bytes=4000000
    [ "$1$2" = 11 ] && data=$work/big bytes=20000000
    local want
    want=$(sha256sum <"$data" | cut -d' ' -f1)
    if [ "$4" != pipe ]; then
        before=$(in_octets)
        got=$(ssh_cmd "cat $data" | sha256sum | cut -d' ' -f1)
        [ "$got" = "$want" ] || fail "$name: cat gave $got, want $want; sshd: $(tail -5 "$work/sshd.log")"
        [ "$1$2" = 11 ] && assert_bypassed "$before" "$bytes"
    fi
    if [ "$4" != cat ]; then
        before=$(in_octets)
        got=$(ssh_cmd sha256sum <"$data" | cut -d' ' -f1)
        [ "$got" = "$want" ] || fail "$name: sha256sum said $got, want $want; sshd: $(tail -5 "$work/sshd.log")"
        [ "$1$2" = 11 ] && assert_bypassed "$before" "$bytes"
    fi
    kill "$sp"
    wait "$sp" 2>/dev/null
    ! grep -q "terminated by signal\|Invalid argument" "$work/sshd.log" ||
        fail "$name: sshd: $(grep "signal\|Invalid" "$work/sshd.log")"
    echo "ok: $name ($4)"
}

# Nine ssh sessions: a loaded 2-core machine runs one in 2-4 s.  Where sshd
# runs without loopfast, its -r changes nothing of ours: not repeated.
one_case 1 1 "" both
one_case 1 1 -r both
one_case 1 0 "" cat
one_case 1 0 -r pipe
one_case 0 1 "" both
one_case 0 0 "" both
echo ok
