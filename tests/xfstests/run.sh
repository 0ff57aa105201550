#!/usr/bin/env bash
# Runs xfstests (fstests) in the qemu VM on dm-bow devices and on a dm-linear
# baseline over the same disks, one boot per config section.
#
# usage: XFSTESTS_SRC=/path/to/xfstests tests/xfstests/run.sh [options]
#   --list NAME|FILE   tests to run: curated (default), logwrites (the
#                      dm-log-writes replay the test command adds to the
#                      curated list), extended (all of issue 7's list), quick (the whole quick group, for runs
#                      outside CI: hours under TCG), or a file
#                      with one test a line (# comments), optionally
#                      followed by the BOW_MODEs and filesystems it
#                      runs on ("generic/081 linear bow1 ext4"; default:
#                      all) and "@SECONDS", what it takes under TCG
#                      (default 60; sections are booted longest first)
#   --tests "T..."     these tests instead of a list (e.g. "generic/260 xfs/011")
#   --sections A,B     config sections (default: every section of
#                      xfstests-config/local.config, in file order)
#   --kernel DIR       use DIR/bzImage and DIR/dm-bow.ko instead of building
#                      them (ci/build-kernel.sh, ci/build-module.sh)
#   --test-timeout N   stop a test that runs over N s (default 600): the
#                      guest kills it, check counts it failed and goes on;
#                      the guest itself is killed when a test runs over
#                      N + 180 s (a test stuck in the kernel)
#   --jobs N           guests running at once (default 2), each with
#                      max(1, cores / N) vCPUs
#   --collect-only     boot nothing: count the sections' last results again
#                      (target/xfstests/<section>/console.log)
#   --out DIR          results in DIR instead of target/xfstests (the guest
#                      image stays in target/xfstests)
#
# Tests whose name starts with ext4/ or xfs/ run only in sections of that
# filesystem; generic/ tests run everywhere.
# Without XFSTESTS_SRC the xfstests part is reported as not run, with the
# reason; it never counts as passed.
#
# Output in target/xfstests/ (or --out): results.tsv (check<TAB>xfstests <fs> <mode>
# <test><TAB>pass|fail), notrun.tsv (<fs> <mode> <test><TAB>reason), and per
# section the console log and xfstests' results directory.
# The last line is "xfstests: N passed, N failed, N notrun".
# Per section, besides one row per test: check-exit (./check's exit status
# is 0), xt-test-status and xt-scratch-status (each target after check is in
# the section's state) and console-clean. Every test asked for must end as
# pass, fail or notrun with a reason; one without a verdict (check did not
# run it, the guest died) is a failure. Tests notrun are one
# "notrun<TAB>...<TAB>N" row, which the test command counts as not run.
# Exit status: 1 when any row failed, including a test that passes on
# dm-linear and fails (or is notrun) on dm-bow with the same filesystem, a
# kernel report on the console (BUG, WARNING, Oops, KASAN, lockdep, hung
# task) or a section that does not finish; 0 otherwise (also when xfstests
# is not run); 2 for bad usage.
set -euo pipefail
. "$(dirname "$0")/../../ci/lib.sh"

list=curated tests="" sections="" kdir="" test_timeout=600 jobs=2 collect_only=0 out=$BOW_ROOT/target/xfstests
run_t0=$(date +%s)
declare -A modes_of fs_of cost_of  # test -> the BOW_MODEs / filesystems it runs on (absent: all), its seconds
while [ $# -gt 0 ]; do
    case "$1" in
        --list) list=$2; shift ;;
        --tests) tests=$2; shift ;;
        --sections) sections=$2; shift ;;
        --kernel) kdir=$2; shift ;;
        --test-timeout) test_timeout=$2; shift ;;
        --jobs) jobs=$2; shift ;;
        --collect-only) collect_only=1 ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,50p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

here=$BOW_ROOT/tests/xfstests
cfg=$BOW_ROOT/xfstests-config/local.config
imgdir=$BOW_ROOT/target/xfstests
mkdir -p "$out" "$imgdir"
results=$out/results.tsv notrun_f=$out/notrun.tsv
: > "$results"; : > "$notrun_f"

if [ -z "${XFSTESTS_SRC:-}" ] || [ ! -f "${XFSTESTS_SRC:-/nonexistent}/check" ]; then
    reason="no xfstests checkout (set XFSTESTS_SRC to an xfstests source tree, e.g. a clone of https://github.com/kdave/xfstests)"
    [ -n "${XFSTESTS_SRC:-}" ] && reason="XFSTESTS_SRC=$XFSTESTS_SRC is not an xfstests checkout"
    printf 'xfstests\t%s\n' "not run: $reason" > "$notrun_f"
    echo "NOT RUN: xfstests: $reason"
    echo "xfstests: 0 passed, 0 failed, 1 notrun (xfstests not run: $reason)"
    exit 0
fi

# --- the tests ---------------------------------------------------------------
if [ -z "$tests" ]; then
    case "$list" in
        curated) lf=$here/curated.list ;;
        extended) lf=$here/extended.list ;;
        logwrites) lf=$here/logwrites.list ;;
        quick) lf="" tests="-g quick" ;;
        *) lf=$list ;;
    esac
    if [ -n "$lf" ]; then
        [ -f "$lf" ] || die "no such list: $lf"
        # A line is a test, then optionally the BOW_MODEs it runs in and
        # the filesystems ("generic/081 linear bow1 ext4"); without modes
        # it runs in every mode, without filesystems on every filesystem.
        while read -r t m; do
            [ -n "$t" ] || continue
            md="" fl=""
            for w in $m; do
                case "$w" in
                    linear|bow0|bow1|bow2) md+=" $w" ;;
                    ext4|xfs) fl+=" $w" ;;
                    @[0-9]*) [[ "$w" =~ ^@[0-9]+$ ]] || die "$lf: $t: bad time '$w' (@SECONDS)"; cost_of[$t]=${w#@} ;;
                    *) die "$lf: $t: unknown word '$w' (a mode: linear, bow0, bow1, bow2; a filesystem: ext4, xfs; a time: @SECONDS)" ;;
                esac
            done
            [ -z "$md" ] || [[ "$md " == *" linear "* ]] || die "$lf: $t: every test also runs on linear (the baseline)"
            tests+=" $t"
            [ -z "$md" ] || modes_of[$t]=$md
            [ -z "$fl" ] || fs_of[$t]=$fl
        done < <(sed 's/#.*//' "$lf")
    fi
fi
[ -n "$tests" ] || die "no tests to run"
all_sections=$(sed -n 's/^\[\([A-Za-z0-9_]*\)\]$/\1/p' "$cfg" | xargs)
[ -n "$sections" ] || sections=$all_sections
sections=${sections//,/ }
section_opt() { awk -v s="[$1]" -v k="$2" '/^\[/ { in_s = ($1 == s); next }
    in_s && index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$cfg"; }
for s in $sections; do
    [[ " $all_sections " == *" $s "* ]] || die "no section [$s] in $cfg (have: $all_sections)"
done

# count <"fs mode " prefix> <pass|fail>: tests (names with a /) with that verdict.
count() { awk -F'\t' -v p="xfstests $1" -v v="$2" 'index($2, p) == 1 && $2 ~ /\// && $3 == v { n++ } END { print n + 0 }' "$results"; }
count_notrun() { awk -F'\t' -v p="$1" 'index($1, p) == 1 { n++ } END { print n + 0 }' "$notrun_f"; }
status=0
declare -A verdict
splat_re=$KERNEL_REPORT_RE

if [ "$collect_only" = 0 ]; then
# --- builds: kernel and module, xfstests, root filesystem, image -------------
if [ -n "$kdir" ]; then
    bz=$kdir/bzImage ko=$kdir/dm-bow.ko
else
    kb=$(bash "$BOW_ROOT/ci/build-kernel.sh")
    ko=$(bash "$BOW_ROOT/ci/build-module.sh")
    bz=$kb/arch/x86/boot/bzImage
fi
[ -f "$bz" ] && [ -f "$ko" ] || die "no kernel or module ($bz, $ko)"
xt=$(bash "$BOW_ROOT/ci/build-xfstests.sh")
rootfs=$(bash "$BOW_ROOT/ci/build-rootfs.sh")
xt_commit=$(cat "$xt/.bow-source-commit")
echo "$xt_commit" > "$out/xfstests-commit"
log "xfstests $xt_commit from $XFSTESTS_SRC (build $xt), root filesystem $rootfs"

# The image: root filesystem + xfstests build + module + init. Rebuilt when
# one of them changes; the guest sees it through a snapshot (never written).
img=$imgdir/rootfs.img
ikey=$( { echo "$rootfs $xt"; sha256sum "$ko" "$here/guest/init" /bin/busybox; } | sha256sum | cut -c1-16)
if [ "$(cat "$img.key" 2>/dev/null)" != "$ikey" ]; then
    log "making the guest image $img"
    stage=$(mktemp -d /var/tmp/xt-stage.XXXXXX)
    trap 'rm -rf "$stage"' EXIT
    cp -a "$rootfs/." "$stage/"
    mkdir -p "$stage/opt/xfstests" "$stage/lib/modules"
    cp -a "$xt/." "$stage/opt/xfstests/"
    rm -rf "$stage/opt/xfstests/results"
    cp "$ko" "$stage/lib/modules/dm-bow.ko"
    cp /bin/busybox "$stage/bin/busybox"
    install -m 755 "$here/guest/init" "$stage/xfstests-init"
    rm -f "$img" "$img.key"
    truncate -s 4G "$img"
    mke2fs -q -t ext4 -d "$stage" -L xt-root "$img" || die "mke2fs -d failed"
    rm -rf "$stage"; trap - EXIT
    echo "$ikey" > "$img.key"
fi

smp=$(( $(nproc) / jobs )); [ "$smp" -ge 1 ] || smp=1
fi # collect_only
# section_tests <section>: the tests that run there. Filesystem-specific
# tests only where they belong, and a test only in the modes and on the
# filesystems its list line names.
section_tests() {
    local fs mode t out=""
    fs=$(section_opt "$1" FSTYP) mode=$(section_opt "$1" BOW_MODE)
    for t in $tests; do
        [ -z "${modes_of[$t]:-}" ] || [[ " ${modes_of[$t]} " == *" $mode "* ]] || continue
        [ -z "${fs_of[$t]:-}" ] || [[ " ${fs_of[$t]} " == *" $fs "* ]] || continue
        case "$t" in
            ext4/*|xfs/*|btrfs/*) [ "${t%%/*}" = "$fs" ] && out+=" $t" ;;
            *) out+=" $t" ;;
        esac
    done
    echo "$out"
}
if [ "$collect_only" = 0 ]; then
# --- one boot per section -------------------------------------------------------
boot_section() {
    local s=$1 fs mode stests t d disk console t0 qpid timed_out cur cur_start now secs
    fs=$(section_opt "$s" FSTYP) mode=$(section_opt "$s" BOW_MODE)
    stests=$(section_tests "$s")
    d=$out/$s
    rm -rf "$d"; mkdir -p "$d"
    if [ -z "$stests" ]; then
        log "section $s ($fs, $mode): no test of the list runs here, not booted"
        touch "$d/no-tests"
        return 0
    fi
    for disk in test scratch logw; do truncate -s 2G "$d/$disk.img"; done
    truncate -s 512M "$d/control.img"
    mkdir -p "$d/control"
    printf 'SECTION=%q\nTESTS=%q\nTEST_TIMEOUT=%q\n' "$s" "$stests" "$test_timeout" > "$d/control/params"
    cp "$cfg" "$d/control/local.config"
    cp "$here/guest/guest.sh" "$d/control/guest.sh"
    tar -C "$d/control" -cf - . | dd of="$d/control.img" conv=notrunc status=none
    console=$d/console.log
    log "section $s ($fs, $mode):$stests"
    t0=$(date +%s)
    qemu-system-x86_64 -accel tcg -cpu "$X86_CPU" -smp "$(x86_smp "$smp")" -m 3072 \
        -nographic -no-reboot -monitor none -serial "file:$console" \
        -kernel "$bz" \
        -append "console=ttyS0 root=/dev/vda rw rootfstype=ext4 init=/xfstests-init panic=-1 oops=panic loglevel=6" \
        -drive "file=$img,format=raw,if=virtio,snapshot=on" \
        -drive "file=$d/test.img,format=raw,if=virtio,discard=unmap" \
        -drive "file=$d/scratch.img,format=raw,if=virtio,discard=unmap" \
        -drive "file=$d/logw.img,format=raw,if=virtio,discard=unmap" \
        -drive "file=$d/control.img,format=raw,if=virtio" \
        </dev/null > "$d/qemu.out" 2>&1 &
    qpid=$!
    # Watchdog: setup within 600 s, each test within --test-timeout + 180
    # (the guest stops a test at --test-timeout itself; this is for a guest
    # that cannot).
    timed_out="" cur="" cur_start=$t0
    while kill -0 "$qpid" 2>/dev/null; do
        sleep 2
        now=$(date +%s)
        t=$(grep -a -o 'run fstests [^ ]* at' "$console" 2>/dev/null | tail -1 | cut -d' ' -f3 || true)
        [ -n "$t" ] && [ "$t" != "$cur" ] && { cur=$t; cur_start=$now; }
        if [ -z "$cur" ] && [ $(( now - t0 )) -gt 600 ] && ! grep -aq XT-CHECK-END "$console"; then
            timed_out="boot and setup (over 600 s)"
        elif [ -n "$cur" ] && ! grep -aq XT-CHECK-END "$console" && [ $(( now - cur_start )) -gt $(( test_timeout + 180 )) ]; then
            timed_out="test $cur (over $(( test_timeout + 180 )) s)"
        elif grep -aq XT-CHECK-END "$console" && [ $(( now - $(stat -c %Y "$console") )) -gt 300 ]; then
            timed_out="results (nothing for 300 s after check ended)"
        fi
        if [ -n "$timed_out" ]; then
            echo "TIMEOUT: killing the guest: $timed_out" | tee -a "$console" >&2
            kill "$qpid" 2>/dev/null || true; sleep 1; kill -9 "$qpid" 2>/dev/null || true
            break
        fi
    done
    wait "$qpid" 2>/dev/null || true
    secs=$(( $(date +%s) - t0 ))
    mkdir -p "$d/results"
    dd if="$d/control.img" bs=1M skip=64 status=none | tar -C "$d/results" -xf - 2>/dev/null || true
    rm -f "$d"/test.img "$d"/scratch.img "$d"/logw.img
    echo "$secs" > "$d/seconds"
    [ -z "$timed_out" ] || echo "$timed_out" > "$d/timed_out"
    log "section $s: guest done in $secs s"
}

fi # collect_only
# Sections run --jobs at a time, each guest with cores/jobs vCPUs.
# The longest sections start first (the tests' @SECONDS, 60 for a test
# without, and 60 for the boot), so that the short ones fill the gaps at
# the end.
section_cost() { local t c=60; for t in $(section_tests "$1"); do c=$(( c + ${cost_of[$t]:-60} )); done; echo $c; }
order=$(for s in $sections; do printf '%s %s\n' "$(section_cost "$s")" "$s"; done | sort -s -k1,1nr | cut -d' ' -f2)
running=0
[ "$collect_only" = 1 ] || for s in $order; do
    if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    boot_section "$s" &
    running=$((running + 1))
done
wait

# row <what> <pass|fail>: one check of the section in results.tsv.
row() { printf 'check\txfstests %s %s %s\t%s\n' "$fs" "$mode" "$1" "$2" >> "$results"; }
for s in $sections; do
    fs=$(section_opt "$s" FSTYP) mode=$(section_opt "$s" BOW_MODE)
    d=$out/$s console=$d/console.log
    [ ! -f "$d/no-tests" ] || continue
    secs=$(cat "$d/seconds" 2>/dev/null || echo "?") timed_out=$(cat "$d/timed_out" 2>/dev/null || true)
    tr -d '\r' < "$console" > "$d/console.txt"
    grep -a -E '^XT-SETUP-FAIL|^XT-TEST-TIMEOUT' "$d/console.txt" | sed 's/^/    /' >&2 || true
    while read -r _ _ t v reason; do
        case $v in
            pass|fail) row "$t" "$v" ;;
            notrun)
                if [ -n "$reason" ]; then
                    printf '%s %s %s\t%s\n' "$fs" "$mode" "$t" "$reason" >> "$notrun_f"
                else
                    # notrun must say why; without a reason it is a failure.
                    echo "FAIL: $s: $t notrun with no reason"
                    v=fail; row "$t" fail
                fi ;;
            *)  # "missing": asked for, and check never ran it.
                echo "FAIL: $s: $t was asked for and check did not run it"
                v=fail; row "$t" fail ;;
        esac
        verdict[$fs:$mode:$t]=$v
    done < <(grep -a "^XT-RESULT $s " "$d/console.txt" || true)
    if ! grep -aq "^XT-SECTION-END $s" "$d/console.txt"; then
        # Crashed or killed: the verdicts come from check's own lines on the
        # console: a time (" 45s") is a pass, "[not run] why" a notrun,
        # anything else (a mismatch, a failure, no end) a fail.
        while IFS=$'\t' read -r t v reason; do
            [ -n "${verdict[$fs:$mode:$t]:-}" ] && continue
            verdict[$fs:$mode:$t]=$v
            case $v in
                notrun) printf '%s %s %s\t%s\n' "$fs" "$mode" "$t" "$reason" >> "$notrun_f" ;;
                *) row "$t" "$v" ;;
            esac
        done < <(awk '
            function done_(v, r) { if (t != "") printf "%s\t%s\t%s\n", t, v, r; t = "" }
            match($0, /run fstests [^ ]+ at/) { done_("fail", ""); split(substr($0, RSTART, RLENGTH), w, " "); t = w[3]; bad = 0; next }
            t == "" { next }
            /^ *[0-9]+s$/ { done_(bad ? "fail" : "pass", ""); next }
            /^\[not run\]/ { r = $0; sub(/^\[not run\] */, "", r); done_("notrun", r); next }
            /output mismatch|\[failed|_check_dmesg|_check_.*_filesystem: filesystem on .* is inconsistent/ { bad = 1 }
            END { done_("fail", "") }' "$d/console.txt")
        echo "FAIL: section $s did not finish${timed_out:+ ($timed_out)}"
        row section-finished fail
        status=1
    fi
    # Every test asked for has a verdict, whatever happened to the guest.
    case " $tests " in *" -"*) ;; *)
        for t in $(section_tests "$s"); do
            [ -z "${verdict[$fs:$mode:$t]:-}" ] || continue
            echo "FAIL: $s: no verdict for $t"
            verdict[$fs:$mode:$t]=fail
            row "$t" fail
        done ;;
    esac
    # check's own exit status (non-zero: a test failed, or check itself did).
    rc=$(sed -n "s/^XT-CHECK-END $s rc=\([0-9]*\) .*/\1/p" "$d/console.txt" | tail -1)
    if [ -n "$rc" ]; then
        v=pass; [ "$rc" = 0 ] || { v=fail; echo "FAIL: section $s: ./check exited $rc"; }
        row check-exit "$v"
    fi
    # The targets after check: still there, in the section's state.
    case $mode in
        linear) want=' linear ' ;; bow0) want=' state=trim' ;;
        bow1) want=' state=checkpoint' ;; bow2) want=' state=committed' ;; *) want='?' ;;
    esac
    # (When check never ended, section-finished fails the section.)
    [ -z "$rc" ] || for n in xt-test xt-scratch; do
        st=$(sed -n "s/^XT-BOW-STATUS $s $n //p" "$d/console.txt" | tail -1)
        v=pass
        [[ " $st " == *"$want"* ]] || { v=fail; echo "FAIL: section $s: $n after check: '${st:-no status}', expected '${want# }'"; }
        row "$n-status" "$v"
    done
    spl=$(grep -a -E "$splat_re" "$d/console.txt" || true)
    if [ -n "$spl" ]; then
        echo "FAIL: section $s: the console shows kernel reports:"
        sed 's/^/    /' <<<"$spl" | head -20
        row console-clean fail
        status=1
    else
        row console-clean pass
    fi
    log "section $s: $(count "$fs $mode " pass) passed, $(count "$fs $mode " fail) failed, $(count_notrun "$fs $mode ") notrun in $secs s"
    grep -a '^XT-BOW-STATUS' "$d/console.txt" | sed 's/^/    /' >&2 || true
done

# --- the verdict: passes on dm-linear, fails on dm-bow ------------------------
regress=0
for k in "${!verdict[@]}"; do
    IFS=: read -r fs mode t <<<"$k"
    [ "$mode" = linear ] && continue
    [ "${verdict[$fs:linear:$t]:-}" = pass ] || continue
    case "${verdict[$k]}" in
        fail) echo "REGRESSION: $t passes on $fs over dm-linear, fails on $fs over dm-bow ($mode)"; regress=1 ;;
        # A test that cannot run on bow would hide a failure: not a pass.
        notrun) echo "REGRESSION: $t passes on $fs over dm-linear, is notrun on $fs over dm-bow ($mode)"; regress=1 ;;
    esac
done
[ $regress = 0 ] || status=1
# Any failed check (a test, a missing verdict, check's exit, a target's
# state, the console) fails the run.
! grep -q $'\tfail$' "$results" || status=1
# Tests notrun everywhere would be invisible in the pass/fail counts: the
# test command counts them as not run (and fails on them).
n_notrun=$(count_notrun "")
[ "$n_notrun" = 0 ] || printf 'notrun\txfstests: tests notrun (%s)\t%s\n' "$notrun_f" "$n_notrun" >> "$results"
# A table per filesystem and mode (docs/xfstests.md).
{
    booted=""
    for s in $sections; do [ -f "$out/$s/no-tests" ] || booted+=" $s"; done
    printf '| fs | mode | pass | fail | notrun |\n|---|---|---|---|---|\n'
    for s in $booted; do
        fs=$(section_opt "$s" FSTYP) mode=$(section_opt "$s" BOW_MODE)
        printf '| %s | %s | %s | %s | %s |\n' "$fs" "$mode" \
            "$(count "$fs $mode " pass)" "$(count "$fs $mode " fail)" "$(count_notrun "$fs $mode ")"
    done
    # And one line per test: its verdict in each section.
    printf '\n| test |'; for s in $booted; do printf ' %s |' "$s"; done
    printf '\n|---|'; for s in $booted; do printf -- '---|'; done; printf '\n'
    for t in $(printf '%s\n' "${!verdict[@]}" | cut -d: -f3 | sort -u); do
        printf '| %s |' "$t"
        for s in $booted; do
            printf ' %s |' "${verdict[$(section_opt "$s" FSTYP):$(section_opt "$s" BOW_MODE):$t]:--}"
        done
        printf '\n'
    done
} > "$out/summary.md"
cat "$out/summary.md"
echo "xfstests source: $XFSTESTS_SRC at $(cat "$out/xfstests-commit" 2>/dev/null || echo unknown)"
[ "$collect_only" = 1 ] || echo "xfstests: wall time $(( $(date +%s) - run_t0 )) s (sections booted:$booted)"
echo "xfstests: $(count "" pass) passed, $(count "" fail) failed, $(count_notrun "") notrun"
exit $status
