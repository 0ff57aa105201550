# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 300
# cost: 15
# checks: 22
# A failed state change leaves the old state in force and reports a negative
# errno: the disk under bow (a dm-linear) is switched to dm-error during the
# 0->1 and the 1->2 transitions.
. /tests/lib.sh
DISK=/dev/vda
LEN=$(( 32 * 2048 ))
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
dd if=/dev/urandom of=$DISK bs=1M count=32 oflag=direct 2>/dev/null
check "linear under bow" dmsetup create under --table "0 $LEN linear $DISK 0"
U=$(dm_dev under)
check "bow over it" dmsetup create tb --table "0 $LEN bow $U 1 block_size:4096"
S=$(bow_sysfs tb)
blkdiscard -o $((16 * 1024 * 1024)) -l $((16 * 1024 * 1024)) "$(dm_dev tb)"
free0=$(cat $S/free)

to_error() { dmsetup suspend --noflush under && dmsetup reload under --table "0 $LEN error" && dmsetup resume under; }
to_linear() { dmsetup suspend --noflush under && dmsetup reload under --table "0 $LEN linear $DISK 0" && dmsetup resume under; }

check "disk fails" to_error
# Only what the kernel logs from here on counts (earlier scenarios may have
# logged the same message).
seen=$(dmesg | wc -l)
expect_fail "checkpoint on a failing disk is refused" sh -c "echo 1 > $S/state 2> /tmp/err"
check "its error is an I/O error (EIO)" grep -q -i -E "i/o error|input/output error" /tmp/err
check "the kernel says why" sh -c "dmesg | tail -n +$((seen + 1)) | grep -q 'checkpoint failed'"
eq "state stays 0" 0 "$(cat $S/state)"
eq "free space unchanged" "$free0" "$(cat $S/free)"
check "disk back" to_linear
check "checkpoint now works" sh -c "echo 1 > $S/state"
eq "state 1" 1 "$(cat $S/state)"
check "a first overwrite" dd if=/dev/urandom of="$(dm_dev tb)" bs=4096 seek=100 count=1 oflag=direct conv=notrunc

check "disk fails" to_error
expect_fail "commit on a failing disk is refused" sh -c "echo 2 > $S/state 2> /tmp/err"
check "its error is an I/O error (EIO)" grep -q -i -E "i/o error|input/output error" /tmp/err
eq "state stays 1" 1 "$(cat $S/state)"
check "disk back" to_linear
check "commit now works" sh -c "echo 2 > $S/state"
eq "state 2" 2 "$(cat $S/state)"
check "remove bow" dmsetup remove tb
check "remove linear" dmsetup remove under
check "rmmod" rmmod dm_bow
finish
