# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 3000
# checks: 7
# manual: about 15 min under TCG at 1 GiB (tests/vm/run.sh restorespeed:1024)
# Restore time against the bytes backed up, beside a sequential copy of the
# same bytes on the same disk, timed copy, restore, copy (as the bowctl
# scenario does at 256 MiB). On the 3 GiB /dev/vdd: N MiB of data, N MiB
# trimmed for the backups, a checkpoint, N MiB of first overwrites, removal,
# the timed runs, then the restored data and the cleared backups checked
# below the target. Prints "BOW-RESTORE mib=N copy_ms=.. restore_ms=..
# ratio=..".
#
# usage: restorespeed.sh [MiB (1024)]   -- at most 1024 on the 3 GiB disk
. /tests/lib.sh
DISK=/dev/vdd
N=${1:-1024}
[ "$N" -ge 8 ] && [ $(( N % 8 )) = 0 ] && [ $(( 3 * N )) -le $(( $(blockdev --getsz $DISK) / 2048 )) ] \
    || { fail "restorespeed: $N MiB (a multiple of 8) needs 3x that on $DISK"; finish; }
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
pool
# pool_data: N MiB of the pool, repeated.
pool_data() { local k=0; while [ $k -lt $(( N / 8 )) ]; do cat $POOL; k=$((k + 1)); done; }

check "create over $DISK" bowctl create rs $DISK --block-size 4096
pool_data | dd of=/dev/mapper/rs bs=1M oflag=direct iflag=fullblock 2>/dev/null
blkdiscard -o $(( N << 20 )) -l $(( N << 20 )) /dev/mapper/rs
echo 1 > "$(bow_sysfs rs)"/state
t0=$(now_ms)
dd if=/dev/zero of=/dev/mapper/rs bs=1M count=$N oflag=direct 2>/dev/null
echo "restorespeed: $N MiB of first overwrites in $(( $(now_ms) - t0 )) ms"
dmsetup status rs
check "remove" bowctl remove rs

# copy <from MiB> <to MiB>: a sequential copy of N MiB within the disk, in ms.
copy() {
    echo 3 > /proc/sys/vm/drop_caches
    local t
    t=$(now_ms)
    dd if=$DISK of=$DISK bs=1M count=$N skip=$1 seek=$2 conv=fsync 2>/dev/null
    echo $(( $(now_ms) - t ))
}
# The first copy reads the overwritten data into the last third, which the
# restore does not touch; the second copies the restored data there again.
c1=$(copy 0 $(( 2 * N )))
echo 3 > /proc/sys/vm/drop_caches
t0=$(now_ms)
check "bowctl restore of $N MiB of backups" bowctl restore $DISK
r=$(( $(now_ms) - t0 ))
c2=$(copy 0 $(( 2 * N )))
c=$(( (c1 + c2) / 2 ))
eq "restored data is the data at checkpoint" "$(pool_data | md5sum)" \
    "$(dd if=$DISK bs=1M count=$N iflag=direct 2>/dev/null | md5sum)"
eq "the backups' places are zeroed" "$(dd if=/dev/zero bs=1M count=$N 2>/dev/null | md5sum)" \
    "$(dd if=$DISK bs=1M skip=$N count=$N iflag=direct 2>/dev/null | md5sum)"
ratio=$(awk -v c=$c -v r=$r 'BEGIN { printf "%.2f", c / r }')
echo "BOW-RESTORE mib=$N copy1_ms=$c1 copy2_ms=$c2 restore_ms=$r ratio=$ratio"
# Reported, not judged: the goal (1.0x) is not met (docs/performance.md);
# only a gross regression fails.
check "restore of $N MiB at $ratio x the speed of a sequential copy (at least 0.5)" \
    awk -v x=$ratio 'BEGIN { exit !(x >= 0.5) }'
check "rmmod" rmmod dm_bow
finish
