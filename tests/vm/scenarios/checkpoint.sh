# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 600
# cost: 58
# checks: 37
# The checkpoint round trip on ext4 (4 KiB blocks, block_size:4096):
# state 0 records trims, checkpoint, first overwrites are backed up, removal
# in state 1 leaves a valid log (decoded and checksum-verified by bowctl),
# re-creating over an unrestored log is refused, and bowctl restore brings
# back every block that was not free at checkpoint; fsck is clean and the
# files match.
. /tests/lib.sh

DISK=/dev/vda
MIB=64
LEN=$(( MIB * 2048 ))
insmod /lib/modules/dm-bow.ko || { fail "insmod"; finish; }

check "create bow (64 MiB, block_size:4096)" dmsetup create bow --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev bow)
S=$(bow_sysfs bow)
eq "sysfs state starts at 0" 0 "$(cat $S/state)"
eq "sysfs free starts at 0" 0 "$(cat $S/free)"
check "mkfs.ext4 on bow" mkfs.ext4 -q -F -b 4096 "$D"
check "mount" mount "$D" /mnt/a
populate /mnt/a 40
sync
check "fstrim" fstrim /mnt/a
free=$(cat $S/free)
check "free space recorded ($free bytes)" [ "$free" -gt $(( 16 * 1024 * 1024 )) ]
eq "status free= matches sysfs" "$free" "$(status_field bow free)"
check "free_map lists the free ranges" sh -c "dmsetup message bow 0 free_map | grep -q '+'"

# The checkpoint image: freeze the filesystem by remounting read-only.
check "remount read-only" mount -o remount,ro /mnt/a
(cd /mnt/a && find . -type f | sort | xargs md5sum) > /tmp/v1.md5
dd if=$DISK of=/tmp/ckpt.img bs=1M count=$MIB iflag=direct 2>/dev/null

echo 1 > $S/state
eq "state 1 after writing 1" 1 "$(cat $S/state)"
eq "status says checkpoint" checkpoint "$(status_field bow state)"
eq "first log block holds block 0's backup and a zero entry for its live copy" 2 "$(status_field bow log_entries)"
dmsetup message bow 0 free_map > /tmp/freemap
check "free map at checkpoint recorded" [ -s /tmp/freemap ]
expect_fail "writing 1 again is refused" sh -c "echo 1 > $S/state"
expect_fail "writing 0 is refused" sh -c "echo 0 > $S/state"
expect_fail "writing garbage is refused" sh -c "echo x > $S/state"
eq "refused writes changed nothing" 1 "$(cat $S/state)"
magic=$(magic_of $DISK)
eq "block 0 on disk holds the BOW log" 424f5700 "$magic"

check "remount read-write" mount -o remount,rw /mnt/a
# Change files: overwrite in place, append, delete, create, rename.
for i in 1 2 3 4 5 6 7 8 9 10; do
    dd if=/dev/urandom of=/mnt/a/f$i bs=4096 count=2 conv=notrunc 2>/dev/null
done
for i in 11 12 13; do dd if=/dev/urandom bs=4096 count=3 2>/dev/null >> /mnt/a/f$i; done
rm -f /mnt/a/f20 /mnt/a/f21
mv /mnt/a/f22 /mnt/a/renamed
dd if=/dev/urandom of=/mnt/a/new bs=1M count=2 2>/dev/null
dd if=/dev/urandom of=/mnt/a/sub/big bs=1M count=4 conv=notrunc 2>/dev/null
sync
copies=$(status_field bow copies)
check "first overwrites were backed up ($copies copies)" [ "$copies" -gt 0 ]
check "log writes happened ($(status_field bow log_writes))" [ "$(status_field bow log_writes)" -gt 0 ]
dmsetup status bow
check "umount" umount /mnt/a
check "remove in state 1" dmsetup remove bow

check "bowctl inspect: the log is valid" bowctl inspect $DISK
bowctl inspect --json $DISK > /tmp/inspect.json
# Zero entries (free space written since the checkpoint) carry no checksum.
check "every entry's checksum verified, zero entries aside" sh -c "grep -q '\"checksum_verified\": true' /tmp/inspect.json && ! grep -A1 '\"checksum_verified\": false' /tmp/inspect.json | grep -q '\"zero\": false'"
check "zero entries: the live copy's place at least" sh -c "grep -q '\"zero\": true' /tmp/inspect.json"
dmesg -c > /dev/null
expect_fail "re-creating over an unrestored log is refused" dmsetup create bow --table "0 $LEN bow $DISK 1 block_size:4096"
check "with the restore message" sh -c "dmesg | grep -q 'unrestored bow log'"
dmsetup remove bow 2>/dev/null

check "bowctl restore" bowctl restore $DISK
check "restore again: nothing to do" bowctl restore $DISK
dd if=$DISK of=/tmp/after.img bs=1M count=$MIB iflag=direct 2>/dev/null
zero_ranges /tmp/ckpt.img 4096 /tmp/freemap
zero_ranges /tmp/after.img 4096 /tmp/freemap
eq "every block not free at checkpoint is restored" "$(md5sum < /tmp/ckpt.img)" "$(md5sum < /tmp/after.img)"
rm -f /tmp/after.img /tmp/ckpt.img
check "fsck clean after restore" e2fsck -fn $DISK
check "mount restored filesystem" mount -o ro $DISK /mnt/a
check "all files identical to the checkpoint" sh -c "cd /mnt/a && md5sum -c -s /tmp/v1.md5"
eq "no new files" "$(wc -l < /tmp/v1.md5)" "$(find /mnt/a -type f | wc -l)"
umount /mnt/a
check "rmmod" rmmod dm_bow
finish
