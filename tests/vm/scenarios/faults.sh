# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 400
# cost: 34
# checks: 20
# Faults below the target in state 1 (issue 5): the disk under bow fails the
# backup copy, the log write, or the user's own write. The error must reach
# the writer, nothing may hang or splat, and afterwards the rollback must
# still return the checkpoint image (or bowctl must refuse and write nothing).
# The disk below is a dm table over /dev/vda whose pieces are switched to
# dm-flakey with error_writes while bow runs (commit faults: `transitions`).
. /tests/lib.sh
DISK=/dev/vda COPY=/dev/vdb
MIB=32
LEN=$(( MIB * 2048 ))
HALF=$(( LEN / 2 ))
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
pool

linear() { echo "0 $LEN linear $DISK 0"; }
# table_with_fault <start> <len>: writes to sectors start..start+len fail.
table_with_fault() {
    local s=$1 l=$2
    [ "$s" -gt 0 ] && echo "0 $s linear $DISK 0"
    echo "$s $l flakey $DISK $s 0 1 1 error_writes"
    [ $(( s + l )) -lt $LEN ] && echo "$(( s + l )) $(( LEN - s - l )) linear $DISK $(( s + l ))"
}
swap_low() { dmsetup suspend low && dmsetup load low && dmsetup resume low; }

dd if=/dev/zero of=$DISK bs=1M count=$MIB oflag=direct 2>/dev/null
linear | dmsetup create low
check "bow over a switchable disk" dmsetup create fb --table "0 $LEN bow /dev/mapper/low 1 block_size:4096"
B=$(dm_dev fb)
# State 0: data in the first half, the second half trimmed.
for _ in 1 2; do cat $POOL; done | dd of=$B bs=1M count=16 oflag=direct iflag=fullblock 2>/dev/null
blkdiscard -o $(( HALF * 512 )) -l $(( HALF * 512 )) $B
dd if=$DISK of=$COPY bs=1M count=$MIB iflag=direct oflag=direct 2>/dev/null
check "checkpoint" sh -c "echo 1 > $(bow_sysfs fb)/state"
dmsetup message fb 0 free_map > /tmp/free
copies0=$(status_field fb copies)

# write_block <block>: one 4 KiB O_DIRECT write through bow.
write_block() { rnd 1 | dd of=$B bs=4096 seek=$1 count=1 oflag=direct 2>/tmp/dd.err; }

# 1. The backup copy fails (writes into the free half fail).
table_with_fault $HALF $HALF | swap_low
expect_fail "backup copy fails: the user's write gets the error" write_block 100
cat /tmp/dd.err
linear | swap_low
eq "no copy counted for the failed backup" "$copies0" "$(status_field fb copies)"
check "the same block can be written once the disk is back" write_block 100
copies1=$(status_field fb copies)
eq "... with one backup" $(( copies0 + 1 )) "$copies1"

# 2. The user's write fails (its own block refuses writes; the backup and
#    the log write before it succeed).
table_with_fault $(( 300 * 8 )) 8 | swap_low
expect_fail "user's write fails: the error reaches the writer" write_block 300
linear | swap_low
check "writes work again" write_block 301

# 3. The log write fails (block 0 refuses writes). The target then stops
#    logging: every later first overwrite fails with EIO until the device
#    is recreated, so nothing unlogged ever reaches the disk. Rewrites of
#    blocks already backed up need no log and still work.
table_with_fault 0 8 | swap_low
expect_fail "log write fails: the user's write gets the error" write_block 200
linear | swap_low
expect_fail "after a failed log write, first overwrites keep failing" write_block 201
check "... while a rewrite of a backed-up block works" write_block 100
check "... and the kernel log says why" sh -c "dmesg | grep -q 'no further backups can be logged'"

dmsetup remove fb
dmsetup remove low
check "raw: bowctl restore after the faults" sh -c "bowctl restore $DISK > /tmp/out 2>&1" || cat /tmp/out
zero_ranges $DISK 4096 /tmp/free
zero_ranges $COPY 4096 /tmp/free
eq "raw: blocks not free at checkpoint identical to the checkpoint image" \
    "$(dd if=$COPY bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)" \
    "$(dd if=$DISK bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)"

# 4. The same through a filesystem: ext4 on bow sees the error.
dd if=/dev/zero of=$DISK bs=1M count=$MIB oflag=direct 2>/dev/null
linear | dmsetup create low
check "bow again" dmsetup create fb --table "0 $LEN bow /dev/mapper/low 1 block_size:4096"
B=$(dm_dev fb)
mkfs.ext4 -q -F -b 4096 $B
mount $B /mnt/a
rnd 1024 > /mnt/a/f
sync
md5=$(md5sum < /mnt/a/f)
fstrim /mnt/a
check "checkpoint under ext4" sh -c "echo 1 > $(bow_sysfs fb)/state"
# Every write into free space fails: first overwrites cannot be backed up.
free_start=$(dmsetup message fb 0 free_map | tr ' ' '\n' | tail -1 | cut -d+ -f1)
table_with_fault $(( free_start * 8 )) $(( LEN - free_start * 8 )) | swap_low
rnd 64 | dd of=/mnt/a/f bs=4096 count=64 conv=notrunc,fsync 2>/tmp/dd.err
rc=$?
check "ext4: fsync of an overwrite reports the error (rc $rc)" [ $rc != 0 ]
linear | swap_low
umount /mnt/a 2>/dev/null || umount -l /mnt/a
dmsetup remove fb
dmsetup remove low

code=0; bowctl restore $DISK > /tmp/out 2>&1 || code=$?
cat /tmp/out
eq "ext4: restore after the faults" 0 $code
check "ext4: fsck clean" sh -c "e2fsck -fn $DISK > /tmp/fsck 2>&1" || cat /tmp/fsck
mount -o ro $DISK /mnt/a
eq "ext4: the file is back as it was at checkpoint" "$md5" "$(md5sum < /mnt/a/f)"
umount /mnt/a
rmmod dm_bow
finish
