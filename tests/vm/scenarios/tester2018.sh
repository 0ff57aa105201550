# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 300
# cost: 4
# checks: 17
# The 2018 tester's report, exactly: a 64 MiB ext4 device under bow, mounted
# read-only, fstrim, echo 1 > state. It crashed Android's prototype. Here the
# state must change with nothing in the console, and the device must work
# again after unmount, remove and re-create (restoring the log first, since
# a device holding an unrestored log is refused).
. /tests/lib.sh
DISK=/dev/vda
LEN=$(( 64 * 2048 ))
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
mkfs.ext4 -q -F -b 4096 $DISK 64M
check "dmsetup create" dmsetup create tester --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev tester) S=$(bow_sysfs tester)
check "mount read-only" mount -o ro $D /mnt/a
fstrim -v /mnt/a
check "free space after fstrim on a read-only mount" [ "$(cat $S/free)" -gt 0 ]
check "echo 1 > state" sh -c "echo 1 > $S/state"
eq "state changed to 1" 1 "$(cat $S/state)"
check "the filesystem still reads" ls /mnt/a/lost+found
check "umount" umount /mnt/a
check "dmsetup remove" dmsetup remove tester
expect_fail "re-create refused while the log is unrestored" \
    dmsetup create tester --table "0 $LEN bow $DISK 1 block_size:4096"
dmsetup remove tester 2>/dev/null
check "bowctl restore" bowctl restore $DISK
check "re-create" dmsetup create tester --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev tester)
check "mount read-write" mount $D /mnt/a
check "use it: write a file" dd if=/dev/urandom of=/mnt/a/after bs=4096 count=16
check "umount" umount /mnt/a
check "fsck clean" e2fsck -fn $D
check "remove" dmsetup remove tester
check "rmmod" rmmod dm_bow
finish
