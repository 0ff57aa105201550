#!/usr/bin/env bash
# Boots the test kernel under qemu (TCG) with fresh raw disk images and runs the
# named guest scenarios in one boot.
#
# usage: tests/vm/run.sh [--no-build (reuse the last kernel, module and bowctl)] [--disk-mib N] [--keep]
#                        [--disks DIR] [--name NAME] SCENARIO[:ARG]...
#        tests/vm/run.sh --build-only
#
# --name NAME keeps this run in target/vm/NAME instead of target/vm/last, so
# several guests can run at once (build first with --build-only, then start
# each with --no-build and its own name).
# --disks DIR keeps the disk images in DIR and reuses them on the next run,
# so a sequence of runs is a sequence of boots of one machine. SCENARIO:ARG
# runs the scenario with ARG as its first argument. A scenario that exits
# with status 99 cuts the power: the guest resets at once, without syncing
# or unmounting anything (the scenario counts as passed when its checks did).
#
# The guest gets /dev/vda and /dev/vdb of --disk-mib MiB (512) each, and
# /dev/vdc of 1024 MiB for the large tests (restore speed), and /dev/vdd of
# 3072 MiB where the crash scenario leaves its recordings for the host, and
# /dev/vde of 64 MiB on a virtio disk with discard=off.
# BOW_CRASH_SEED (default 1) seeds the crash scenario's workloads.
#
# Exit status: 0 when every scenario passed and the console is clean, 1 when
# any failed, timed out or the console shows a kernel report (BUG, WARNING,
# Oops, lockdep, KASAN, hung task), 2 for bad usage.
# The console log, per-scenario results (results.tsv) and KUnit results stay in
# target/vm/last/.
set -euo pipefail
orig_args=("$@")
. "$(dirname "$0")/../../ci/lib.sh"

build=1 build_only=0 disk_mib=512 big_mib=1024 keep=0 disks="" name=last
scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --build-only) build_only=1 ;;
        --name) name=$2; shift ;;
        --disk-mib) disk_mib=$2; shift ;;
        --keep) keep=1 ;;
        --disks) disks=$2; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done

available() { (cd "$BOW_ROOT/tests/vm/scenarios" && ls -- *.sh | sed 's/\.sh$//'); }
case "$name" in ""|*/*|.*) echo "bad --name '$name'" >&2; exit 2 ;; esac
if [ ${#scenarios[@]} -eq 0 ] && [ "$build_only" = 0 ]; then
    echo "usage: tests/vm/run.sh [options] SCENARIO...; available scenarios:" >&2
    available | sed 's/^/  /' >&2
    exit 2
fi
for s in "${scenarios[@]}"; do
    if [ ! -f "$BOW_ROOT/tests/vm/scenarios/${s%%:*}.sh" ]; then
        echo "unknown scenario '$s'; available scenarios:" >&2
        available | sed 's/^/  /' >&2
        exit 2
    fi
done

# BOW_KERNEL (ci/lib.sh) picks the kernel: x86_64 (default) or arm64-4k,
# arm64-16k under qemu-system-aarch64 (run in target/vm-<kernel>/).
vm=$(vm_dir)
image=$(basename "$(kernel_image)")
mkdir -p "$vm"
# Results of an earlier run must never be counted for this one: clear them
# before anything can fail, and drop the artifacts a build replaces, so a
# failed build leaves nothing stale to boot or to replay.
run=$vm/$name
[ "$build_only" = 1 ] || rm -rf "$run"
if [ "$build" = 1 ]; then
    rm -f "$vm/$image" "$vm/dm-bow.ko" "$vm/bowctl"
    kb=$(bash "$BOW_ROOT/ci/build-kernel.sh")
    ko=$(bash "$BOW_ROOT/ci/build-module.sh")
    if [ "$(kernel_arch)" = x86_64 ]; then
        bowctl=$(bash "$BOW_ROOT/ci/build-bowctl.sh")
    else
        bowctl=$(bash "$BOW_ROOT/ci/build-bowctl-aarch64.sh")
    fi
    cp "$kb/$(kernel_image)" "$vm/$image"
    cp "$ko" "$vm/dm-bow.ko"
    cp "$bowctl" "$vm/bowctl"
fi
[ -f "$vm/$image" ] && [ -f "$vm/dm-bow.ko" ] || die "nothing built yet (run without --no-build)"
[ "$build_only" = 0 ] || exit 0
# The initramfs is cheap: always rebuilt, so scenario edits are picked up.
# An arm64 guest gets Debian's arm64 binaries of the same tools.
userland=""
[ "$(kernel_arch)" = x86_64 ] || userland=$(bash "$BOW_ROOT/ci/build-arm64-userland.sh")
mkdir -p "$run"
bash "$BOW_ROOT/ci/build-initramfs.sh" "$vm/dm-bow.ko" "$vm/bowctl" "$run/initramfs.cpio.gz" ${userland:+"$userland"}
drives=()
[ -z "$disks" ] || mkdir -p "$disks"
for i in 1 2 3 4; do
    img=$run/disk$i.img
    size=$disk_mib
    [ $i = 3 ] && size=$big_mib
    [ $i = 4 ] && size=3072
    if [ -n "$disks" ]; then
        img=$disks/disk$i.img
        [ -f "$img" ] || truncate -s "${size}M" "$img"
    else
        truncate -s "${size}M" "$img"
    fi
    # Explicit devices, so the guest names them vda, vdb, ... in this order.
    drives+=(-drive "file=$img,format=raw,if=none,id=d$i,discard=unmap" -device "virtio-blk-pci,drive=d$i")
done
# /dev/vde: 64 MiB on a virtio disk that offers no discard at all.
truncate -s 64M "$run/disk5.img"
drives+=(-drive "file=$run/disk5.img,format=raw,if=none,id=d5" -device "virtio-blk-pci,drive=d5,discard=off")

# Per-scenario time limits: a "# timeout: N" line in the scenario, else 300 s.
declare -A limit
total=120
for s in "${scenarios[@]}"; do
    limit[$s]=$(scenario_limit "$s")
    total=$(( total + ${limit[$s]} ))
done
list=$(IFS=,; echo "${scenarios[*]}")

console=$run/console.log
log "booting the $BOW_KERNEL VM for: ${scenarios[*]} (console: $console)"
if [ "$(kernel_arch)" = x86_64 ]; then
    machine=(qemu-system-x86_64 -accel tcg -cpu "$X86_CPU" -smp "$(x86_smp 2)") tty=ttyS0
else
    # pauth-impdef: the cheap pointer-authentication algorithm (QARMA is slow
    # to emulate); the guest sees the same feature.
    machine=(qemu-system-aarch64 -accel tcg -M virt -cpu "max,pauth-impdef=on" -smp 2) tty=ttyAMA0
fi
"${machine[@]}" -m 1536 \
    -nographic -no-reboot -monitor "unix:$run/monitor.sock,server=on,wait=off" -serial "file:$console" \
    -kernel "$vm/$image" -initrd "$run/initramfs.cpio.gz" \
    -append "console=$tty panic=-1 oops=panic loglevel=7 bow.run=$list bow.seed=${BOW_CRASH_SEED:-1}" \
    -gdb "unix:$run/gdb.sock,server=on,wait=off" \
    "${drives[@]}" </dev/null >"$run/qemu.out" 2>&1 &
qpid=$!

# monitor <command>...: each command's answer from qemu's human monitor
# (its socket, $run/monitor.sock), with the prompt and echo left out; a
# monitor that does not answer in 10 s says so (qemu itself stalled).
monitor() {
    python3 - "$run/monitor.sock" "$@" <<'PY'
import re, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
def until_prompt():
    buf = b""
    while not buf.endswith(b"(qemu) "):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", buf.decode(errors="replace"))
try:
    s.connect(sys.argv[1])
    until_prompt()
    for c in sys.argv[2:]:
        s.sendall(c.encode() + b"\n")
        out = until_prompt().splitlines()
        print("(qemu) " + c)
        print("\n".join(l for l in out[1:] if l != "(qemu) "))
except OSError as e:
    print("the monitor did not answer (%s): qemu itself is stalled" % e)
PY
}

# hang_report: where each vCPU of a guest that stopped making progress is,
# read through qemu's gdb stub with the kernel's symbols, into
# $run/hang-report.txt and on stderr. A guest silent on its console with no
# kernel report (no soft lockup, no hung task) is either spinning with
# interrupts off (IF clear in a vCPU's flags), blocked where no detector
# looks, or without its timer tick: every detector, and the scenario's own
# `sleep`, runs off the tick (the guest's clocksource is jiffies). So the
# report first reads the guest's jiffies twice, 5 s apart, through qemu's
# monitor without stopping the guest, with the timer's state (`info lapic`
# on x86_64), then stops it for each vCPU's backtrace, registers and stack.
hang_report() {
    local gdb vmlinux jiffies j1 j2
    vmlinux=$(kernel_build)/vmlinux
    jiffies=$(awk '$3 == "jiffies_64" { print $1; exit }' "$(kernel_build)/System.map" 2>/dev/null)
    : > "$run/hang-report.txt"
    if [ -S "$run/monitor.sock" ]; then
        local first=(info\ status) then=()
        [ -n "$jiffies" ] && first+=("x /1gx 0x$jiffies") then+=("x /1gx 0x$jiffies")
        [ "$(kernel_arch)" = x86_64 ] && then+=("info lapic 0" "info lapic 1")
        then+=("info irq" "info pic")
        { monitor "${first[@]}"; sleep 5; monitor "${then[@]}"; } >> "$run/hang-report.txt" 2>&1
        if [ -n "$jiffies" ]; then
            # The two reads' answers ("<address>: <value>"), in order.
            read -r j1 j2 < <(grep -A1 "^(qemu) x /1gx" "$run/hang-report.txt" | sed -n 's/^[0-9a-f]*: *//p' | tr '\n' ' ') || true
            if [ -n "$j1" ] && [ "$j1" = "$j2" ]; then
                echo "==> the guest's jiffies did not advance in 5 s ($j1): its timer tick has stopped" >&2
            else
                echo "==> the guest's jiffies, 5 s apart: ${j1:-?} then ${j2:-?}" >&2
            fi
        fi
    fi
    gdb=$(command -v gdb-multiarch || command -v gdb || true)
    [ -n "$gdb" ] && [ -S "$run/gdb.sock" ] || { echo "NOTE: no gdb or gdb stub: no backtraces in the hang report" >&2; return 0; }
    [ -f "$vmlinux" ] || vmlinux=""
    timeout 120 "$gdb" -batch -nx ${vmlinux:+"$vmlinux"} \
        -ex "target remote $run/gdb.sock" -ex 'info threads' \
        -ex 'thread apply all bt 40' -ex 'thread apply all info registers' \
        -ex 'thread apply all x/64a $sp' \
        >> "$run/hang-report.txt" 2>&1 || true
    echo "==> where the guest's vCPUs were (full report: $run/hang-report.txt):" >&2
    grep -E '^(Thread|#[0-9])' "$run/hang-report.txt" | head -60 | sed 's/^/    /' >&2 || true
}

# Watchdog: kill the guest when a scenario (or the boot) overruns its limit.
timed_out=""
boot_start=$(date +%s)
current="" current_start=0
while kill -0 "$qpid" 2>/dev/null; do
    sleep 2
    now=$(date +%s)
    last=$(grep -a -o 'BOW-SCENARIO-START [A-Za-z0-9_:-]*' "$console" 2>/dev/null | tail -1 | cut -d' ' -f2 || true)
    if [ -n "$last" ] && [ "$last" != "$current" ]; then
        current=$last current_start=$now
    fi
    if [ -z "$current" ] && [ $(( now - boot_start )) -gt 120 ]; then
        timed_out="boot (no scenario started within 120 s)"
    elif [ -n "$current" ] && ! grep -aq "BOW-SCENARIO-END $current " "$console" \
         && [ $(( now - current_start )) -gt "${limit[$current]}" ]; then
        timed_out="scenario $current (over its ${limit[$current]} s limit)"
    elif [ $(( now - boot_start )) -gt "$total" ]; then
        timed_out="the whole run (over $total s)"
    fi
    if [ -n "$timed_out" ]; then
        echo "TIMEOUT: killing the guest: $timed_out" | tee -a "$console" >&2
        hang_report
        kill "$qpid" 2>/dev/null || true
        sleep 1
        kill -9 "$qpid" 2>/dev/null || true
        break
    fi
done
wait "$qpid" 2>/dev/null || true

# The guest's init runs no scenario when the kernel reported a problem while
# it booted, before any test code (the module included) was loaded: a rare
# report inside the kernel's own early boot under TCG. Such a boot touched no
# disk, so it is tried again, up to three boots in all; each report is kept,
# and a third one fails the run like any other. (The one seen: KASAN
# "wild-memory-access in do_raw_spin_lock" from handle_edge_irq during
# identify_boot_cpu, at 1.6-2.3 s, in 3 of about 40 boots on 2026-12-01, two
# of them in a row while another VM loaded the host.)
tries=${BOW_VM_RETRIED:-0}
if grep -aq '^BOW-EARLY-KERNEL-REPORT' "$console" && [ "$tries" -lt 2 ]; then
    keep_log=$vm/early-boot-report-$name-$(date +%Y%m%d-%H%M%S).log
    cp "$console" "$keep_log"
    echo "NOTE: the kernel reported a problem during early boot, before any test code ran (kept in $keep_log); booting once more" >&2
    BOW_VM_RETRIED=$((tries + 1)) exec bash "$0" --no-build "${orig_args[@]}"
fi

# Kernel reports that fail the run whatever the scenarios said.
splat_re=$KERNEL_REPORT_RE
splats=$(grep -a -E "$splat_re" "$console" || true)

results=$run/results.tsv
: > "$results"
# Another kernel's results carry its name: "arm64-16k basic".
tag=""
[ "$BOW_KERNEL" = x86_64 ] || tag="$BOW_KERNEL "
status=0
for s in "${scenarios[@]}"; do
    rc=$(grep -a -o "BOW-SCENARIO-END $s rc=[0-9]*" "$console" | tail -1 | sed 's/.*rc=//' || true)
    if [ "$rc" = 0 ]; then r=pass; else r=fail; status=1; fi
    [ -n "$rc" ] || rc="none (did not finish)"
    printf 'scenario\t%s\t%s\n' "$s" "$r" >> "$results"
    # Each check inside the scenario is reported too.
    tr -d '\r' < "$console" | sed -n "/^BOW-SCENARIO-START $s\$/,/^BOW-SCENARIO-END $s /p" \
        | sed -n 's/^BOW-CHECK \(ok\|FAIL\) \(.*\)/\1\t\2/p' \
        | while IFS=$'\t' read -r verdict what; do
            [ "$verdict" = ok ] && v=pass || v=fail
            printf 'check\t%s: %s\t%s\n' "$s" "$what" "$v"
        done >> "$results"
    secs=$(grep -a -o "BOW-SCENARIO-END $s rc=[0-9]* secs=[0-9]*" "$console" | tail -1 | sed 's/.*secs=//' || true)
    # Checks made against the checks the scenario makes when it runs to its
    # end: a finished scenario that made fewer dropped some without a word;
    # one cut short leaves the rest not run.
    made=$(tr -d '\r' < "$console" | sed -n "/^BOW-SCENARIO-START $s\$/,/^BOW-SCENARIO-END $s /p" | grep -a -c '^BOW-CHECK ' || true)
    want=$(expected_checks "$s")
    if [ "$rc" = "none (did not finish)" ]; then
        printf 'notrun\t%s\t%s\n' "$s" $(( want > made ? want - made : 1 )) >> "$results"
    elif [ "$want" -gt 0 ] && [ "$made" -lt "$want" ]; then
        printf 'check\t%s: made only %s of its %s checks\tfail\n' "$s" "$made" "$want" >> "$results"
        r=fail status=1
    fi
    echo "$(tr a-z A-Z <<<"$r"): scenario $tag$s (rc=$rc${secs:+, $secs s of ${limit[$s]} s})"
    tr -d '\r' < "$console" | sed -n "/^BOW-SCENARIO-START $s\$/,/^BOW-SCENARIO-END $s /p" | grep -a "BOW-CHECK FAIL" \
        | sed 's/^/    /' | head -50 || true
done

# KUnit: KTAP lines, possibly prefixed by printk timestamps. The suite runs
# at every insmod; each case is counted once per module build (the worst
# result of its runs). Cases are indented one level deeper than "ok N
# <suite>" at the top level.
sed -E 's/^\[ *[0-9.]+\] //' "$console" | tr -d '\r' | awk '
    /^ +# Subtest: / { suite = $3; next }
    /^ +(not )?ok [0-9]+ / && suite != "" {
        res = ($1 == "not") ? "fail" : "pass"
        name = ($1 == "not") ? $4 : $3
        if ($0 ~ /# SKIP/) res = "skip"
        key = suite "." name
        if (!(key in r) || res == "fail" || (res == "skip" && r[key] == "pass")) r[key] = res
    }
    /^(not )?ok [0-9]+ / { suite = "" }
    END { for (k in r) printf "kunit\t%s\t%s\n", k, r[k] }' | sort >> "$results" || true
kpass=$(grep -c $'^kunit\t.*\tpass$' "$results" || true)
kfail=$(grep -c $'^kunit\t.*\tfail$' "$results" || true)
kskip=$(grep -c $'^kunit\t.*\tskip$' "$results" || true)
[ "$kfail" = 0 ] || status=1
# Every boot loads the module, which runs the suite: no result means it did
# not run (or its output went unread), which is a failure.
if [ $((kpass + kfail + kskip)) = 0 ]; then
    printf 'kunit\tKTAP results in the console\tfail\n' >> "$results"
    status=1
fi
echo "${tag}KUnit: $kpass passed, $kfail failed, $kskip skipped (each case once)"

# A named run's own rows say which guest they are about.
which=""
[ "$name" = last ] || which=" ($name)"
if [ -n "$timed_out" ]; then
    echo "FAIL: timeout in $timed_out"
    printf 'vm\ttimeout%s\tfail\n' "$which" >> "$results"
    status=1
fi
if [ -n "$splats" ]; then
    echo "FAIL: the console shows kernel reports:"
    sed 's/^/    /' <<<"$splats" | head -20
    printf 'vm\tconsole-clean%s\tfail\n' "$which" >> "$results"
    status=1
else
    printf 'vm\tconsole-clean%s\tpass\n' "$which" >> "$results"
fi
if [ -n "$tag" ]; then
    awk -F'\t' -v OFS='\t' -v tag="$tag" '{ $2 = tag $2; print }' "$results" > "$results.tmp" && mv "$results.tmp" "$results"
fi
# disk4 holds the crash recordings, which tests/crash/run.sh reads afterwards.
[ "$keep" = 1 ] || rm -f "$run"/disk[1235].img
exit $status
