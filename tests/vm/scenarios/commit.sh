# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 400
# cost: 88
# checks: 31
# Commit on ext4: checkpoint, change files, commit (by message); block 0 is
# back in place on disk, the device below reads the same as through bow,
# writes and discards pass straight through (write amplification 1.000), the
# filesystem checks clean on the raw disk with the new files. Also: a reload
# in state 1 is refused and leaves the checkpoint intact.
. /tests/lib.sh
DISK=/dev/vda
MIB=64 LEN=$(( 64 * 2048 ))
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
check "create" dmsetup create cm --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev cm) DN=dm-$(dm_minor cm) S=$(bow_sysfs cm)
mkfs.ext4 -q -F -b 4096 $D
check "mount" mount $D /mnt/a
populate /mnt/a 20
sync
fstrim /mnt/a
check "checkpoint" dmsetup message cm 0 checkpoint
eq "state 1" 1 "$(cat $S/state)"

dmesg -c > /dev/null
expect_fail "reload in state 1 is refused" dmsetup reload cm --table "0 $LEN bow $DISK 1 block_size:4096"
check "with a message naming the live checkpoint" sh -c "dmesg | grep -q 'live bow target in checkpoint state'"
dmsetup resume cm
dd if=/dev/urandom of=/mnt/a/bg bs=64k count=64 oflag=direct 2>/dev/null &
sleep 1
check "suspend in state 1 during writes (drains in-flight work)" dmsetup suspend cm
check "resume" dmsetup resume cm
wait
check "the writes completed" [ "$(stat -c %s /mnt/a/bg)" = $((64 * 65536)) ]
eq "still state 1 after the refused reload" 1 "$(cat $S/state)"

for i in 1 2 3 4 5; do dd if=/dev/urandom of=/mnt/a/f$i bs=4096 count=4 conv=notrunc 2>/dev/null; done
dd if=/dev/urandom of=/mnt/a/v2 bs=64k count=16 2>/dev/null
sync
(cd /mnt/a && find . -type f | sort | xargs md5sum) > /tmp/v2.md5
check "commit by message" dmsetup message cm 0 commit
eq "state 2" 2 "$(cat $S/state)"
eq "status says committed" committed "$(status_field cm state)"
expect_fail "commit again is refused" dmsetup message cm 0 commit
expect_fail "checkpoint after commit is refused" sh -c "echo 1 > $S/state"
magic=$(magic_of $DISK)
check "block 0 on disk is no longer a log ($magic)" [ "$magic" != 424f5700 ]
sync
eq "device below reads the same as through bow" \
    "$(dd if=$D bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)" \
    "$(dd if=$DISK bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)"

wa_begin vda $DN
for i in $(seq 0 49); do
    dd if=/dev/urandom of=/mnt/a/w bs=4096 seek=$i count=1 oflag=direct conv=notrunc 2>/dev/null
done
wa_end
eq "committed: write amplification 1.000" "1.000" "$WA_FRAC"
echo "WA committed $WA_FRAC"
check "umount" umount /mnt/a
dd if=/dev/urandom of=$D bs=4096 seek=16000 count=4 oflag=direct conv=notrunc 2>/dev/null
check "discard passes down after commit" blkdiscard -o $((16000 * 4096)) -l 16384 $D
eq "discarded blocks read as zeroes below" \
    "$(dd if=/dev/zero bs=4096 count=4 2>/dev/null | md5sum)" \
    "$(dd if=$DISK bs=4096 skip=16000 count=4 iflag=direct 2>/dev/null | md5sum)"
check "remove" dmsetup remove cm
check "bowctl: nothing to restore" sh -c "bowctl restore $DISK | grep -q 'nothing to restore'"
check "fsck clean on the raw disk" e2fsck -fn $DISK
check "mount raw disk" mount -o ro $DISK /mnt/a
check "files are the new version" sh -c "cd /mnt/a && md5sum -c -s /tmp/v2.md5"
umount /mnt/a

# Committed cost against dm-linear, same disk, same VM run: a ratio of times.
B=/dev/vdb
check "second bow device" dmsetup create cm2 --table "0 $LEN bow $B 1 block_size:4096"
blkdiscard -o $((32 * 1024 * 1024)) -l $((32 * 1024 * 1024)) "$(dm_dev cm2)"
dmsetup message cm2 0 checkpoint && dmsetup message cm2 0 commit
eq "second device committed" committed "$(status_field cm2 state)"
check "dm-linear baseline" dmsetup create lin --table "0 $LEN linear $B $LEN"
# runtime_ms <dev>: fio's write runtime (terse field 50) for 512 random 4 KiB
# writes; 0 when fio fails, prints no runtime, or the device's own counters
# do not show the 2 MiB written (fio given a wrong path writes a file).
runtime_ms() {
    local out ms w0 w1
    w0=$(sectors_written ${1#/dev/} 2>/dev/null || echo 0)
    out=$(fio --minimal --name=t --filename=$1 --rw=randwrite --bs=4k --direct=1 --ioengine=psync \
        --size=$((16 * 1024 * 1024)) --io_size=$((2 * 1024 * 1024)) --randrepeat=1 2>&1) || { echo 0; return; }
    w1=$(sectors_written ${1#/dev/} 2>/dev/null || echo 0)
    [ $((w1 - w0)) -ge 4096 ] || { echo 0; return; }
    ms=$(echo "$out" | tail -1 | cut -d';' -f50)
    case $ms in ''|*[!0-9]*) echo 0 ;; *) echo $ms ;; esac
}
# Four interleaved rounds, alternating which goes first; the ratio of the
# totals. Single rounds vary by +-30% under TCG, so the bound only catches a
# gross regression; the exact cost check is the write amplification above.
# The bound was 1.25 with three rounds in a fixed order; it became 1.5 with
# the alternating rounds (d610ab9) because single rounds vary by +-30% under
# TCG. Measured 2026-12-01: rounds 1.00, 1.33, 1.23, 1.09; total 1.17.
tb=0 tl=0 bad=0
for round in 1 2 3 4; do
    if [ $((round % 2)) = 1 ]; then
        b=$(runtime_ms "$(dm_dev cm2)"); l=$(runtime_ms "$(dm_dev lin)")
    else
        l=$(runtime_ms "$(dm_dev lin)"); b=$(runtime_ms "$(dm_dev cm2)")
    fi
    echo "round $round: committed bow $b ms, dm-linear $l ms"
    [ "$b" -gt 0 ] && [ "$l" -gt 0 ] || bad=$((bad + 1))
    tb=$((tb + b)) tl=$((tl + l))
done
eq "timing rounds: fio ran, wrote 2 MiB to the device and timed every one" 0 $bad
ratio=none
[ $tb -gt 0 ] && [ $tl -gt 0 ] && ratio=$(awk -v b=$tb -v l=$tl 'BEGIN { printf "%.2f", b / l }')
echo "committed bow runtime $tb ms, dm-linear $tl ms: time ratio bow/linear $ratio"
check "committed bow costs about what dm-linear does (time ratio $ratio <= 1.5)" \
    sh -c "[ $ratio != none ] && awk -v r=$ratio 'BEGIN { exit !(r <= 1.5) }'"
dmsetup remove cm2
dmsetup remove lin
rmmod dm_bow
finish
