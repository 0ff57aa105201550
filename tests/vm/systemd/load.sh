#!/bin/bash
# Writes to the data partition while a stage of the systemd test runs
# (bow-test-load@.service): each round writes a new 64 KiB file and
# overwrites one of the 40 reference files in place, each with fsync, then
# appends the round and the time since boot to
# /metadata/bow-test/load-<stage>.list (fsynced), so the list names only
# writes that were durable, and when. Instance "early": started
# at boot, before boot-complete.target, when the kernel command line has
# bowtest.load=early (the commit then happens under this load); instance
# "now": started by the stage script.
set -u
# The unit is Type=notify: it is "started" once three rounds are durable,
# so what is ordered after it (boot-complete.target, and so the commit)
# runs under this load.
if [ "${1:-now}" = early ] && ! grep -qw 'bowtest.load=early' /proc/cmdline; then
    systemd-notify --ready
    exit 0
fi
stage=$(sed -n 's/.*bowtest\.stage=\([0-9]*\).*/\1/p' /proc/cmdline)
list=/metadata/bow-test/load-$stage.list
mkdir -p /data/load /metadata/bow-test
: > "$list"
i=0
while :; do
    i=$((i + 1))
    yes "stage $stage load $i" | head -c 65536 | dd of="/data/load/s$stage-w$i" bs=64k iflag=fullblock conv=fsync status=none || exit 1
    yes "stage $stage over $i" | head -c 65536 \
        | dd of="/data/ref/r$((i % 40))" bs=64k iflag=fullblock conv=notrunc,fsync status=none || exit 1
    echo "$i $(cut -d' ' -f1 /proc/uptime)" >> "$list" && sync "$list" || exit 1
    [ "$i" = 3 ] && systemd-notify --ready
done
