# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 300
# cost: 21
# checks: 37
# The foundation scenario: the module loads (running its KUnit suite), good
# tables are accepted and round-trip, every kind of bad table is refused with
# its own message, state 0 passes I/O byte-exactly (checked below the target),
# and remove and rmmod work.
. /tests/lib.sh

DISK=/dev/vda
SZ=$(blockdev --getsz $DISK)   # sectors
LEN=$(( SZ / 8 * 8 ))

# The VM has two vCPUs (tests/vm/run.sh), so the module's locks and
# workers run in parallel, not only interleaved by preemption.
eq "two CPUs online" 2 "$(grep -c '^processor' /proc/cpuinfo)"
# And, on x86_64, no 5-level paging: with it the kernel's own early boot
# can report a false KASAN error (X86_CPU in ci/lib.sh says why).
check "no 5-level paging (la57)" sh -c '! grep -qw la57 /proc/cpuinfo'
check "insmod dm-bow" insmod /lib/modules/dm-bow.ko
check "target bow is registered" sh -c 'dmsetup targets | grep -q "^bow "'

# --- good tables --------------------------------------------------------
check "create with default block size" dmsetup create good1 --table "0 $LEN bow $DISK"
eq "table round-trips (default)" "0 $LEN bow $DISK" "$(dmsetup table good1)"
case "$(dmsetup status good1)" in
    "0 $LEN bow state=trim block_size=512 "*) ok "status shows state=trim, block_size=512" ;;
    *) fail "status line: $(dmsetup status good1)" ;;
esac
check "remove good1" dmsetup remove good1

check "create with block_size:4096" dmsetup create good2 --table "0 $LEN bow $DISK 1 block_size:4096"
eq "table round-trips (block_size)" "0 $LEN bow $DISK 1 block_size:4096" "$(dmsetup table good2)"
D=$(dm_dev good2)
eq "logical block size advertised" 4096 "$(blockdev --getss "$D")"
eq "physical block size advertised" 4096 "$(cat /sys/block/${D#/dev/}/queue/physical_block_size)"
expect_fail "unknown message is refused" dmsetup message good2 0 rollback

# --- state 0 passes I/O through, byte-exactly ----------------------------
dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
check "write 1 MiB at block 100 through bow" \
    dd if=/tmp/pattern of="$D" bs=4096 seek=100 oflag=direct conv=notrunc 2>/dev/null
want=$(md5sum < /tmp/pattern | cut -d' ' -f1)
eq "disk below holds the data" "$want" "$(sum_range $DISK 100 256)"
eq "bow device reads it back" "$want" "$(sum_range "$D" 100 256)"
dd if=/dev/urandom of=/tmp/pattern2 bs=4096 count=16 2>/dev/null
check "write under the target, read through it" \
    dd if=/tmp/pattern2 of=$DISK bs=4096 seek=1000 oflag=direct conv=notrunc 2>/dev/null
eq "reads pass through" "$(md5sum < /tmp/pattern2 | cut -d' ' -f1)" "$(sum_range "$D" 1000 16)"
check "remove good2" dmsetup remove good2

# --- bad tables: each gets EINVAL and its own ti->error message ----------
bad() {
    local what=$1 table=$2 msg=$3; shift 3
    dmesg -c >/dev/null
    if dmsetup create bad "$@" --table "$table" 2>/dev/null; then
        fail "bad table accepted: $what"
        dmsetup remove bad
        return
    fi
    if dmesg | grep -qF "bow: $msg"; then ok "bad table refused with its message: $what"
    else fail "bad table $what: message '$msg' not in dmesg: $(dmesg | tail -3)"; fi
    dmsetup remove bad 2>/dev/null
}
bad "no device" "0 $LEN bow" "Invalid argument count"
bad "missing optional argument" "0 $LEN bow $DISK 1" "Invalid argument count"
bad "extra argument" "0 $LEN bow $DISK 1 block_size:4096 x" "Invalid argument count"
bad "optional count not a number" "0 $LEN bow $DISK x block_size:4096" "Invalid optional argument count"
bad "unknown option" "0 $LEN bow $DISK 1 blocksize:4096" "Unknown optional argument"
bad "duplicate option" "0 $LEN bow $DISK 2 block_size:4096 block_size:4096" "Duplicate optional argument"
bad "malformed number" "0 $LEN bow $DISK 1 block_size:4k" "Invalid block_size: not a decimal number"
bad "block size not a power of two" "0 $LEN bow $DISK 1 block_size:3072" "Invalid block_size: must be a power of two"
bad "block size too large" "0 $LEN bow $DISK 1 block_size:8192" "Invalid block_size: must be a power of two"
bad "length not a multiple of the block size" "0 $((LEN - 1)) bow $DISK 1 block_size:4096" "Target length is not a multiple"
bad "fewer than 3 blocks" "0 16 bow $DISK 1 block_size:4096" "Device too small"
bad "read-only table" "0 $LEN bow $DISK" "Device must be writable" --readonly
bad "no such device" "0 $LEN bow /dev/nonexistent" "Device lookup failed"
eq "no device left behind by bad tables" "" "$(dmsetup ls --target bow 2>/dev/null | grep -v 'No devices')"

# The harness itself (tests/lib.sh): after check lines have gone to the
# console, busybox's forked applets must not be line-buffered. A `head` that
# has read one line of two must have written nothing yet; a line-buffered one
# writes it at once, and every `yes | head` of the scenarios crawls.
rm -f /tmp/lb.fifo /tmp/lb.out
mkfifo /tmp/lb.fifo
head -n 2 /tmp/lb.fifo > /tmp/lb.out &
exec 7> /tmp/lb.fifo
echo line1 >&7
sleep 2
mid=$(wc -c < /tmp/lb.out)
exec 7>&-
wait
eq "harness: a forked applet's stdout stays fully buffered after check lines" 0 "$mid"
eq "harness: and it writes everything when it ends" line1 "$(cat /tmp/lb.out)"

check "rmmod dm_bow" rmmod dm_bow
check "bow target gone after rmmod" sh -c 'dmsetup targets > /tmp/targets && grep -q "^linear " /tmp/targets && ! grep -q "^bow " /tmp/targets'
finish
