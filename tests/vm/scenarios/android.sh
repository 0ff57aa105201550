# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 900
# cost: 37
# checks: 35
# Android's stock block-checkpoint flow, call for call, with I/O going. No
# Android userspace runs here: each step is what the named function of
# fs_mgr or vold does to the kernel, made with the same calls.
#   1. fs_mgr (fstab flag checkpoint=block, a checkpoint wanted): a device-
#      mapper device with the table "bow <userdata> 1 block_size:4096" (the
#      block size fs_mgr sets under metadata encryption), then /data mounted
#      on it, ext4 directly on the bow device (block 0 is the filesystem's).
#   2. vold cp_prepareCheckpoint, with apps writing: FITRIM on the mount
#      point over the whole range (fstrim with no range), then
#      setBowState(blk_device, "1"): the bytes "1", no newline
#      (WriteStringToFile), into /sys/block/dm-N/bow/state.
#   3. vold cp_healthDaemon: reads bow/free once a second
#      (ro.sys.cp_msleeptime, 1000 ms) and would commit below
#      ro.sys.cp_min_free_bytes (100 MiB).
#   4a. vold cp_commitChanges once the boot completed: setBowState(.., "2"),
#      writes still going.
#   4b. or the update failed: cp_abortChanges reboots through init
#      (android_reboot), so the apps stop and /data is unmounted in order;
#      at the next boot fs_mgr has vold restore the checkpoint on the raw
#      partition (cp_restoreCheckpoint) before /data is mounted. bowctl
#      restore stands in for vold's restore: the same on-disk log.
# Checks: no user I/O failed, the state file reads back, free was readable
# and positive throughout, fsck is clean, and the files fsynced before the
# checkpoint (rollback) or all files (commit) are intact, read below the
# target.
. /tests/lib.sh
DISK=/dev/vda
MIB=512
LEN=$(( MIB * 2048 ))
D=/mnt/data
W=/tmp/android
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
pool
mkdir -p $D
pool_md5() { dd if=$POOL bs=4096 skip=$1 count=$2 2>/dev/null | md5sum | cut -d' ' -f1; }

# An app writing files with fsync (buffered or O_DIRECT), listing each
# "<path> <md5>" once it is durable.
app() { # <name> [oflag]
    local name=$1 oflags=${2:+oflag=$2} i=0 n skip f
    mkdir -p $D/$name
    while [ ! -e $W/stop ]; do
        i=$((i + 1)) f=$name/r${R}f$i n=$(( (i % 5) + 1 )) skip=$(( (i * 17 + R * 97) % 2000 ))
        echo "$f" >> $W/$name.start
        if dd if=$POOL of=$D/$f bs=4096 skip=$skip count=$n $oflags conv=fsync status=none 2>>$W/$name.err; then
            echo "$f $(pool_md5 $skip $n)" >> $W/$name.done
        else
            echo "writing $f failed: $(tail -1 $W/$name.err)" >> $W/errors
        fi
    done
}
# vold's health daemon, reading free space once a second while checkpointing.
health() {
    while [ ! -e $W/stop ]; do
        if [ "$(cat $S/state 2>/dev/null)" = 1 ]; then
            f=$(cat $S/free 2>>$W/health.err)
            case $f in
                ''|*[!0-9]*) echo "bow/free read '$f'" >> $W/errors ;;
                *) echo "$f" >> $W/free ;;
            esac
        fi
        sleep 1
    done
}
start_apps() { rm -f $W/stop; app buf & app dio direct & health & }
stop_apps() { touch $W/stop; wait; }

dd if=/dev/zero of=$DISK bs=1M count=4 oflag=direct 2>/dev/null
check "mkfs.ext4 on userdata" mkfs.ext4 -q -F -b 4096 $DISK
# The files known to be on /data, round after round.
CAT=/tmp/android.catalog
: > $CAT
for R in 1 2; do
    [ $R = 1 ] && L="commit" || L="rollback"
    rm -rf $W && mkdir -p $W && : > $W/errors && : > $W/free
    touch $W/buf.done $W/dio.done $W/buf.start $W/dio.start
    # 1. fs_mgr: the bow device over userdata, /data on it.
    check "$L: fs_mgr creates the bow device" dmsetup create bow --table "0 $LEN bow $DISK 1 block_size:4096" || break
    S=$(bow_sysfs bow)
    check "$L: /data mounted on it" mount -o noatime,nosuid,nodev,noauto_da_alloc,discard "$(dm_dev bow)" $D || break
    start_apps
    sleep 2
    # 2. vold cp_prepareCheckpoint, the apps writing.
    check "$L: FITRIM on the mount point" fstrim $D
    cat $W/buf.done $W/dio.done > $W/ref
    check "$L: setBowState \"1\" (no newline)" sh -c "printf 1 > $S/state"
    eq "$L: state reads 1" 1 "$(cat $S/state)"
    # Files begun from here on were created after the checkpoint.
    cat $W/buf.start $W/dio.start > $W/begun
    # Let the apps write on for 4 s and until each has begun a file since
    # the checkpoint: a fixed sleep is not enough on a loaded host (CI once
    # saw neither app begin a file within 4 s of the checkpoint).
    nb=$(grep -c '^buf/' $W/begun) nd=$(grep -c '^dio/' $W/begun) t=0
    while [ $t -lt 300 ]; do
        [ $t -ge 4 ] && [ "$(wc -l < $W/buf.start)" -gt "$nb" ] \
            && [ "$(wc -l < $W/dio.start)" -gt "$nd" ] && break
        sleep 1
        t=$((t + 1))
    done
    echo "$L: the apps wrote on for $t s after the checkpoint"
    if [ $R = 1 ]; then
        # 4a. cp_commitChanges, the apps still writing.
        check "$L: setBowState \"2\" (no newline)" sh -c "printf 2 > $S/state"
        eq "$L: state reads 2" 2 "$(cat $S/state)"
        sleep 1
    fi
    stop_apps
    check "$L: the health daemon read bow/free ($(wc -l < $W/free) times)" [ "$(wc -l < $W/free)" -ge 2 ]
    check "$L: free space stayed positive ($(tail -1 $W/free) bytes at the end)" [ "$(sort -n $W/free | head -1)" -gt 0 ]
    eq "$L: no app I/O failed" "" "$(cat $W/errors)"
    # An orderly reboot: /data unmounted, the device removed.
    check "$L: umount /data" umount $D
    check "$L: device removed" dmsetup remove bow
    if [ $R = 2 ]; then
        # 4b. the next boot: the restore before /data is mounted.
        check "$L: restore on the raw partition before mount" sh -c "bowctl restore $DISK > $W/restore 2>&1" || tail -5 $W/restore
        cat $W/ref >> $CAT
        # The journal of the checkpoint's moment replays at mount.
        mount $DISK $D && umount $D
    else
        cat $W/buf.done $W/dio.done >> $CAT
    fi
    cp $CAT $W/expect
    check "$L: fsck clean, read below the target" sh -c "e2fsck -fn $DISK > $W/fsck 2>&1" || tail -5 $W/fsck
    mount -o ro $DISK $D
    n=$(wc -l < $W/expect)
    check "$L: files to check ($n)" [ "$n" -gt 0 ]
    awk '{ print $2 "  " $1 }' $W/expect > $W/md5.check
    bad=$(cd $D && md5sum -c $W/md5.check 2>&1 | grep -v ': OK$')
    [ -n "$bad" ] && echo "$bad" | head -5
    eq "$L: $n files intact on the raw partition" 0 "$(printf '%s' "$bad" | grep -c .)"
    if [ $R = 2 ]; then
        # No file created after the checkpoint survived the rollback (those
        # being written while it was taken may be there, as they were).
        awk 'FILENAME == ARGV[1] { seen[$1] = 1; next } !($1 in seen)' $W/begun $W/buf.start $W/dio.start > $W/after
        check "$L: files begun after the checkpoint ($(wc -l < $W/after))" [ -s $W/after ]
        later=$(while read -r f; do [ -e $D/$f ] && echo "$f"; done < $W/after | head -3)
        eq "$L: none of them is back" "" "$later"
    fi
    umount $D
    check "$L: block 0 holds no log" [ "$(magic_of $DISK)" != 424f5700 ]
done
check "rmmod" rmmod dm_bow
finish
