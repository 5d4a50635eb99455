#!/usr/bin/env bash
# Runs each test program given on the command line and tallies the results.
# A test exits 0 (pass), 77 (skip) or anything else (fail); each gets at most
# LOOPFAST_TEST_TIMEOUT seconds (default 120).  LOOPFAST_TEST_WRAPPER, when
# set, is put before each test (make check-valgrind uses it).
set -u
timeout_s=${LOOPFAST_TEST_TIMEOUT:-120}
pass=0 fail=0 skip=0 failed=()
for t in "$@"; do
    name=$(basename "$t")
    log=$(mktemp)
    start=$EPOCHREALTIME
    # shellcheck disable=SC2086 # the wrapper is a command line
    timeout -k 5 "$timeout_s" ${LOOPFAST_TEST_WRAPPER:-} "$t" >"$log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
    case $rc in
        0)  pass=$((pass + 1)); printf 'PASS %-32s %6.2fs\n' "$name" "$secs" ;;
        77) skip=$((skip + 1)); printf 'SKIP %-32s (%s)\n' "$name" "$(tail -n 1 "$log")" ;;
        *)  fail=$((fail + 1)); failed+=("$name")
            printf 'FAIL %-32s exit %d\n' "$name" "$rc"
            sed 's/^/    | /' "$log" | tail -n 30 ;;
    esac
    rm -f "$log"
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
if [ "$skip" -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
