#!/bin/bash
# One boot of the systemd-booted update test (tests/vm/systemd.sh), run by
# bow-test.service once the boot is assessed (after boot-complete.target,
# bow-commit.service and rauc-mark-good.service, whether they ran or
# failed). The stage comes from the kernel command line (bowtest.stage=N);
# the host picks the slot as a bootloader would and checks that it picked
# the one expected. Results are BOW-CHECK lines on the console. The stage
# ends with "BOW-STAGE-END N" and an orderly reboot, or with
# "BOW-POWERCUT N", on which the host kills the machine.
#
#   1 slot A, v1        reference data; RAUC installs v2-bad (pre-install
#                       handler: bowctl start --retries 2); reboot
#   2 slot B, v2-bad    attempt 1 on a checkpoint; the judge fails, so no
#                       commit, no mark-good; writes; orderly reboot under load
#   3 slot B, v2-bad    attempt 2: attempt 1's writes are gone; writes;
#                       power cut
#   4 slot A, v1        B is out of attempts: the bootloader is back on A and
#                       bowctl boot rolled the data back; RAUC installs
#                       v2-good; reboot
#   5 slot B, v2-good   writes from early boot on; the judge passes; at
#                       boot-complete.target the data is committed under that
#                       load and RAUC marks B good; writes go on; power cut
#   6 slot B, v2-good   the committed data and the writes after it, read with
#                       no bow device; reboot
#
# The checks each stage makes when it runs to its end (the host counts
# the ones missing as not run):
# checks 1: 11
# checks 2: 13
# checks 3: 10
# checks 4: 12
# checks 5: 16
# checks 6: 9
set -u
stage=$(sed -n 's/.*bowtest\.stage=\([0-9]*\).*/\1/p' /proc/cmdline)
T=/metadata/bow-test
RECORD=/metadata/bow/checkpoint.json
BOOTENV=/usr/lib/bow-test/rauc-bootenv
mkdir -p "$T"

ok() { echo "BOW-CHECK ok $1"; }
fail() { echo "BOW-CHECK FAIL $1"; }
check() {
    local what=$1; shift
    if "$@" > /tmp/check.out 2>&1; then ok "$what"; else fail "$what"; sed 's/^/    /' /tmp/check.out | tail -20; fi
}
eq() { if [ "$2" = "$3" ]; then ok "$1 ($3)"; else fail "$1: want '$2', got '$3'"; fi; }
unit() { systemctl show -p "$2" --value "$1"; }
bow_state() {
    local d
    for d in /sys/block/dm-*; do
        if [ "$(cat "$d/dm/name" 2>/dev/null)" = userdata ]; then cat "$d/bow/state"; return; fi
    done
    echo none
}
# Every file of the data partition with its checksum, read through the
# filesystem as mounted now.
snapshot() { (cd /data && find . -path ./lost+found -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum); }
same_as() { snapshot > /tmp/now.sha256; diff "$T/$1.sha256" /tmp/now.sha256 | head -20; cmp -s "$T/$1.sha256" /tmp/now.sha256; }
loaded() { wc -l < "$T/load-$stage.list" 2>/dev/null || echo 0; }
reboot_now() {
    echo "BOW-STAGE-END $stage"
    systemctl reboot
    exit 0
}
power_cut() {
    sync
    echo "BOW-POWERCUT $stage"
    sleep infinity
}
booted_as() {
    eq "booted slot (kernel command line)" "$1" "$(sed -n 's/.*rauc\.slot=\([AB]\).*/\1/p' /proc/cmdline)"
    eq "booted slot (rauc status)" "$1" "$(rauc status --output-format=shell 2>/dev/null | sed -n "s/^RAUC_SYSTEM_BOOTED_BOOTNAME='\{0,1\}\([^']*\)'\{0,1\}$/\1/p")"
    eq "system version" "$2" "$(cat /etc/bow-test/version)"
    eq "bow-boot@dev-vdc.service succeeded" success "$(unit bow-boot@dev-vdc.service Result)"
}
on_bow() {
    eq "data mounted from the bow device" /dev/mapper/userdata "$(findmnt -n -o SOURCE /data)"
    eq "bow state" "$1" "$(bow_state)"
}
on_plain() {
    eq "data mounted straight from the partition" /dev/vdc "$(findmnt -n -o SOURCE /data)"
    check "no bow device" sh -c '! dmsetup info userdata'
    check "no update pending (no record)" test ! -e "$RECORD"
}
install() {
    mkdir -p /media
    mountpoint -q /media || mount -o ro /dev/vdf /media
    check "rauc install $1" rauc install "/media/$1.raucb"
    check "the pre-install handler opened the update (record written)" test -f "$RECORD"
    eq "RAUC made slot B primary" B "$("$BOOTENV" get-primary)"
}
rounds_above() { [ "$(loaded)" -gt "$1" ]; }
# Polls "$@" every second, up to $1 times: beside the test command's other
# guests this one runs several times slower than alone, so a fixed wait
# that suffices alone may not.
wait_until() {
    local n=$1; shift
    until "$@"; do
        [ "$n" -gt 0 ] || return 1
        sleep 1; n=$((n - 1))
    done
}
# Starts the writer and lets it run at least $1 s, and until it has made
# three rounds durable.
start_load() {
    systemctl start --no-block bow-test-load@now.service
    sleep "$1"
    wait_until 600 rounds_above 2
    check "writes under load go on (rounds: $(loaded))" rounds_above 2
}

echo "BOW-STAGE-START $stage"
rauc status 2>&1 | sed 's/^/    rauc: /'
case "$stage" in
1)
    booted_as A v1
    on_plain
    mkdir -p /data/ref /data/tree/a/b
    for i in $(seq 0 39); do head -c 65536 /dev/urandom > "/data/ref/r$i"; done
    for i in $(seq 0 199); do echo "small file $i $RANDOM" > "/data/tree/a/b/f$i"; done
    sync
    snapshot > "$T/ref-v1.sha256"; sync "$T/ref-v1.sha256"
    check "reference data written ($(wc -l < "$T/ref-v1.sha256") files)" test "$(wc -l < "$T/ref-v1.sha256")" = 240
    install v2-bad
    reboot_now ;;
2)
    booted_as B v2-bad
    on_bow 1
    check "the data is the checkpoint's: as before the update" same_as ref-v1
    eq "the judge failed" failed "$(systemctl is-failed bow-test-judge.service)"
    eq "boot-complete.target not reached" inactive "$(systemctl is-active boot-complete.target)"
    eq "bow-commit.service never started" 0 "$(unit bow-commit.service ExecMainStartTimestampMonotonic)"
    eq "rauc-mark-good.service never started" 0 "$(unit rauc-mark-good.service ExecMainStartTimestampMonotonic)"
    check "the update is still pending (record)" test -f "$RECORD"
    start_load 15
    # An orderly reboot with the writes going: systemd stops the load,
    # unmounts /data and removes the bow device on its way down.
    reboot_now ;;
3)
    booted_as B v2-bad
    on_bow 1
    check "attempt 1's writes are gone: the data is as before the update" same_as ref-v1
    eq "the judge failed" failed "$(systemctl is-failed bow-test-judge.service)"
    check "the update is still pending (record)" test -f "$RECORD"
    start_load 15
    power_cut ;;
4)
    booted_as A v1
    on_plain
    check "rolled back: the data is as before the update" same_as ref-v1
    eq "RAUC sees slot B as bad" bad "$("$BOOTENV" get-state B)"
    install v2-good
    reboot_now ;;
5)
    booted_as B v2-good
    eq "the judge passed" active "$(systemctl is-active bow-test-judge.service)"
    eq "boot-complete.target reached" active "$(systemctl is-active boot-complete.target)"
    eq "bow-commit.service succeeded" "success 0" "$(unit bow-commit.service Result) $(unit bow-commit.service ExecMainStatus)"
    eq "rauc-mark-good.service succeeded" "success 0" "$(unit rauc-mark-good.service Result) $(unit rauc-mark-good.service ExecMainStatus)"
    eq "RAUC sees slot B as good" good "$("$BOOTENV" get-state B)"
    check "the update is closed (no record)" test ! -e "$RECORD"
    on_bow 2
    eq "the load was running before the commit and still is" active "$(systemctl is-active bow-test-load@early.service)"
    # Rounds durable before the commit started and after it ended (seconds
    # since boot, as systemd's monotonic timestamps).
    c0=$(unit bow-commit.service ExecMainStartTimestampMonotonic) c1=$(unit bow-commit.service ExecMainExitTimestampMonotonic)
    rounds_after_commit() { [ "$(awk -v t="$c1" '$2 * 1000000 > t' "$T/load-$stage.list" | wc -l)" -gt 0 ]; }
    wait_until 600 rounds_after_commit
    before=$(awk -v t="$c0" '$2 * 1000000 < t' "$T/load-$stage.list" | wc -l)
    after=$(awk -v t="$c1" '$2 * 1000000 > t' "$T/load-$stage.list" | wc -l)
    check "the commit ran under load: $before rounds durable before it started, $after after it ended" \
        test "$before" -gt 0 -a "$after" -gt 0
    n=$(loaded)
    sleep 10
    wait_until 600 rounds_above "$n"
    check "writes go on after the commit ($n, then $(loaded) rounds)" rounds_above "$n"
    systemctl stop bow-test-load@early.service
    sync
    snapshot > "$T/ref-v2.sha256"; sync "$T/ref-v2.sha256"
    check "the committed data has the update's writes" sh -c "grep -c '/load/' '$T/ref-v2.sha256' | grep -qv '^0$'"
    power_cut ;;
6)
    booted_as B v2-good
    on_plain
    check "the data is what was committed and written after it" same_as ref-v2
    eq "RAUC sees slot B as good" good "$("$BOOTENV" get-state B)"
    reboot_now ;;
*)
    fail "unknown stage '$stage'"
    reboot_now ;;
esac
