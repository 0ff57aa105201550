# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 600
# cost: 99
# checks: 15
# Rollback of XFS when its newest metadata sits in space trimmed before the
# checkpoint. The directory's blocks are allocated in trimmed space and
# logged (sync forces the log) but not yet written in place when the
# checkpoint is taken; after it, the directory changes and the blocks are
# written in place, as free space, without a backup. Without zero entries a
# rollback leaves those blocks holding their post-checkpoint version, whose
# LSN is newer than any record in the restored log, so XFS log recovery
# skips them and the mount fails ("Metadata has LSN ahead of current LSN").
# With them a restore zeroes every free block written since the checkpoint.
#
# Layout: bow on /dev/vdb; XFS on a dm-linear from 1 MiB of the bow device.
. /tests/lib.sh
DISK=/dev/vdb
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
LEN=$(( 512 * 2048 ))
dd if=/dev/zero of=$DISK bs=1M count=4 oflag=direct 2>/dev/null
dmsetup create bw --table "0 $LEN bow $DISK 1 block_size:4096"
dmsetup create fs --table "0 $((LEN - 2048)) linear $(dm_dev bw) 2048"
dmsetup mknodes
mkfs.xfs -q -f -s size=4096 /dev/mapper/fs
check "mount" mount /dev/mapper/fs /mnt
mkdir -p /mnt/a; for i in $(seq 1 300); do echo $i > /mnt/a/f$i; done
# XFS's log worker pushes all logged metadata in place every
# xfssyncd_centisecs (30 s): if it runs between b's log force and the
# checkpoint, b's blocks are no longer free at checkpoint and there is no
# hazard left to test (a slow host made that happen). Hold it off until the
# checkpoint is taken. The mount queues the worker with the period in force
# then, and a later change only applies from its next run: set it before
# the mount, or the run queued by the mount still comes 30 s after it (that
# was the remaining failure: on a loaded host b's sync ended about 30 s
# after the mount).
sysctl_syncd=/proc/sys/fs/xfs/xfssyncd_centisecs
syncd=$(cat $sysctl_syncd)
check "log worker held off ($syncd -> 720000)" sh -c "echo 720000 > $sysctl_syncd"
sync; umount /mnt; mount /dev/mapper/fs /mnt
rm -rf /mnt/a; sync
check "FITRIM" fstrim /mnt
# Two directories first, so that b lands in an allocation group whose free
# space backups do not reach first (they take the lowest free blocks).
mkdir -p /mnt/x1 /mnt/x2 /mnt/b; for i in $(seq 1 2000); do echo b$i > /mnt/b/f$i; done
# The checkpoint follows the log force at once: anything that pushes the
# AIL in between (reading the 2000 files took 6 s here) writes b's blocks
# in place. The reference sums come after it; reads change no content.
sync
check "checkpoint with the filesystem mounted" sh -c "echo 1 > $(bow_sysfs bw)/state"
dmsetup message bw 0 free_map > /tmp/fm
echo "$syncd" > $sysctl_syncd
(cd /mnt && find b -type f | sort | xargs md5sum) > /tmp/ref
# The directory's blocks (xfs_io bmap: 512-byte units of the filesystem)
# that were free at checkpoint: the hazard this test is about.
xfs_io -r -c bmap /mnt/b | sed -n 's/.*: \[.*\]: \([0-9]*\)\.\.\([0-9]*\)/\1/p' | while read -r a; do
    blk=$(( (a + 2048) / 8 ))
    tr ' ' '\n' < /tmp/fm | awk -F+ -v b=$blk 'NF == 2 && b >= $1 && b < $1 + $2 { print b }'
done > /tmp/dirfree
if [ -s /tmp/dirfree ]; then
    ok "the directory has blocks in free-at-checkpoint space ($(wc -l < /tmp/dirfree))"
else
    fail "the directory has blocks in free-at-checkpoint space (0)"
    # What a future failure needs: where b is, what was free, and the log's
    # head and tail (a tail past b's records means they were pushed).
    xfs_io -r -c bmap /mnt/b; head -c 400 /tmp/fm; echo
    cat /sys/fs/xfs/dm-*/log/log_head_lsn /sys/fs/xfs/dm-*/log/log_tail_lsn
fi
blk_md5() { dd if=$DISK bs=4096 skip=$1 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }
while read -r b; do echo "$b $(blk_md5 $b)"; done < /tmp/dirfree > /tmp/dirfree.at
# After the checkpoint: change the directory, and let it all reach its place.
for i in $(seq 1 400); do echo c$i > /mnt/b/g$i; rm /mnt/b/f$((i / 2 + 1)) 2>/dev/null; done
mkdir -p /mnt/c; for i in $(seq 1 300); do echo c$i > /mnt/c/h$i; done
check "umount in state 1" umount /mnt
dmsetup status bw
check "claims were logged ($(status_field bw claimed) bytes)" [ "$(status_field bw claimed)" -gt 0 ]
dmsetup remove fs; dmsetup remove bw
check "restore" bowctl restore $DISK
# Each of those blocks: zeros, or data older than the checkpoint (a backup
# that came back), never the directory's post-checkpoint version.
newer=0
while read -r b at; do
    magic=$(dd if=$DISK bs=4096 skip=$b count=1 iflag=direct 2>/dev/null | od -An -tx1 -N4 | tr -d ' \n')
    # "XDD3": a directory block, and not the one that was there at checkpoint.
    [ "$magic" = 58444433 ] && [ "$(blk_md5 $b)" != "$at" ] && newer=$((newer + 1))
done < /tmp/dirfree.at
eq "no free-at-checkpoint block holds a directory block written after the checkpoint" 0 $newer
dmsetup create below --table "0 $((LEN - 2048)) linear $DISK 2048"
check "mount after restore (log recovery)" mount /dev/mapper/below /mnt && umount /mnt
check "xfs_repair -n clean" sh -c "xfs_repair -n /dev/mapper/below > /tmp/rep 2>&1" || tail -5 /tmp/rep
if mount /dev/mapper/below /mnt; then
    bad=$(cd /mnt && md5sum -c /tmp/ref 2>&1 | grep -v ': OK$')
    echo "$bad" | head -5
    eq "the checkpoint's 2000 files, intact" 0 "$(printf '%s' "$bad" | grep -c .)"
    eq "only the checkpoint's names" "$(cut -d' ' -f3 /tmp/ref | tr '\n' ' ')" "$(cd /mnt && find b -type f | sort | tr '\n' ' ')"
    check "nothing made after the checkpoint" [ ! -e /mnt/c ]
    umount /mnt
else
    fail "mount for the file checks"
fi
dmsetup remove below
check "rmmod" rmmod dm_bow
finish
