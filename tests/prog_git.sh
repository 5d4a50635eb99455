#!/usr/bin/env bash
# git daemon and git clone over git://127.0.0.1, both under `loopfast run`:
# the daemon forks and execs `git daemon --serve` onto the accepted socket,
# which forks and execs upload-pack, which sends its refs with stdio and the
# pack with write(): stdio's bytes went to TCP uncounted and the clone failed
# ("read error: Connection reset by peer").  The clone must equal the
# repository, three times.  (The server's answers stay on TCP: they are
# written to stdout, which stdio may write past loopfast; docs/design.md 4.4.)
. "$(dirname "$0")/lib.sh"
need git sha256sum
port=$(free_port)
repo="$work/repo"
git init -q --bare "$repo.git" || fail "git init"
git init -q "$repo" || fail "git init"
head -c 3000000 /dev/urandom >"$repo/big.bin"
for i in $(seq 50); do echo "file $i" >"$repo/f$i.txt"; done
git -C "$repo" add . && git -C "$repo" -c user.name=t -c user.email=t@t commit -qm one ||
    fail "commit"
git -C "$repo" push -q "$repo.git" HEAD:refs/heads/main && git -C "$repo.git" symbolic-ref HEAD refs/heads/main || fail "push"
want=$(git -C "$repo" rev-parse HEAD^{tree})
start timeout 120 "$LOOPFAST" run -- git daemon --reuseaddr --export-all --listen=127.0.0.1 \
    --port="$port" --base-path="$work" "$work"
wait_port "$port"
for i in 1 2 3; do
    rm -rf "$work/clone"
    timeout 60 "$LOOPFAST" run -- git clone -q "git://127.0.0.1:$port/repo.git" "$work/clone" \
        2>"$work/clone.err" || fail "clone $i: $(cat "$work/clone.err")"
    [ "$(git -C "$work/clone" rev-parse HEAD^{tree})" = "$want" ] || fail "clone $i differs"
    [ "$(sha256sum <"$work/clone/big.bin")" = "$(sha256sum <"$repo/big.bin")" ] || fail "big.bin $i"
done
rm -rf "$work/clone"
timeout 60 git clone -q "git://127.0.0.1:$port/repo.git" "$work/clone" || fail "plain clone"
[ "$(git -C "$work/clone" rev-parse HEAD^{tree})" = "$want" ] || fail "plain clone differs"
echo ok
