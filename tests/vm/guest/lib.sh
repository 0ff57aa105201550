# Helpers for guest scenarios. Source it: . /tests/lib.sh
# Every check prints one line, BOW-CHECK ok|FAIL <what>, and a failed check
# makes the scenario exit non-zero at the end (see finish).

failures=0
checks=0

ok() { checks=$((checks + 1)); echo "BOW-CHECK ok $*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "BOW-CHECK FAIL $*"; }

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

finish() {
    echo "scenario: $checks checks, $failures failed"
    [ "$failures" = 0 ] && [ "$checks" -gt 0 ]
    exit $?
}

# dm_minor <name>: the N of /dev/dm-N.
dm_minor() { dmsetup info -c --noheadings -o minor "$1"; }
dm_dev() { echo "/dev/dm-$(dm_minor "$1")"; }

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

# zero_ranges <image> <block-size> <ranges...>: zero every start+len block range in a copy.
zero_ranges() {
    local img=$1 bs=$2 r; shift 2
    for r in "$@"; do
        dd if=/dev/zero of="$img" bs="$bs" seek="${r%+*}" count="${r#*+}" conv=notrunc 2>/dev/null
    done
}

# populate <dir> <n>: n files of varied sizes with random content.
populate() {
    local d=$1 n=$2 i
    mkdir -p "$d/sub"
    for i in $(seq 1 "$n"); do
        dd if=/dev/urandom of="$d/f$i" bs=4096 count=$(( (i * 7) % 64 + 1 )) 2>/dev/null
    done
    dd if=/dev/urandom of="$d/sub/big" bs=1M count=4 2>/dev/null
}
