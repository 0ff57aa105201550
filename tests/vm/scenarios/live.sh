# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 3000
# cost: 1244
# checks: 540
# checks 6: 165
# State changes on a live, busy filesystem, as Android's vold makes them:
# FITRIM on the mounted filesystem, then `1` into sysfs (or the checkpoint
# message) and, three seconds later, `2` (or the commit message), while
#   - a buffered writer makes files with fsync,
#   - an O_DIRECT writer makes files,
#   - an O_DIRECT writer rewrites block 0 of the bow device,
#   - an O_DIRECT reader reads all over the bow device,
#   - a page-cache reader checks the newest files, dropping caches,
#   - fstrim runs in a loop.
# Every other round rolls back instead of committing: the load stops in
# state 1, the device goes away, and bowctl restores it. No user I/O may
# fail, the console stays clean (the host checks), fsck is clean, and every
# file that was fsynced and closed before the state change began is intact,
# with every file of the earlier rounds (a catalog that grows round by
# round). References come from the data written (the random pool), and the
# checks read the disk with no bow target on it.
#
# Layout: bow over all of /dev/vda; the filesystem on a dm-linear over the
# bow device from 1 MiB on, so block 0 of the bow device is the block-0
# writer's alone.
#
# usage: live.sh [ROUNDS-PER-FILESYSTEM (20)[-FILESYSTEM]]  (e.g. live:40-xfs;
# both ext4 and xfs by default)
. /tests/lib.sh
ROUNDS=${1:-20}
FSES="ext4 xfs"
case $ROUNDS in *-*) FSES=${ROUNDS#*-} ROUNDS=${ROUNDS%%-*} ;; esac
DISK=/dev/vda
MIB=512
LEN=$(( MIB * 2048 ))
FSOFF=2048
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
pool
W=/tmp/live
mkdir -p /mnt/live

# md5 of pool block range <skip> <count> (4 KiB blocks): what a writer wrote.
pool_md5() { dd if=$POOL bs=4096 skip=$1 count=$2 2>/dev/null | md5sum | cut -d' ' -f1; }

# The loads. Each runs until $W/stop exists, and appends any failure to
# $W/errors (a failed dd, a wrong read).
# Files are named <writer>/r<round>f<i>; the lists in $W hold one
# "<path> <md5>" line per file done (<writer>.done) and one "<path>" line
# per removal begun (<writer>.rm). Each writer removes its own files of
# this round once 12 newer ones exist.
writer_files() { # <name> [dd output flags]
    local name=$1 oflags=${2:+oflag=$2} i=0 skip n f
    mkdir -p /mnt/live/$name
    while [ ! -e $W/stop ]; do
        i=$((i + 1)) f=$name/r${r}f$i
        n=$(( (i % 7) + 1 )) skip=$(( (i * 13 + r * 101) % 2000 ))
        if dd if=$POOL of=/mnt/live/$f bs=4096 skip=$skip count=$n $oflags conv=fsync status=none 2>>$W/$name.err; then
            echo "$f $(pool_md5 $skip $n)" >> $W/$name.done
        else
            echo "writing $f failed: $(tail -1 $W/$name.err)" >> $W/errors
        fi
        if [ $i -gt 12 ]; then
            echo "$name/r${r}f$((i - 12))" >> $W/$name.rm
            rm -f /mnt/live/$name/r${r}f$((i - 12))
        fi
    done
}
writer_block0() {
    local i=0
    while [ ! -e $W/stop ]; do
        i=$((i + 1))
        if dd if=$POOL of=$BOW bs=4096 skip=$(( i % 2000 )) count=1 oflag=direct conv=notrunc status=none 2>>$W/b0.err; then
            # Renamed into place, so a reader never sees it half written.
            echo $i > $W/b0.new && mv $W/b0.new $W/b0.last
        else
            echo "block 0 write $i failed: $(tail -1 $W/b0.err)" >> $W/errors
        fi
    done
}
reader_direct() {
    local i=0
    while [ ! -e $W/stop ]; do
        i=$((i + 1))
        dd if=$BOW of=/dev/null bs=65536 skip=$(( (i * 389) % (MIB * 16 - 4) )) count=4 iflag=direct status=none 2>>$W/rd.err \
            || echo "O_DIRECT read $i failed: $(tail -1 $W/rd.err)" >> $W/errors
        dd if=$BOW of=/dev/null bs=4096 count=1 iflag=direct status=none 2>>$W/rd.err \
            || echo "O_DIRECT read of block 0 failed" >> $W/errors
    done
}
reader_cached() {
    local f sum
    while [ ! -e $W/stop ]; do
        # The newest buffered files: not removed for 12 more writes.
        tail -n 3 $W/buf.done 2>/dev/null | while read -r f sum; do
            got=$(md5sum < /mnt/live/$f 2>>$W/cat.err | cut -d' ' -f1)
            if [ "$got" != "$sum" ] && ! grep -qx "$f" $W/buf.rm 2>/dev/null; then
                echo "page-cache read of $f: got '$got', wrote $sum" >> $W/errors
            fi
        done
        echo 3 > /proc/sys/vm/drop_caches
    done
}
trimmer() {
    while [ ! -e $W/stop ]; do
        fstrim /mnt/live 2>>$W/trim.err || echo "fstrim failed: $(tail -1 $W/trim.err)" >> $W/errors
        sleep 1
    done
}

start_load() {
    rm -f $W/stop
    writer_files buf & writer_files dio direct & writer_block0 &
    reader_direct & reader_cached & trimmer &
}
stop_load() { touch $W/stop; wait; }

# files_intact <label> <list>: every "<path> <md5>" of the list is under
# /mnt/live with that content (one md5sum for all of them).
files_intact() {
    local n bad
    n=$(wc -l < "$2")
    check "$1: there are files to check ($n)" [ "$n" -gt 0 ] || return
    awk '{ print $2 "  " $1 }' "$2" > $W/md5.check
    bad=$(cd /mnt/live && md5sum -c $W/md5.check 2>&1 | grep -v ': OK$')
    [ -n "$bad" ] && echo "$bad" | head -5
    eq "$1: $n files intact" 0 "$(printf '%s' "$bad" | grep -c .)"
}
# minus <list> <paths>: the lines of list whose path is not in paths.
minus() { awk -v g="$2" 'FILENAME == g { gone[$1] = 1; next } !($1 in gone)' "$2" "$1"; }

# skip_trace on|report: XFS log recovery's skipped buffers (on-disk LSN
# newer than the record), and how many lie in space free at checkpoint.
T=/sys/kernel/tracing
skip_trace() {
    [ -d $T/events/xfs ] || mount -t tracefs none $T 2>/dev/null
    [ -d $T/events/xfs ] || return 0
    if [ $1 = on ]; then
        : > $T/trace
        for e in xfs_log_recover_buf_skip xfs_log_recover_inode_skip; do echo 1 > $T/events/xfs/$e/enable; done
        return
    fi
    for e in xfs_log_recover_buf_skip xfs_log_recover_inode_skip; do echo 0 > $T/events/xfs/$e/enable; done
    grep _skip $T/trace > $W/skips
    local infree
    infree=$(sed -n 's/.*buf_skip: .*daddr 0x\([0-9a-f]*\).*/\1/p' $W/skips | while read -r b; do
            blk=$(( (0x$b + FSOFF) / 8 ))
            tr ' ' '\n' < $W/freemap | awk -F+ -v b=$blk 'NF == 2 && b >= $1 && b < $1 + $2 { print b }'
        done | wc -l)
    echo "$L: XFS log recovery skipped $(wc -l < $W/skips) items (on-disk LSN newer than the record)"
    # Free space comes back as it was or zeroed, so no metadata there can
    # look newer than the restored log.
    eq "$L: no skipped buffer lies in space free at checkpoint" 0 "$infree"
}

# The files known to be on the filesystem, verified round after round.
CAT=/tmp/live.catalog

# fs_below: the filesystem as the disk holds it, with no bow target (dm-linear).
fs_below() { dmsetup create below --table "0 $((LEN - FSOFF)) linear $DISK $FSOFF"; }

# 4 KiB sectors: the bow device has 4 KiB logical blocks (block_size:4096).
mkfs_of() { case $1 in xfs) echo "mkfs.xfs -q -f -s size=4096" ;; *) echo "mkfs.ext4 -q -F -b 4096" ;; esac; }
fsck_of() { case $1 in xfs) echo "xfs_repair -n" ;; *) echo "e2fsck -fn" ;; esac; }

for FS in $FSES; do
    dd if=/dev/zero of=$DISK bs=1M count=4 oflag=direct 2>/dev/null
    fs_below && $(mkfs_of $FS) /dev/mapper/below >/dev/null 2>&1
    check "$FS: mkfs" [ $? = 0 ]
    dmsetup remove below
    : > $CAT
    r=0
    while [ $r -lt $ROUNDS ]; do
        r=$((r + 1))
        L="$FS round $r"
        rm -rf $W && mkdir -p $W
        : > $W/errors
        touch $W/buf.done $W/dio.done $W/buf.rm $W/dio.rm
        dmesg -c > /dev/null
        if ! dmsetup create live --table "0 $LEN bow $DISK 1 block_size:4096"; then
            fail "$L: create bow"; break
        fi
        BOW=$(dm_dev live) S=$(bow_sysfs live)
        dmsetup create fs --table "0 $((LEN - FSOFF)) linear $BOW $FSOFF"
        dmsetup mknodes
        check "$L: mount" mount /dev/mapper/fs /mnt/live || break
        check "$L: FITRIM on the mounted filesystem" fstrim /mnt/live
        start_load
        sleep 4
        # The references: files done before the change began must come
        # back. A removal that began before the change ended may or may not
        # be in the checkpoint, so those files are not checked; files
        # removed later must come back too.
        cat $W/buf.done $W/dio.done > $W/ref
        b0lo=$(cat $W/b0.last 2>/dev/null || echo 0)
        if [ $((r % 4)) = 1 ]; then
            check "$L: checkpoint by message, under load" dmsetup message live 0 checkpoint
        else
            check "$L: echo 1 > state, under load" sh -c "echo 1 > $S/state"
        fi
        cat $W/buf.rm $W/dio.rm > $W/refrm
        b0hi=$(( $(cat $W/b0.last 2>/dev/null || echo 0) + 1 ))
        eq "$L: state 1" 1 "$(cat $S/state)"
        dmsetup message live 0 free_map > $W/freemap
        sleep 3
        commit=$(( r % 2 ))
        if [ $commit = 1 ]; then
            if [ $((r % 4)) = 3 ]; then
                check "$L: commit by message, under load" dmsetup message live 0 commit
            else
                check "$L: echo 2 > state, under load" sh -c "echo 2 > $S/state"
            fi
            eq "$L: state 2" 2 "$(cat $S/state)"
            sleep 1
        fi
        stop_load
        cat $W/buf.done $W/dio.done > $W/done
        cat $W/buf.rm $W/dio.rm > $W/rm
        echo "$L: $(dmsetup status live | cut -d' ' -f4-) at $(cut -d' ' -f1 /proc/uptime) s"
        eq "$L: no user I/O failed" "" "$(cat $W/errors)"
        eq "$L: no I/O error in the kernel log" "" "$(dmesg | grep -i -E 'I/O error|EXT4-fs error|XFS.*(error|corrupt)|bow: .*fail' | head -3)"
        check "$L: umount" umount /mnt/live
        dmsetup remove fs
        check "$L: remove bow" dmsetup remove live
        if [ $commit = 1 ]; then
            # Committed: everything written is there, block 0 holds the last write.
            eq "$L: block 0 below is the last one written" "$(pool_md5 $(( $(cat $W/b0.last) % 2000 )) 1)" \
                "$(dd if=$DISK bs=4096 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
            fs_below
            check "$L: fsck clean" sh -c "$(fsck_of $FS) /dev/mapper/below > $W/fsck 2>&1" || tail -5 $W/fsck
            mount /dev/mapper/below /mnt/live
            # Every file of this round that was not removed, and all earlier ones.
            minus $W/done $W/rm > $W/kept
        else
            check "$L: bowctl restore" sh -c "bowctl restore $DISK > $W/restore 2>&1" || tail -5 $W/restore
            # Block 0 holds one of the writes made while the change ran.
            got=$(dd if=$DISK bs=4096 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
            k=$b0lo found=none
            while [ $k -le $b0hi ]; do
                [ "$got" = "$(pool_md5 $((k % 2000)) 1)" ] && found=$k
                k=$((k + 1))
            done
            check "$L: block 0 below is as at checkpoint (write $found of $b0lo..$b0hi)" [ $found != none ]
            fs_below
            # The log replays at mount; fsck then sees what a user would.
            [ $FS = xfs ] && skip_trace on
            mount /dev/mapper/below /mnt/live && umount /mnt/live
            [ $FS = xfs ] && skip_trace report
            check "$L: fsck clean" sh -c "$(fsck_of $FS) /dev/mapper/below > $W/fsck 2>&1" || tail -5 $W/fsck
            mount /dev/mapper/below /mnt/live
            # Files done before the change began, less those whose removal
            # began before it ended (they may or may not be in the
            # checkpoint), and all earlier ones. Files removed later must be
            # back.
            minus $W/ref $W/refrm > $W/kept
        fi
        cat $W/kept >> $CAT
        files_intact "$L: this round's and earlier rounds'" $CAT
        # The files of this round not in the catalog may or may not be
        # there: removed, so the catalog is exactly what the next round has.
        minus $W/done $W/kept | while read -r f sum; do rm -f /mnt/live/$f; done
        umount /mnt/live
        dmsetup remove below
    done
done
check "rmmod" rmmod dm_bow
finish
