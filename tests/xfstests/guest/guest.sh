#!/bin/bash
# Runs one xfstests section in the guest. Copied to the control disk by
# tests/xfstests/run.sh; run by /xfstests-init with the control disk's path.
#
# /control/params sets SECTION, TESTS and TEST_TIMEOUT (seconds a test may
# run before it is stopped; 0: no limit). The section in /control/local.config
# gives FSTYP and BOW_MODE:
#   linear  dm-linear over the disks (the baseline)
#   bow0    dm-bow in state 0 (trim): fresh target, nothing recorded
#   bow1    dm-bow in state 1 (checkpoint): mkfs, mount, fstrim, checkpoint,
#           umount, on TEST and on SCRATCH
#   bow2    dm-bow in state 2 (committed): as bow1, then files changed under
#           the checkpoint, then commit
# TEST_DEV is /dev/mapper/xt-test over /dev/vdb, SCRATCH_DEV
# /dev/mapper/xt-scratch over /dev/vdc, LOGWRITES_DEV /dev/mapper/xt-logw
# (always dm-linear) over /dev/vdd.
# Prints XT-RESULT <section> <test> pass|fail|notrun [reason] per test and
# writes the results directory as a tar at 64 MiB into the control disk.
set -u
ctl=$1
. /control/params
XT=/opt/xfstests
cfg=/control/local.config
# xfstests reads the first section of a config to start with, even with
# -s: then a later section of another FSTYP starts by mounting TEST_DEV with
# the first one's type. Give it a config of this section alone: the first
# section's options, overridden by this section's.
awk -v s="[$SECTION]" '
    /^\[/ { n++; in_s = ($1 == s); next }
    /^[A-Za-z_]+=/ && (n == 1 || in_s) { k = substr($0, 1, index($0, "=") - 1); if (!(k in v)) order[++m] = k; v[k] = $0 }
    END { print s; for (i = 1; i <= m; i++) print v[order[i]] }' "$cfg" > $XT/local.config
cat $XT/local.config

# One option of one section (no carrying over: each section names both).
opt() { awk -v s="[$SECTION]" -v k="$1" '
    /^\[/ { in_s = ($1 == s); next }
    in_s && index($0, k "=") == 1 { v = substr($0, length(k) + 2); gsub(/^["'\'']|["'\'']$/, "", v); print v; exit }' "$cfg"; }
FSTYP=$(opt FSTYP)
MODE=$(opt BOW_MODE)
echo "XT-SECTION $SECTION fstyp=$FSTYP mode=$MODE"
[ -n "$FSTYP" ] && [ -n "$MODE" ] || { echo "XT-SETUP-FAIL section $SECTION: FSTYP or BOW_MODE missing"; exit 2; }

setup_fail() { echo "XT-SETUP-FAIL $SECTION: $*"; exit 2; }
mkfs_fs() {
    case $FSTYP in
        ext4) mkfs.ext4 -q -F "$1" ;;
        xfs) mkfs.xfs -q -f "$1" ;;
    esac
}
sysfs_of() { echo "/sys/block/dm-$(dmsetup info -c --noheadings -o minor "$1")/bow"; }

insmod /lib/modules/dm-bow.ko || setup_fail "insmod dm-bow.ko"
# LVM (generic/081): see the PVs on the dm devices only, not also on the
# disks below them (else "duplicate PV devices"), and no udev or dmeventd.
cat > /etc/lvm/lvm.conf <<'LVM'
devices {
    global_filter = [ "r|^/dev/vd|", "a|.*|" ]
    obtain_device_list_from_udev = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
}
LVM
mkdir -p /mnt/test /mnt/scratch /mnt/setup

# make_dev <name> <disk>
make_dev() {
    local name=$1 disk=$2 sz
    sz=$(blockdev --getsz "$disk")
    case $MODE in
        linear) dmsetup create "$name" --table "0 $sz linear $disk 0" ;;
        bow*) dmsetup create "$name" --table "0 $sz bow $disk" ;;
        *) setup_fail "unknown BOW_MODE $MODE" ;;
    esac || setup_fail "dmsetup create $name ($MODE over $disk)"
}
# checkpoint <name>: mkfs, mount, fstrim, state 1, umount.
checkpoint() {
    local dev=/dev/mapper/$1 s
    s=$(sysfs_of "$1")
    mkfs_fs "$dev" >/dev/null || setup_fail "mkfs $dev"
    mount "$dev" /mnt/setup || setup_fail "mount $dev"
    mkdir -p /mnt/setup/before; cp -a /opt/xfstests/common /mnt/setup/before/; sync
    fstrim /mnt/setup || setup_fail "fstrim $dev"
    echo 1 > "$s/state" || setup_fail "checkpoint $dev"
    echo "XT-SETUP $1: checkpoint, free $(cat "$s/free") bytes"
    if [ "$MODE" = bow2 ]; then
        # An update under the checkpoint, then its commit.
        # (small: under TCG with KASAN, thousands of files take minutes)
        cp -a /opt/xfstests/common /mnt/setup/after
        dd if=/dev/urandom of=/mnt/setup/before/common/rc bs=4096 count=32 conv=notrunc 2>/dev/null
        rm -rf /mnt/setup/before/common/[a-q]*; sync
        echo 2 > "$s/state" || setup_fail "commit $dev"
        echo "XT-SETUP $1: committed"
    fi
    umount /mnt/setup || setup_fail "umount $dev"
    echo "XT-SETUP $1: $(dmsetup status "$1")"
}

make_dev xt-test /dev/vdb
make_dev xt-scratch /dev/vdc
sz=$(blockdev --getsz /dev/vdd)
dmsetup create xt-logw --table "0 $sz linear /dev/vdd 0" || setup_fail "dmsetup create xt-logw"
dmsetup mknodes
for n in xt-test xt-scratch xt-logw; do [ -b /dev/mapper/$n ] || setup_fail "/dev/mapper/$n is not a block device"; done
case $MODE in
    bow1|bow2) checkpoint xt-test; checkpoint xt-scratch ;;
esac
# TEST_DEV holds a filesystem of the section's type when check starts
# (in bow1/bow2 the one made before the checkpoint).
case $MODE in
    linear|bow0) mkfs_fs /dev/mapper/xt-test >/dev/null || setup_fail "mkfs TEST_DEV" ;;
esac
echo "XT-SETUP-DONE $SECTION"

# Per-test watchdog: a test script running for over TEST_TIMEOUT s is
# stopped, so that one hung test does not cost the rest of the section.
# Its processes get SIGKILL and the script SIGTERM, so that its _cleanup
# trap runs (unmounting, removing its dm devices); a minute later the
# script gets SIGKILL too. check records the test as failed (exit status)
# and goes on with the next one.
test_watchdog() {
    # Ages are counted from /proc/uptime, from when the watchdog first saw
    # the script (ps's etimes gave ages of over 1500 s to a 160 s old test
    # under TCG).
    local -A parent cmd first killed
    local pid ppid args t k a up et
    while sleep 5; do
        read -r up _ < /proc/uptime; up=${up%.*}
        parent=() cmd=()
        while read -r pid ppid args; do parent[$pid]=$ppid cmd[$pid]=$args; done < <(ps -e -o pid=,ppid=,args=)
        for pid in "${!cmd[@]}"; do
            # check runs "bash -c 'exec ./tests/generic/NNN'"
            [[ "${cmd[$pid]}" =~ ^[^\ ]*bash\ ([^\ ]*/)?tests/([a-z0-9]+/[0-9]+)$ ]] || continue
            t=${BASH_REMATCH[2]}
            [ -n "${first[$pid]:-}" ] || first[$pid]=$up
            et=$(( up - first[$pid] ))
            [ "$et" -gt "$TEST_TIMEOUT" ] || continue
            if [ -z "${killed[$pid]:-}" ]; then
                killed[$pid]=$et
                echo "XT-TEST-TIMEOUT $SECTION $t: over $TEST_TIMEOUT s, stopping it"
                kill -TERM "$pid" 2>/dev/null
                for k in "${!parent[@]}"; do
                    # k descends from pid: walk up its parents.
                    a=${parent[$k]}
                    while [ -n "$a" ] && [ "$a" != 1 ] && [ "$a" != "$pid" ]; do a=${parent[$a]:-}; done
                    [ "$a" = "$pid" ] && kill -KILL "$k" 2>/dev/null
                done
            elif [ "$et" -gt $(( killed[$pid] + 60 )) ]; then
                echo "XT-TEST-TIMEOUT $SECTION $t: cleanup over 60 s, killing the script"
                kill -KILL "$pid" 2>/dev/null
            fi
        done
    done
}
if [ "${TEST_TIMEOUT:-0}" -gt 0 ]; then test_watchdog & wd=$!; fi

cd "$XT" || exit 1
start=$(date +%s)
# shellcheck disable=SC2086
./check -s "$SECTION" $TESTS
echo "XT-CHECK-END $SECTION rc=$? $(( $(date +%s) - start ))s"
[ -z "${wd:-}" ] || kill "$wd" 2>/dev/null
umount /mnt/test /mnt/scratch 2>/dev/null
for n in xt-test xt-scratch; do echo "XT-BOW-STATUS $SECTION $n $(dmsetup status $n)"; done

# Classify every test asked for (not only those check says it ran) from
# the section's check.log and notrun files. A test check never ran (an
# unknown name, check stopped early) is "missing": the host fails it.
rb=$XT/results/$SECTION
last() { grep "^$1" "$rb/check.log" 2>/dev/null | tail -1 | sed "s/^$1 *//"; }
ran=" $(last 'Ran:') " notrun=" $(last 'Not run:') " bad=" $(last 'Failures:') "
asked=$TESTS
# A group ("-g quick") names no tests: then what check ran is the list.
case " $TESTS " in *" -"*) asked=$ran ;; esac
for t in $asked; do
    if [ -f "$rb/$t.notrun" ] || [[ "$notrun" == *" $t "* ]]; then
        echo "XT-RESULT $SECTION $t notrun $(tr '\n' ' ' < "$rb/$t.notrun" 2>/dev/null | sed 's/ *$//')"
    elif [[ "$bad" == *" $t "* ]]; then
        echo "XT-RESULT $SECTION $t fail"
    elif [[ "$ran" == *" $t "* ]]; then
        echo "XT-RESULT $SECTION $t pass"
    else
        echo "XT-RESULT $SECTION $t missing"
    fi
done
dmesg > "$rb/dmesg.txt" 2>/dev/null
tar -C $XT/results -cf - . | dd of="$ctl" bs=1M seek=64 conv=fsync 2>/dev/null
sync
echo "XT-SECTION-END $SECTION"
