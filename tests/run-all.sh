#!/usr/bin/env bash
# Runs every test of the project and ends with one line: N passed, N failed.
#   1. host: cargo test of the workspace (shared core, bowctl), then the lint
#      (ci/lint.sh: kernel rustfmt and CLIPPY=1, checkpatch, shellcheck,
#      cargo fmt and clippy), each tool one check; then the protocol's
#      model, checked with spin (tests/model/run.sh); then the Android SELinux
#      policy example, compiled (tests/sepolicy/run.sh); then the install path
#      against the test kernel's tree (ci/install-test.sh: make, make
#      install, DKMS, and the errors without CONFIG_RUST or LLVM)
#   2. kernel: builds the test kernel (cached) and the module
#   3. VM: every scenario, split between two x86_64 guests that run at once;
#      KUnit runs when the module loads
#   3b. arm64: the same module on arm64 kernels with 4 KiB and 16 KiB pages,
#      a subset of the scenarios in each
#   4. crash campaign: the host replays the crash states the `crash` scenario
#      recorded (tests/crash/run.sh), once the first guest is done; each case
#      and phase counts as one check
#   5. update lifecycle: six boots of one VM, two ending in a power cut
#      (tests/vm/update.sh), after the second guest; each check of each boot
#      counts
#   5b. the systemd guest: six boots of a Debian guest with systemd as PID 1,
#      the example units and RAUC, two ending in a power cut
#      (tests/vm/systemd.sh), in a background line of its own from the end
#      of the x86_64 build; each check of each boot counts (boot 2 is first
#      stopped by a kernel report the test asks for, and checks that it was
#      booted again on the disks as they were)
#   6. xfstests, when XFSTESTS_SRC names a checkout (tests/xfstests/run.sh,
#      docs/xfstests.md): the curated list, then the dm-log-writes list;
#      otherwise reported as not run, never as passed
# Installs what it needs first (ci/setup.sh).
set -uo pipefail
. "$(dirname "$0")/../ci/lib.sh"
cd "$BOW_ROOT" || exit 1

bash ci/setup.sh || die "setup failed"

passed=0 failed=0 notrun=0
# Live-transition rounds per filesystem in each arm64 guest (the x86_64
# guest runs 20).
ARM64_LIVE_ROUNDS=${ARM64_LIVE_ROUNDS:-6}
report=$BOW_ROOT/target/test-report.txt
mkdir -p target
: > "$report"

# add_tsv <what> <results.tsv> <exit status>: counts the tsv's pass and fail
# lines (name<TAB>...<TAB>pass|fail) and reports its failures; a non-zero
# status with no failing line, or no results at all, is one failure more.
# "notrun<TAB>what<TAB>N" lines count N checks that never ran.
add_tsv() {
    local what=$1 tsv=$2 st=$3 p=0 f=0 n=0
    if [ -s "$tsv" ]; then
        p=$(grep -c $'\tpass$' "$tsv" || true)
        f=$(grep -c $'\tfail$' "$tsv" || true)
        n=$(awk -F'\t' '$1 == "notrun" { n += $3 } END { print n + 0 }' "$tsv")
        notrun=$((notrun + n))
        grep $'\tfail$' "$tsv" | sed 's/^/FAILED: /' >> "$report" || true
        awk -F'\t' '$1 == "notrun" { print "NOT RUN: " $2 " (" $3 " checks)" }' "$tsv" >> "$report"
    else
        echo "FAILED: the $what produced no results (status $st)" >> "$report"
        f=1
    fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$st" != 0 ] && [ "$f" = 0 ]; then
        echo "FAILED: $what exited $st" >> "$report"
        failed=$((failed + 1))
    fi
}

# --- arm64 guests (started now, in the background) ---------------------------
# The lean arm64 kernels, 4 KiB and 16 KiB pages (ci/kernel/arm64/), boot
# under qemu-system-aarch64 with Debian's arm64 tools and the aarch64 bowctl.
# With 16 KiB pages a page holds several blocks: basic and raw (block 0's
# live copy, restore), tester2018 (the sub-page I/O of the 2018 crash),
# edge (block sizes 512 to 4096, held bios), filesystems (ext4, xfs, vfat),
# and the live transitions under load with restores by the aarch64 bowctl.
# They build and run beside the x86_64 steps below: a TCG guest keeps about
# one core busy, so the two lines of work share the machine's two cores
# (docs/testing.md has the times). Their results are counted after the
# x86_64 VM run.
ARM64_KERNELS=(arm64-4k arm64-16k)
ARM64_SCENARIOS=(basic raw tester2018 edge filesystems "live:$ARM64_LIVE_ROUNDS")
arm64_log=$BOW_ROOT/target/arm64-guests.log
for k in "${ARM64_KERNELS[@]}"; do
    rm -rf "$BOW_ROOT/target/arm64-$k.status" "$BOW_ROOT/target/install-$k.status" "$BOW_ROOT/target/install-$k"
done
(
    for k in "${ARM64_KERNELS[@]}"; do
        log "VM scenarios on $k: ${ARM64_SCENARIOS[*]}"
        if BOW_KERNEL=$k bash tests/vm/run.sh "${ARM64_SCENARIOS[@]}"; then st=0; else st=$?; fi
        echo "$st" > "$BOW_ROOT/target/arm64-$k.status"
        # The install path against this kernel's tree: make, make install
        # and DKMS cross-building for arm64.
        log "install: make, make install, DKMS against the $k tree"
        if BOW_KERNEL=$k bash ci/install-test.sh; then st=0; else st=$?; fi
        echo "$st" > "$BOW_ROOT/target/install-$k.status"
    done
) > "$arm64_log" 2>&1 &
arm64_pid=$!

# --- the systemd guest (started now, in the background) ------------------------
# It boots the kernel, module and bowctl that the foreground builds for the
# x86_64 guests, so it waits for that build (or for the test command to end
# without one), then runs beside the x86_64 guests: the longest single job
# after the kernel builds, started as early as it can be, so that it is not
# what the test command waits for at its end.
systemd_log=$BOW_ROOT/target/systemd-guest.log
rm -rf "$BOW_ROOT/target/vm-build.status" "$BOW_ROOT/target/systemd.status" "$BOW_ROOT/target/vm/systemd"
(
    while [ ! -f "$BOW_ROOT/target/vm-build.status" ] && kill -0 $$ 2>/dev/null; do sleep 5; done
    if [ "$(cat "$BOW_ROOT/target/vm-build.status" 2>/dev/null)" = 0 ]; then
        log "systemd guest: six boots with systemd as PID 1, the example units and RAUC (tests/vm/systemd.sh)"
        # Boot 2's first try stops on a kernel report the test asks for, to
        # check the early-boot retry (tests/vm/systemd.sh).
        if BOW_SYSTEMD_EARLY_REPORT=2 bash tests/vm/systemd.sh --no-build; then st=0; else st=$?; fi
    else
        log "systemd guest: not booted, the x86_64 build failed"
        st=build
    fi
    echo "$st" > "$BOW_ROOT/target/systemd.status"
) > "$systemd_log" 2>&1 &
systemd_pid=$!

# --- host tests ------------------------------------------------------------
log "cargo test --workspace"
cargo_out=$BOW_ROOT/target/cargo-test.log
cargo test --workspace --locked 2>&1 | tee "$cargo_out" | grep -E '^test result:|FAILED|panicked' || true
cargo_status=${PIPESTATUS[0]}
while read -r p f; do
    passed=$((passed + p)); failed=$((failed + f))
done < <(sed -n 's/^test result: .*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$cargo_out")
if [ "$cargo_status" != 0 ] && ! grep -q '^test result: FAILED' "$cargo_out"; then
    echo "cargo test did not run (build failure?)" | tee -a "$report"
    failed=$((failed + 1))
fi

# --- lint ------------------------------------------------------------------
log "lint (ci/lint.sh)"
if bash ci/lint.sh; then lint_status=0; else lint_status=$?; fi
add_tsv "lint" "$BOW_ROOT/target/lint/results.tsv" "$lint_status"

# --- the protocol, model-checked ---------------------------------------------
log "model: spin on tests/model/bow.pml"
if bash tests/model/run.sh; then model_status=0; else model_status=$?; fi
add_tsv "model check" "$BOW_ROOT/target/model/results.tsv" "$model_status"

# --- the Android SELinux policy example ------------------------------------------
log "sepolicy: checkpolicy, secilc and sefcontext_compile on examples/android/sepolicy"
if bash tests/sepolicy/run.sh; then sepolicy_status=0; else sepolicy_status=$?; fi
add_tsv "sepolicy check" "$BOW_ROOT/target/sepolicy/results.tsv" "$sepolicy_status"

# --- the install path ---------------------------------------------------------
log "install: make, make install, DKMS, and the errors (ci/install-test.sh)"
if bash ci/build-kernel.sh > /dev/null && bash ci/install-test.sh; then inst_status=0; else inst_status=$?; fi
add_tsv "install test" "$BOW_ROOT/target/install/results.tsv" "$inst_status"

# --- VM tests --------------------------------------------------------------
# Scenarios marked "# multiboot" need several boots; the update lifecycle
# below runs them. Those marked "# manual" are measurements too long for the
# test command (docs/testing.md says how to run them).
# A TCG guest keeps about one host core busy, so the scenarios run in two
# x86_64 guests at once (target/vm/vm1, target/vm/vm2), split by their
# measured costs (each scenario's "# cost:" line, else its time limit):
# longest first, each to the guest with less so far. The guest with `crash` goes on
# to the host's replay of its recordings, the other to the update lifecycle:
# each starts with that in its sum (seconds in the warm run of 2026-12-02).
mapfile -t scenarios < <(cd tests/vm/scenarios && grep -L -e '^# multiboot' -e '^# manual' -- *.sh | sed 's/\.sh$//')
vm1=() vm2=() w1=456 w2=179
while read -r _ t s; do
    # crash always to vm1, whose disk the replay reads.
    if [ "$s" = crash ] || [ "$w1" -le "$w2" ]; then vm1+=("$s") w1=$((w1 + t)); else vm2+=("$s") w2=$((w2 + t)); fi
done < <(for s in "${scenarios[@]}"; do
             [ "$s" = crash ] && r=0 || r=1
             echo "$r $(scenario_cost "$s") $s"
         done | sort -k1,1n -k2,2nr -k3,3)
log "VM: building the kernel, the module and bowctl for the x86_64 guests"
if bash tests/vm/run.sh --build-only; then vm_build=0; else vm_build=$?; fi
echo "$vm_build" > "$BOW_ROOT/target/vm-build.status"
vm2_log=$BOW_ROOT/target/vm-guest2.log
rm -f "$BOW_ROOT/target/vm2.status" "$BOW_ROOT/target/update.status"
log "VM scenarios, second guest (log: $vm2_log): ${vm2[*]}, then the update lifecycle"
(
    if bash tests/vm/run.sh --no-build --name vm2 "${vm2[@]}"; then st=0; else st=$?; fi
    echo "$st" > "$BOW_ROOT/target/vm2.status"
    # The update lifecycle: six boots of one VM (target/vm/last), two
    # ending in a power cut.
    log "update lifecycle: six boots of one VM"
    if bash tests/vm/update.sh --no-build; then st=0; else st=$?; fi
    echo "$st" > "$BOW_ROOT/target/update.status"
) > "$vm2_log" 2>&1 &
vm2_pid=$!
log "VM scenarios, first guest: ${vm1[*]}"
if [ "$vm_build" = 0 ] && bash tests/vm/run.sh --no-build --name vm1 "${vm1[@]}"; then vm1_status=0; else vm1_status=$?; fi
add_tsv "VM run (first guest)" "$BOW_ROOT/target/vm/vm1/results.tsv" "$vm1_status"

# --- crash campaign (host half) ---------------------------------------------
log "crash campaign: replaying the crash states recorded in the first guest"
crash_out=$BOW_ROOT/target/crash-run.log
if BOW_CRASH_IMG=$BOW_ROOT/target/vm/vm1/disk4.img bash tests/crash/run.sh > "$crash_out" 2>&1; then crash_status=0; else crash_status=$?; fi
grep -v -e '^==>' -e '^crash-rows:' "$crash_out" || true
read -r rows bad < <(sed -n 's/^crash-rows: //p' "$crash_out") || true
rows=${rows:-0} bad=${bad:-0}
if [ "${rows:-0}" -gt 0 ]; then
    passed=$((passed + rows - bad)); failed=$((failed + bad))
    grep '^FAILED' "$crash_out" >> "$report" || true
fi
if [ "$crash_status" != 0 ] && [ "$bad" = 0 ]; then
    echo "FAILED: crash campaign exited $crash_status" >> "$report"
    failed=$((failed + 1))
fi

# --- second guest and update lifecycle (collected) -------------------------------
log "waiting for the second x86_64 guest and the update lifecycle (log: $vm2_log)"
wait "$vm2_pid" || true
cat "$vm2_log"
add_tsv "VM run (second guest)" "$BOW_ROOT/target/vm/vm2/results.tsv" "$(cat "$BOW_ROOT/target/vm2.status" 2>/dev/null || echo none)"
add_tsv "update lifecycle" "$BOW_ROOT/target/vm/update/results.tsv" "$(cat "$BOW_ROOT/target/update.status" 2>/dev/null || echo none)"

# --- arm64 guests (collected) --------------------------------------------------
log "waiting for the arm64 guests (started after the setup; log: $arm64_log)"
wait "$arm64_pid" || true
cat "$arm64_log"
for k in "${ARM64_KERNELS[@]}"; do
    a_status=$(cat "$BOW_ROOT/target/arm64-$k.status" 2>/dev/null || echo "none")
    add_tsv "$k VM run" "$BOW_ROOT/target/vm-$k/last/results.tsv" "$a_status"
    i_status=$(cat "$BOW_ROOT/target/install-$k.status" 2>/dev/null || echo "none")
    add_tsv "$k install test" "$BOW_ROOT/target/install-$k/results.tsv" "$i_status"
done

# --- the systemd guest (collected) -----------------------------------------------
log "waiting for the systemd guest (log: $systemd_log)"
wait "$systemd_pid" || true
cat "$systemd_log"
add_tsv "systemd guest" "$BOW_ROOT/target/vm/systemd/results.tsv" "$(cat "$BOW_ROOT/target/systemd.status" 2>/dev/null || echo none)"

# --- xfstests (only with a checkout) ----------------------------------------
if [ -n "${XFSTESTS_SRC:-}" ] && [ -f "$XFSTESTS_SRC/check" ]; then
    log "xfstests: curated list on dm-bow and dm-linear"
    if bash tests/xfstests/run.sh; then xf_status=0; else xf_status=$?; fi
    add_tsv "xfstests run" "$BOW_ROOT/target/xfstests/results.tsv" "$xf_status"
    log "xfstests: dm-log-writes replay (generic/757) on dm-bow and dm-linear"
    lw_out=$BOW_ROOT/target/xfstests-logwrites
    if bash tests/xfstests/run.sh --list logwrites --out "$lw_out"; then lw_status=0; else lw_status=$?; fi
    add_tsv "xfstests log-writes run" "$lw_out/results.tsv" "$lw_status"
else
    echo "xfstests: NOT RUN: XFSTESTS_SRC${XFSTESTS_SRC:+=$XFSTESTS_SRC} does not name an xfstests checkout (see docs/xfstests.md); not counted"
fi

cat "$report"
# Checks that never ran (a scenario cut short, boots not made) are counted
# apart from the failures that stopped them, and fail the run too.
if [ "$notrun" -gt 0 ]; then
    echo "$passed passed, $failed failed, not run: $notrun"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ] && [ "$notrun" = 0 ] && [ "$passed" -gt 0 ]
