#!/usr/bin/env bash
# The update lifecycle across real boots: runs the `update` scenario's six
# stages, each in its own boot of the VM on the same disks (two of them end
# in a power cut). Results of every boot go to target/vm/update/results.tsv.
#
# usage: tests/vm/update.sh [--no-build] [--narrate]
#   --narrate: print what the guest said at each boot (the README's demo)
set -euo pipefail
. "$(dirname "$0")/../../ci/lib.sh"
build=() narrate=0
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=(--no-build) ;;
        --narrate) narrate=1 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done
disks=$BOW_ROOT/target/vm/update-disks
out=$BOW_ROOT/target/vm/update
rm -rf "$disks" "$out"
mkdir -p "$out"
: > "$out/results.tsv"
status=0
start=$(date +%s)
for stage in 1 2 3 4 5 6; do
    t0=$(date +%s)
    if bash "$BOW_ROOT/tests/vm/run.sh" "${build[@]}" --disks "$disks" "update:$stage" > "$out/boot$stage.run" 2>&1; then rc=0; else rc=$?; fi
    build=(--no-build)
    cp "$BOW_ROOT/target/vm/last/console.log" "$out/boot$stage.console.log" 2>/dev/null || true
    sed "s/^scenario\tupdate:$stage/scenario\tupdate boot $stage/; s/^check\tupdate:$stage:/check\tupdate boot $stage:/; s/^notrun\tupdate:$stage/notrun\tupdate boot $stage/" \
        "$BOW_ROOT/target/vm/last/results.tsv" 2>/dev/null | grep -v '^kunit' >> "$out/results.tsv" || true
    if [ "$narrate" = 1 ]; then
        tr -d '\r' < "$out/boot$stage.console.log" \
            | sed -n "/^BOW-SCENARIO-START update:$stage\$/,/^BOW-SCENARIO-END update:$stage /p" \
            | grep -v -e '^\[' -e '^BOW-SCENARIO' -e '^scenario:' | sed 's/^BOW-CHECK ok /  ok: /; s/^BOW-CHECK FAIL /  FAILED: /'
        echo "  (boot $stage: $(( $(date +%s) - t0 )) s)"
    fi
    if [ "$rc" != 0 ]; then
        grep -E '^(FAIL|TIMEOUT|PASS)' "$out/boot$stage.run" >&2 || tail -5 "$out/boot$stage.run" >&2
        echo "FAILED: update boot $stage (run.sh exited $rc); later boots not run" >&2
        printf 'check\tupdate boot %s: run.sh exited %s\tfail\n' "$stage" "$rc" >> "$out/results.tsv"
        for later in $(seq $((stage + 1)) 6); do
            printf 'notrun\tupdate boot %s\t%s\n' "$later" "$(n=$(expected_checks "update:$later"); echo $(( n > 0 ? n : 1 )))" >> "$out/results.tsv"
        done
        status=1
        break
    fi
done
echo "update lifecycle: $(grep -c $'\tpass$' "$out/results.tsv") passed, $(grep -c $'\tfail$' "$out/results.tsv") failed in $(( $(date +%s) - start )) s"
exit $status
