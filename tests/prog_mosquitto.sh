#!/usr/bin/env bash
# mosquitto (MQTT) with mosquitto_sub and mosquitto_pub, at QoS 0, 1 and 2:
# 3000 short messages and one of 2 MB reach the subscriber whole and in
# order, without loopfast and with the broker and both clients under
# `loopfast run`, where the payload bypasses the kernel's IP layer.  As
# root the broker drops to the mosquitto user: its clients are of another
# uid.
. "$(dirname "$0")/lib.sh"
need mosquitto mosquitto_sub mosquitto_pub cmp
seq 1 3000 | sed 's/$/ a short message/' >"$work/lines"
head -c 1500000 /dev/urandom | base64 -w0 >"$work/blob"
{ cat "$work/lines" "$work/blob"; echo; } >"$work/want"

for run in "" "$LOOPFAST run --"; do
    port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10000\n' "$port" >"$work/m.conf"
    chmod 644 "$work/m.conf"
    start timeout 60 $run mosquitto -c "$work/m.conf"
    wait_port "$port"
    before=$(in_octets)
    for q in 0 1 2; do
        timeout 30 $run mosquitto_sub -h 127.0.0.1 -p "$port" -t "t$q" -q "$q" -C 3001 -W 25 >"$work/got" &
        sub=$!
        # subscribed: the broker lists it (no message may come before)
        for _ in $(seq 50); do
            [ "$(ss -Htn state established "dport = :$port" | wc -l)" -ge 1 ] && break
            sleep 0.1
        done
        sleep 0.3
        timeout 20 $run mosquitto_pub -h 127.0.0.1 -p "$port" -t "t$q" -q "$q" -l <"$work/lines" ||
            fail "mosquitto_pub -l, QoS $q (${run:-kernel TCP}): exit $?"
        timeout 20 $run mosquitto_pub -h 127.0.0.1 -p "$port" -t "t$q" -q "$q" -f "$work/blob" ||
            fail "mosquitto_pub -f, QoS $q (${run:-kernel TCP}): exit $?"
        wait "$sub" || fail "mosquitto_sub, QoS $q (${run:-kernel TCP}): exit $?"
        cmp -s "$work/want" "$work/got" || fail "messages at QoS $q differ (${run:-kernel TCP})"
    done
    [ -z "$run" ] || assert_bypassed "$before" $((3 * 2 * 2000000))
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null
    unset 'pids[-1]'
done
echo ok
