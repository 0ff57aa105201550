# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 400
# multiboot: one stage per boot of the same disks, driven by tests/vm/update.sh
# checks 1: 2
# checks 2: 3
# checks 3: 5
# checks 4: 8
# checks 5: 7
# checks 6: 5
# The README's demo: an A/B update on top of user data, across six boots.
# Every boot runs the example init scripts (examples/init) as an init would:
# bow-update.sh when an update is installed, bow-boot.sh at every boot,
# bow-commit.sh once the new system is up. Power cuts are real resets of
# the guest, with nothing synced or unmounted (tests/vm/guest/init).
#
# /dev/vda: the "userdata" partition. /dev/vdb: the metadata partition that
# holds bowctl's update record, and the demo's checksums.
. /tests/lib.sh
STAGE=${1:?usage: update.sh STAGE}
export BOW_DATA_DEV=/dev/vda BOW_DATA_DIR=/data BOW_NAME=userdata
export BOW_META_DEV=/dev/vdb BOW_META_DIR=/metadata
export BOW_BLOCK_SIZE=4096 BOW_FS_OPTIONS=noatime BOW_RETRIES=2
REC=/metadata/bow/checkpoint.json
step() { echo; echo "=== $*"; }
sums() { (cd /data && find . -path ./lost+found -prune -o -type f -print | sort | xargs md5sum); }
# The files: small ones and a few MiB of "photos".
write_files() {
    local v=$1
    mkdir -p /data/app /data/photos
    echo "version $v" > /data/app/VERSION
    yes "contacts of version $v" | head -c 200000 > /data/app/contacts
    yes "settings $v" | head -c 5000 > /data/app/settings
    for i in 1 2 3 4; do yes "photo $i of version $v" | head -c 1048576 > /data/photos/p$i; done
}
boot_script() {
    # The init's one call. Its output is part of the story.
    sh /usr/lib/bow/bow-boot.sh > /tmp/boot.out 2>&1
    local rc=$?
    sed 's/^/    /' /tmp/boot.out
    return $rc
}
record() { [ -f $REC ] && tr -d ' \n' < $REC | sed 's/,"crc32.*//; s/.*"record"://'; echo; }
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
mkdir -p /data /metadata

case $STAGE in
1)
    step "1. A userdata disk with an ext4 filesystem holding version-1 data"
    mkfs.ext4 -q -F -b 4096 /dev/vdb 64M
    mkfs.ext4 -q -F -b 4096 /dev/vda 128M
    mount /dev/vdb /metadata && mkdir -p /metadata/demo
    mount /dev/vda /data
    write_files 1
    sums | tee /metadata/demo/v1.md5
    umount /data
    check "version-1 data written and checksummed" [ -s /metadata/demo/v1.md5 ]
    step "2. An update is installed: bowctl start --retries 2 (bow-update.sh)"
    check "bow-update.sh" sh /usr/lib/bow/bow-update.sh
    echo "record: $(record)"
    umount /metadata
    finish
    ;;
2|3)
    n=$(( STAGE - 1 ))
    step "3.$n Boot $n of the new system: bow-boot.sh sets up bow and the checkpoint"
    check "bow-boot.sh: attempt $n" boot_script
    check "attempt $n of 2 counted" grep -q "attempt $n of 2" /tmp/boot.out
    if [ $n = 2 ]; then
        check "the failed first attempt was rolled back before the second" grep -q "rolled back" /tmp/boot.out
        eq "the data is version 1 again when attempt 2 starts" "version 1" "$(cat /data/app/VERSION)"
    fi
    bowctl status userdata
    echo "record: $(record)"
    echo "The new system migrates the data to version 2 ..."
    write_files 2
    rm /data/photos/p4
    yes "cache" | head -c 3000000 > /data/cache
    sync
    bowctl status userdata
    echo "... it writes a little more, and the power is cut before that is synced."
    echo "version 2b" > /data/app/VERSION
    check "state 1 (checkpoint) at the cut" [ "$(cat "$(bow_sysfs userdata)"/state)" = 1 ]
    power_cut
    ;;
4)
    step "4. Boot 3: the attempts are used up, so bow-boot.sh rolls the data back"
    check "bow-boot.sh: rollback" boot_script
    check "rolled back because every attempt was used" grep -q "every boot attempt was used" /tmp/boot.out
    check "no bow device: the data partition is mounted as it is" sh -c "! dmsetup info userdata >/dev/null 2>&1"
    check "the update is closed (no record)" [ ! -f $REC ]
    sums > /tmp/now.md5
    check "the files match version 1" cmp /tmp/now.md5 /metadata/demo/v1.md5
    echo "VERSION: $(cat /data/app/VERSION)"
    umount /data
    check "fsck is clean" e2fsck -fn /dev/vda
    check "no checkpoint log left" sh -c "bowctl inspect /dev/vda | grep -q 'no checkpoint'"
    step "5. The update is installed again"
    check "bow-update.sh" sh /usr/lib/bow/bow-update.sh
    umount /metadata
    finish
    ;;
5)
    step "5.1 Boot 4: the new system boots fine"
    check "bow-boot.sh: attempt 1" boot_script
    check "attempt 1 of 2" grep -q "attempt 1 of 2" /tmp/boot.out
    write_files 2
    rm /data/photos/p4
    sync
    check "health check: enough free space for backups" bowctl health --once --min-free 1M
    sums | tee /metadata/demo/v2.md5
    step "5.2 It works, so it commits (bow-commit.sh)"
    check "bow-commit.sh" sh /usr/lib/bow/bow-commit.sh
    bowctl status userdata
    eq "state 2: the target is a pass-through" 2 "$(cat "$(bow_sysfs userdata)"/state)"
    check "the update is closed (no record)" [ ! -f $REC ]
    dmsetup table userdata
    # Read again from the disk, through the committed target, not from the
    # page cache that the sums before the commit filled.
    sync
    echo 3 > /proc/sys/vm/drop_caches
    sums > /tmp/now.md5
    check "the files match version 2, read again from the disk" cmp /tmp/now.md5 /metadata/demo/v2.md5
    umount /data
    dmsetup remove userdata
    umount /metadata
    finish
    ;;
6)
    step "5.3 Boot 5: nothing pending; the data is version 2, mounted without bow"
    check "bow-boot.sh: plain mount" boot_script
    check "no update pending" grep -q "no update pending" /tmp/boot.out
    check "no bow device" sh -c "! dmsetup info userdata >/dev/null 2>&1"
    sums > /tmp/now.md5
    check "the files match version 2" cmp /tmp/now.md5 /metadata/demo/v2.md5
    echo "VERSION: $(cat /data/app/VERSION)"
    umount /data
    check "fsck is clean" e2fsck -fn /dev/vda
    umount /metadata
    finish
    ;;
*) fail "unknown stage $STAGE"; finish ;;
esac
