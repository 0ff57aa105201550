# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# Helpers for guest scenarios. Source it: . /tests/lib.sh
# Every check prints one line, BOW-CHECK ok|FAIL <what>, and a failed check
# makes the scenario exit non-zero at the end (see finish).

failures=0
checks=0

# busybox sh runs applets such as yes and head "NOEXEC": forked, not
# exec'd, so they inherit this shell's stdio state. glibc picks a stream's
# buffering when it first writes: the printf builtin writing to the console
# (a tty) makes stdout line-buffered, and from then on every `yes | head`
# in the scenario made one write per line, 40 times slower under
# TCG (the crash scenario took 90 s instead of 4 s to fill 6 MiB of files).
# Writing once to /dev/null first makes stdout fully buffered for good; the
# shell still flushes after each builtin, so check lines appear in order.
printf '.' > /dev/null

# busybox sh runs its own applets before anything on PATH, and busybox dd
# quietly drops O_DIRECT when the buffer is unaligned: use coreutils' dd, so
# reads "below the target" really bypass the page cache.
dd() { /usr/sbin/dd "$@"; }

# Each starts on a line of its own: a progress bar (bowctl on a terminal)
# leaves the cursor mid-line, and a check glued to it was not counted.
ok() { checks=$((checks + 1)); printf '\nBOW-CHECK ok %s\n' "$*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf '\nBOW-CHECK FAIL %s\n' "$*"; return 1; }

# check <description> <command...>: passes when the command succeeds.
check() {
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# expect_fail <description> <command...>: passes when the command fails.
expect_fail() {
    local what=$1; shift
    if "$@"; then fail "$what (unexpectedly succeeded)"; else ok "$what"; fi
}

# eq <description> <expected> <actual>
eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# power_cut: ends the scenario like finish, and when every check passed has
# the guest reset at once, without syncing or unmounting (see init).
power_cut() {
    echo "scenario: $checks checks, $failures failed"
    [ "$failures" = 0 ] && [ "$checks" -gt 0 ] && exit 99
    exit 1
}

finish() {
    echo "scenario: $checks checks, $failures failed"
    [ "$failures" = 0 ] && [ "$checks" -gt 0 ]
    exit $?
}

# dm_minor <name>: the N of /dev/dm-N.
dm_minor() { dmsetup info -c --noheadings -o minor "$1"; }
dm_dev() { echo "/dev/dm-$(dm_minor "$1")"; }

# now_ms: milliseconds since boot (for timings within one run).
now_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }

# sectors_written <dev-basename>: the write-sectors counter from /sys/block/*/stat.
sectors_written() { awk '{print $7}' "/sys/block/$1/stat"; }
sectors_read() { awk '{print $3}' "/sys/block/$1/stat"; }

# Checksum of a byte range of a device, read with O_DIRECT so no cache is involved.
# sum_range <dev> <offset-in-4k-blocks> <count-in-4k-blocks>
sum_range() { dd if="$1" bs=4096 skip="$2" count="$3" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }

# bow_state <name>: the sysfs state of bow device <name>.
bow_sysfs() { echo "/sys/block/dm-$(dm_minor "$1")/bow"; }

# status_field <name> <key>: one key=value field of `dmsetup status`.
status_field() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# log_sectors_one_by_one <entries> <writes>: sectors a 4 KiB-block log writes
# for <writes> log writes of one entry each, from a log block holding
# <entries>: each writes the header (28 bytes) and every entry (24 bytes) in
# whole sectors; a full block (169 entries) is saved whole (8 sectors) and the
# next starts with its chain entry. Computed from the format alone.
log_sectors_one_by_one() {
    awk -v n="$1" -v ops="$2" 'BEGIN { s = 0; for (i = 0; i < ops; i++) { if (n >= 169) { s += 8; n = 1 } n++; s += int((28 + 24 * n + 511) / 512) } print s }'
}

# zero_ranges <image> <block-size> <file>: zero every start+len block range
# listed in <file> (whitespace-separated, as free_map prints them) in a copy.
zero_ranges() {
    local img=$1 bs=$2 r
    for r in $(cat "$3"); do
        dd if=/dev/zero of="$img" bs=1M seek=$(( ${r%+*} * bs )) count=$(( ${r#*+} * bs )) \
            iflag=count_bytes oflag=seek_bytes,direct conv=notrunc 2>/dev/null
    done
}

# Random data is slow to make under TCG: draw it from a pool made once.
POOL=/tmp/random.pool
pool() { [ -s $POOL ] || dd if=/dev/urandom of=$POOL bs=1M count=8 2>/dev/null; }

# rnd <4k-blocks>: that much random data on stdout, from a random place in the pool.
# shellcheck disable=SC3028 # busybox ash has $RANDOM
rnd() { pool; dd if=$POOL bs=4096 skip=$(( RANDOM % (2048 - $1) )) count=$1 2>/dev/null; }

# populate <dir> <n>: n files of varied sizes with random content.
populate() {
    local d=$1 n=$2 i
    mkdir -p "$d/sub"
    for i in $(seq 1 "$n"); do
        rnd $(( (i * 7) % 64 + 1 )) > "$d/f$i"
    done
    rnd 1024 > "$d/sub/big"
}

# --- checkpoint round trip, for any filesystem ----------------------------
# roundtrip <label> <mkfs command...>
# Uses $DISK (protected), $COPY (scratch device for the checkpoint image),
# $MIB (size), $TABLE_OPTS (optional table args) and $FSBS (block size used
# for the free map, = the target's block size).
# Creates bow, makes the filesystem through it, fills it, trims, checkpoints,
# changes files, removes the device in state 1, restores with bowctl and
# checks: the log was valid, blocks not free at checkpoint are identical,
# fsck is clean, the files are identical.
roundtrip() {
    local label=$1; shift
    local len=$(( MIB * 2048 )) dev sys fsck_cmd
    dd if=/dev/zero of=$DISK bs=1M count=$MIB oflag=direct conv=notrunc 2>/dev/null
    if ! dmsetup create rt --table "0 $len bow $DISK $TABLE_OPTS"; then fail "$label: create"; return; fi
    dev=$(dm_dev rt); sys=$(bow_sysfs rt)
    # The redirection goes inside: on `check` it would swallow the verdict.
    check "$label: mkfs" sh -c '"$@" > /dev/null' mkfs "$@" "$dev"
    check "$label: mount" mount "$dev" /mnt/a
    populate /mnt/a 30
    sync
    check "$label: fstrim" fstrim /mnt/a
    check "$label: free space recorded" [ "$(cat $sys/free)" -gt 0 ]
    (cd /mnt/a && find . -type f | sort | xargs md5sum) > /tmp/rt.md5
    # Frozen, the filesystem writes nothing between the copy and the checkpoint.
    local frozen=1
    if fsfreeze --freeze /mnt/a 2>/dev/null; then
        ok "$label: freeze"
    else
        frozen=0
        check "$label: remount read-only (no freeze support)" mount -o remount,ro /mnt/a
    fi
    dd if=$DISK of=$COPY bs=1M count=$MIB iflag=direct oflag=direct 2>/dev/null
    echo 1 > $sys/state
    eq "$label: checkpoint" 1 "$(cat $sys/state)"
    dmsetup message rt 0 free_map > /tmp/rt.free
    if [ $frozen = 1 ]; then fsfreeze --unfreeze /mnt/a; else mount -o remount,rw /mnt/a; fi
    for i in 1 2 3 4 5 6 7 8; do
        rnd 2 | dd of=/mnt/a/f$i bs=1024 count=5 seek=1 iflag=fullblock conv=notrunc 2>/dev/null
    done
    rnd 3 >> /mnt/a/f9
    rm -f /mnt/a/f10 /mnt/a/f11
    mv /mnt/a/f12 /mnt/a/moved
    rnd 320 > /mnt/a/new
    rnd 512 | dd of=/mnt/a/sub/big bs=1M count=2 iflag=fullblock conv=notrunc 2>/dev/null
    sync
    check "$label: first overwrites backed up ($(status_field rt copies))" [ "$(status_field rt copies)" -gt 0 ]
    umount /mnt/a
    check "$label: remove in state 1" dmsetup remove rt
    check "$label: bowctl inspect valid" sh -c "bowctl inspect $DISK > /dev/null"
    check "$label: bowctl restore" sh -c "bowctl restore $DISK > /dev/null"
    # Compare before mounting: a mount may write (journal or log recovery).
    # Zeroing the ranges that were free at checkpoint changes nothing the
    # filesystem uses.
    zero_ranges $DISK "$FSBS" /tmp/rt.free
    zero_ranges $COPY "$FSBS" /tmp/rt.free
    if ! eq "$label: blocks not free at checkpoint identical" \
        "$(dd if=$COPY bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)" \
        "$(dd if=$DISK bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)"; then
        diff_blocks $COPY $DISK "$FSBS" $MIB
    fi
    check "$label: mount restored" mount $DISK /mnt/a
    check "$label: files identical" sh -c "cd /mnt/a && md5sum -c -s /tmp/rt.md5"
    eq "$label: same file count" "$(wc -l < /tmp/rt.md5)" "$(find /mnt/a -type f | wc -l)"
    umount /mnt/a
    # fsck after the filesystem has replayed its own journal, as a user would.
    case "$label" in
        *xfs*) fsck_cmd="xfs_repair -n $DISK" ;;
        *vfat*) fsck_cmd="fsck.vfat -n $DISK" ;;
        *) fsck_cmd="e2fsck -fn $DISK" ;;
    esac
    check "$label: fsck clean" sh -c "$fsck_cmd > /tmp/rt.fsck 2>&1" || cat /tmp/rt.fsck
}

# diff_blocks <a> <b> <bs> <MiB>: prints the first blocks that differ.
diff_blocks() {
    dd if=$1 bs=1M count=$4 iflag=direct 2>/dev/null > /tmp/da
    dd if=$2 bs=1M count=$4 iflag=direct 2>/dev/null > /tmp/db
    cmp -l /tmp/da /tmp/db 2>/dev/null | awk -v bs=$3 '{ b = int(($1 - 1) / bs); if (!(b in seen)) { seen[b] = 1; n++; if (n <= 10) printf "differs: block %d\n", b } } END { printf "%d blocks differ\n", n }'
    rm -f /tmp/da /tmp/db
}

# magic_of <disk>: the first 4 bytes of block 0, in hex, read with O_DIRECT.
magic_of() { dd if="$1" bs=512 count=1 iflag=direct 2>/dev/null | head -c 4 | od -An -tx1 | tr -d ' \n'; }

# sector0 <disk>: the sector0 field of the log header in block 0.
sector0_of() { dd if="$1" bs=512 count=1 iflag=direct 2>/dev/null | dd bs=1 skip=20 count=8 2>/dev/null | od -An -tu8 | tr -d ' '; }

# wa_begin <below> <dm>; ...; wa_end: sets WA_BELOW, WA_DM (sectors written),
# WA_X100 (write amplification x100, rounded down) and RD_BELOW (sectors read below).
wa_begin() { WA_B=$1 WA_D=$2; WA_B0=$(sectors_written $1); WA_D0=$(sectors_written $2); RD_B0=$(sectors_read $1); }
# shellcheck disable=SC2034 # WA_X100 is read by the scenarios (raw.sh)
wa_end() {
    WA_BELOW=$(( $(sectors_written $WA_B) - WA_B0 ))
    WA_DM=$(( $(sectors_written $WA_D) - WA_D0 ))
    RD_BELOW=$(( $(sectors_read $WA_B) - RD_B0 ))
    WA_X100=0
    [ "$WA_DM" -gt 0 ] && WA_X100=$(( WA_BELOW * 100 / WA_DM ))
    WA_FRAC=$(awk -v b=$WA_BELOW -v d=$WA_DM 'BEGIN { if (d > 0) printf "%.3f", b / d; else print "n/a" }')
    echo "write amplification: $WA_BELOW / $WA_DM sectors = $WA_FRAC (reads below: $RD_BELOW sectors)"
}
