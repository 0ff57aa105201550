# timeout: 400
# The README's main job: an A/B update on top of user data, told step by step.
# Until bowctl's lifecycle commands exist (issue 6), the steps are done with
# dmsetup, sysfs and bowctl restore, as an init script would.
. /tests/lib.sh
DISK=/dev/vda
LEN=$(( 64 * 2048 ))
say() { echo; echo "=== $*"; }
sums() { (cd /mnt/a && find . -type f | sort | xargs md5sum) ; }

say "1. A userdata disk with an ext4 filesystem holding version-1 data"
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
mkfs.ext4 -q -F -b 4096 $DISK 64M
mount $DISK /mnt/a
mkdir -p /mnt/a/app
for f in contacts photos settings; do rnd 64 > /mnt/a/app/$f; done
echo "version 1" > /mnt/a/app/VERSION
sums | tee /tmp/v1.md5
umount /mnt/a

say "2. Update installed; the new system boots on top of the data, under bow"
check "dmsetup create userdata (bow, block_size:4096)" dmsetup create userdata --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev userdata) S=$(bow_sysfs userdata)
check "mount through bow" mount $D /mnt/a
check "fstrim: free space becomes room for backups" fstrim /mnt/a
echo "free for backups: $(cat $S/free) bytes"
check "checkpoint: echo 1 > $S/state" sh -c "echo 1 > $S/state"
dmsetup status userdata

say "3. The new system rewrites the data, then the power is cut"
echo "version 2" > /mnt/a/app/VERSION
rnd 64 > /mnt/a/app/contacts
rm /mnt/a/app/photos
rnd 256 > /mnt/a/app/cache
sync
dmsetup status userdata
umount /mnt/a
check "device torn down in state 1 (as by a power cut)" dmsetup remove userdata
bowctl inspect $DISK | tail -1

say "4. It keeps failing: the recovery path rolls the data back"
check "bowctl restore" bowctl restore $DISK
check "fsck clean" e2fsck -fn $DISK
mount -o ro $DISK /mnt/a
sums > /tmp/now.md5
cat /tmp/now.md5
eq "files match version 1" "$(cat /tmp/v1.md5)" "$(cat /tmp/now.md5)"
umount /mnt/a

say "5. Update again; this time the new system works and commits"
check "dmsetup create userdata" dmsetup create userdata --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev userdata) S=$(bow_sysfs userdata)
mount $D /mnt/a
fstrim /mnt/a
echo 1 > $S/state
echo "version 2" > /mnt/a/app/VERSION
rnd 64 > /mnt/a/app/contacts
sync
sums > /tmp/v2.md5
check "commit: echo 2 > $S/state" sh -c "echo 2 > $S/state"
dmsetup status userdata
umount /mnt/a
dmsetup remove userdata
check "nothing left to restore" sh -c "bowctl restore $DISK | grep -q 'nothing to restore'"
mount -o ro $DISK /mnt/a
eq "files match version 2, straight from the disk" "$(cat /tmp/v2.md5)" "$(sums)"
umount /mnt/a
rmmod dm_bow
finish
