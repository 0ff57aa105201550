# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 3000
# cost: 283
# checks: 138
# Records what bow sends to its disk for the crash campaign (spec 7, issue 5).
# For each filesystem and workload: the disk as it was (base image), then
# dm-log-writes below bow records every write, flush and FUA from the mount
# through the checkpoint, a seeded workload and the unmount, and bow is
# removed without a commit. The host (tests/crash/run.sh) then rebuilds
# every crash state from the recording and restores it.
#
# Runs that do not commit then roll back with bowctl on the same recording
# (marks pre-restore and restore), so restore itself is cut at every point too.
#
# One more run commits instead: its recording also covers 1->2 and state 2,
# with the device as the filesystem saw it just before the commit (view).
#
# /dev/vdd layout, read by the host:
#   slot i log:   [i * 128 MiB, +128 MiB)
#   slot i base:  1280 MiB + i * 64 MiB
#   slot i view:  1920 MiB + i * 64 MiB (commit runs)
#   slot i meta:  2560 MiB + i MiB, text (label, fs, bs, seed, free map)
#   slot i ref:   2592 MiB + i * 48 MiB (the disk below, frozen, just
#                 before the checkpoint)
. /tests/lib.sh
DISK=/dev/vda REC=/dev/vdd
MIB=48
LEN=$(( MIB * 2048 ))
SEED=${BOW_CRASH_SEED:-1}
# fstests' escape hatch for mkfs.xfs's 300 MiB minimum on small test devices.
export TEST_DIR=/mnt TEST_DEV=/dev/null QA_CHECK_FS=1
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }

# Deterministic data: the same seed gives the same bytes.
data() { yes "$SEED:$1" | head -c "$2"; }

# A tiny LCG, so the workloads are reproducible from the seed. "rand N" sets
# RV in [0, N) in this shell: no command substitution, whose subshell would
# neither advance R nor come cheap (each fork costs much under TCG).
R=$SEED RV=0
rand() { R=$(( (R * 1103515245 + 12345) % 2147483648 )); RV=$(( R % $1 )); }

populate_seeded() {
    local d=$1 i
    mkdir -p $d/dir
    for i in $(seq 1 40); do
        rand 16; n=$(( (RV + 1) * 4096 )); rand 4096
        data f$i $(( n + RV )) > $d/dir/f$i
    done
    data big 4194304 > $d/big
    data big2 2097152 > $d/big2
}

# Workloads: create, overwrite, append/truncate/delete/rename, large files.
wl_create() {
    local i
    mkdir -p /mnt/a/new
    for i in $(seq 1 90); do
        rand 8; data n$i $(( (RV + 1) * 4096 )) > /mnt/a/new/n$i
        [ $(( i % 3 )) = 0 ] && sync /mnt/a/new/n$i
    done
    sync
}
wl_overwrite() {
    local i f
    for i in $(seq 1 100); do
        rand 40; f=/mnt/a/dir/f$(( RV + 1 ))
        rand 3; n=$(( RV * 4096 + 512 )); rand 16
        data o$i $n | dd of=$f bs=512 seek=$RV conv=notrunc 2>/dev/null
        [ $(( i % 4 )) = 0 ] && sync $f
    done
    rand 700; data obig 1048576 | dd of=/mnt/a/big bs=4096 seek=$RV conv=notrunc 2>/dev/null
    sync
}
wl_mix() {
    local i r
    for r in 1 2 3; do
        for i in $(seq 1 12); do rand 3; data a$r$i $(( RV * 4096 + 100 )) >> /mnt/a/dir/f$(( (i + r * 7) % 40 + 1 )); done
        sync
    done
    for i in $(seq 1 12); do rand 3; data a$i $(( RV * 4096 + 100 )) >> /mnt/a/dir/f$i; done
    sync /mnt/a/dir/f1
    for i in $(seq 13 18); do rand 4; truncate -s $(( RV * 4096 )) /mnt/a/dir/f$i 2>/dev/null || : > /mnt/a/dir/f$i; done
    rm -f /mnt/a/dir/f19 /mnt/a/dir/f20 /mnt/a/dir/f21
    mv /mnt/a/dir/f22 /mnt/a/dir/renamed
    mv /mnt/a/dir/f23 /mnt/a/moved
    sync
    data late 65536 > /mnt/a/dir/f24
    sync /mnt/a/dir/f24
}
wl_large() {
    local i
    for i in 0 1 2 3 4 5 6 7; do
        data large$i 1048576 | dd of=/mnt/a/large bs=1M seek=$i conv=notrunc 2>/dev/null
        sync /mnt/a/large
    done
    data mid 2097152 | dd of=/mnt/a/large bs=1M seek=2 conv=notrunc 2>/dev/null
    data bigover 1048576 | dd of=/mnt/a/big bs=1M seek=1 conv=notrunc 2>/dev/null
    rm -f /mnt/a/big2
    sync
}

slot=0
for run in ext4:create ext4:overwrite ext4:mix ext4:large xfs:create xfs:overwrite xfs:mix xfs:large ext4:commit; do
        fs=${run%:*} wl=${run#*:} commit=0
        [ $wl = commit ] && wl=mix commit=1
        label=$fs-${run#*:}
        # Each filesystem is made and populated once (seeded), kept in
        # /tmp, and copied onto the disk for each of its cases: populating
        # is most of a case's time under TCG, and the workloads differ.
        if [ ! -f /tmp/base-$fs.img ]; then
            R=$(( SEED * 7919 ))
            dd if=/dev/zero of=$DISK bs=1M count=$MIB oflag=direct 2>/dev/null
            case $fs in
                ext4) check "$label: mkfs" mkfs.ext4 -q -F -b 4096 $DISK ${MIB}M ;;
                xfs) check "$label: mkfs" mkfs.xfs -q -f -b size=4096 -s size=4096 -d size=${MIB}m $DISK ;;
            esac
            check "$label: populate" sh -c "mount $DISK /mnt/a" && populate_seeded /mnt/a && umount /mnt/a
            check "$label: keep the populated $fs" \
                dd if=$DISK of=/tmp/base-$fs.img bs=1M count=$MIB iflag=direct 2>/dev/null
        else
            check "$label: the populated $fs onto the disk" \
                dd if=/tmp/base-$fs.img of=$DISK bs=1M oflag=direct 2>/dev/null
        fi
        R=$(( SEED * 7919 + slot ))
        dd if=$DISK of=$REC bs=1M count=$MIB seek=$(( 1280 + slot * 64 )) iflag=direct oflag=direct 2>/dev/null
        dmsetup create lwlog --table "0 $(( 128 * 2048 )) linear $REC $(( slot * 128 * 2048 ))"
        dd if=/dev/zero of=/dev/mapper/lwlog bs=4096 count=1 oflag=direct 2>/dev/null
        check "$label: log-writes below bow" dmsetup create lw --table "0 $LEN log-writes $DISK /dev/mapper/lwlog"
        check "$label: bow over it" dmsetup create cb --table "0 $LEN bow /dev/mapper/lw 1 block_size:4096"
        check "$label: mount through bow" mount /dev/mapper/cb /mnt/a
        fstrim /mnt/a
        sync
        fsfreeze --freeze /mnt/a
        # dm-log-writes logs a completed write only at the next flush: flush
        # (fsync of the device) so everything the freeze wrote is before the mark.
        dd if=/dev/null of=/dev/mapper/cb conv=fsync 2>/dev/null
        # The checkpoint image as the disk below holds it, read now, apart
        # from the recording: the host checks the image it rebuilds from the
        # recording against it.
        check "$label: the frozen disk below, before the checkpoint" \
            dd if=$DISK of=$REC bs=1M count=$MIB seek=$(( 2592 + slot * 48 )) iflag=direct oflag=direct 2>/dev/null
        check "$label: mark pre-checkpoint" dmsetup message lw 0 mark pre-checkpoint
        check "$label: checkpoint" sh -c "echo 1 > $(bow_sysfs cb)/state"
        check "$label: mark checkpoint" dmsetup message lw 0 mark checkpoint
        dmsetup message cb 0 free_map > /tmp/free
        fsfreeze --unfreeze /mnt/a
        wl_$wl
        if [ $commit = 1 ]; then
            fsfreeze --freeze /mnt/a
            dd if=/dev/null of=/dev/mapper/cb conv=fsync 2>/dev/null
            dd if=/dev/mapper/cb of=$REC bs=1M count=$MIB seek=$(( 1920 + slot * 64 )) iflag=direct oflag=direct 2>/dev/null
            check "$label: mark pre-commit" dmsetup message lw 0 mark pre-commit
            check "$label: commit" sh -c "echo 2 > $(bow_sysfs cb)/state"
            check "$label: mark commit" dmsetup message lw 0 mark commit
            fsfreeze --unfreeze /mnt/a
            data after 262144 > /mnt/a/after
            sync
        fi
        umount /mnt/a
        echo "$label: $(dmsetup status cb | cut -d' ' -f4-)"
        check "$label: remove bow" dmsetup remove cb
        if [ $commit = 0 ]; then
            # The restore phase: bowctl's own writes, flushes and FUAs, recorded
            # the same way, so the host can cut the restore at every point.
            dd if=/dev/null of=/dev/mapper/lw conv=fsync 2>/dev/null
            check "$label: mark pre-restore" dmsetup message lw 0 mark pre-restore
            check "$label: bowctl restore (recorded)" sh -c "bowctl restore /dev/mapper/lw > /dev/null"
            dd if=/dev/null of=/dev/mapper/lw conv=fsync 2>/dev/null
            check "$label: mark restore" dmsetup message lw 0 mark restore
            check "$label: no log after restore" sh -c "bowctl inspect /dev/mapper/lw | grep -q 'no checkpoint'"
        fi
        entries=$(dmsetup status lw | awk '{print $4}')
        check "$label: remove log-writes" dmsetup remove lw
        dmsetup remove lwlog
        check "$label: recorded $entries entries" [ "${entries:-0}" -gt 0 ]
        { echo "label=$label"; echo "fs=$fs"; echo "bs=4096"; echo "seed=$SEED"; echo "commit=$commit"; echo "mib=$MIB"; echo "free=$(cat /tmp/free)"; echo "end"; } > /tmp/meta
        dd if=/dev/zero of=$REC bs=1M count=1 seek=$(( 2560 + slot )) oflag=direct 2>/dev/null
        dd if=/tmp/meta of=$REC bs=1M seek=$(( 2560 + slot )) conv=notrunc,fsync 2>/dev/null
        slot=$(( slot + 1 ))
done
echo "recorded $slot cases"
rmmod dm_bow
finish
