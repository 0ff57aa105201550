#!/usr/bin/env bash
# The host half of the crash campaign (spec 7): reads the recordings that the
# `crash` VM scenario left on /dev/vdd (target/vm/last/disk4.img), rebuilds the
# crash states of each, restores them with the shared restore code, checks them
# against the checkpoint image and runs fsck on a sample. Prints a table and
# ends with "crash: N states, N passed, N failed".
#
# usage: tests/crash/run.sh [--limit N] [--subsets N] [--fsck-every N] [--seed N]
#   --limit: cuts per phase and case before sampling (default 500; a large
#            campaign: --limit 100000 --subsets 8)
set -euo pipefail
. "$(dirname "$0")/../../ci/lib.sh"
cd "$BOW_ROOT"
limit=500 subsets=2 fsck_every=40 seed=1
while [ $# -gt 0 ]; do
    case "$1" in
        --limit) limit=$2; shift ;;
        --subsets) subsets=$2; shift ;;
        --fsck-every) fsck_every=$2; shift ;;
        --seed) seed=$2; shift ;;
        *) die "unknown option $1" ;;
    esac
    shift
done
img=${BOW_CRASH_IMG:-target/vm/last/disk4.img}
[ -f "$img" ] || die "no recordings: run tests/vm/run.sh crash first"
out=target/crash
rm -rf "$out"; mkdir -p "$out"
cargo build --quiet --release --locked -p bow-crash -p bowctl
tool=target/release/bow-crash
start=$(date +%s)
: > "$out/report.jsonl"
status=0
# fail_row <label> <why>: a case with nothing replayed, one failed row.
fail_row() {
    python3 -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "entries": 0, "phases": [], "failures": [sys.argv[1] + ": " + sys.argv[2]]}))' \
        "$1" "$2" >> "$out/report.jsonl"
    status=1
}
for slot in 0 1 2 3 4 5 6 7 8; do
    meta=$(dd if="$img" bs=1M skip=$(( 2560 + slot )) count=1 2>/dev/null | tr -d '\0')
    # The scenario records slots 0-8 in order; a slot without a record is a
    # case that was never recorded (the scenario stopped early): a failure.
    if [ -z "$meta" ]; then
        fail_row "slot $slot" "no recording (the crash scenario did not record this case)"
        continue
    fi
    get() { printf '%s\n' "$meta" | sed -n "s/^$1=//p"; }
    label=$(get label)
    printf '%s\n' "$meta" | grep -q '^end$' || { fail_row "$label" "incomplete record"; continue; }
    dir=$out/$label
    mkdir -p "$dir"
    printf '%s\n' "$meta" | grep -v '^free=' > "$dir/meta"
    get free > "$dir/free"
    dd if="$img" of="$dir/base.img" bs=1M skip=$(( 1280 + slot * 64 )) count="$(get mib)" 2>/dev/null
    dd if="$img" of="$dir/ref.img" bs=1M skip=$(( 2592 + slot * 48 )) count="$(get mib)" 2>/dev/null
    if [ "$(get commit)" = 1 ]; then
        dd if="$img" of="$dir/view.img" bs=1M skip=$(( 1920 + slot * 64 )) count="$(get mib)" 2>/dev/null
    fi
    # The whole slot: dm-log-writes logs asynchronously, so the size its
    # status showed before the removal can be short of the recording that
    # the removal completes (the log's super block bounds the entries).
    dd if="$img" of="$dir/log.bin" bs=1M skip=$(( slot * 128 )) count=128 conv=sparse 2>/dev/null
    log "crash states of $label"
    # A case that cannot be loaded (a missing mark, say) is one failed row.
    if ! "$tool" run "$dir" --fs "$(get fs)" --limit "$limit" --subsets "$subsets" \
            --fsck-every "$fsck_every" --seed "$seed" --bowctl target/release/bowctl \
            > "$dir/report.json" 2> "$dir/stderr"; then
        status=1
    fi
    if [ -s "$dir/report.json" ]; then
        cat "$dir/report.json" >> "$out/report.jsonl"
    else
        fail_row "$label" "not replayed: $(tail -1 "$dir/stderr")"
    fi
    cat "$dir/stderr" >&2
done
secs=$(( $(date +%s) - start ))
python3 - "$out/report.jsonl" "$secs" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'case':<16} {'phase':<8} {'entries':>8} {'tried':>6} {'passed':>6} {'failed':>6} {'no log':>6} {'fsck':>9} {'bowctl':>6} {'files':>5}")
t = p = f = rows_n = bad_rows = 0
for r in rows:
    if not r["phases"]:
        # A case that was not recorded or could not be replayed: one failed row.
        print(f"{r['label']:<16} {'-':<8} {r['entries']:>8} {0:>6} {0:>6} {1:>6}")
        rows_n += 1; bad_rows += 1; f += 1
    for ph in r["phases"]:
        failed = ph['failed'] + ph['fsck_failed']
        # A phase in which no state was tried checked nothing: a failure.
        if ph['tried'] == 0:
            failed += 1
            r["failures"].append(f"{r['label']}: phase {ph['phase']}: no crash state tried")
        print(f"{r['label']:<16} {ph['phase']:<8} {r['entries']:>8} {ph['tried']:>6} {ph['passed']:>6} {failed:>6} {ph['no_log']:>6} {ph['fsck_runs'] - ph['fsck_failed']:>4}/{ph['fsck_runs']:<4} {ph['bowctl_runs']:>6} {ph['files_compared']:>5}")
        t += ph["tried"]; p += ph["passed"] - ph["fsck_failed"]; f += failed
        rows_n += 1; bad_rows += failed > 0
    if r.get("baseline_fsck_clean") is False:
        print(f"  note: fsck -n of {r['label']}'s frozen checkpoint image itself reports its unreplayed log; restored states must report the same")
    for fl in r["failures"][:5]:
        print("FAILED:", fl)
print(f"crash: {t} states, {p} passed, {f} failed ({sys.argv[2]} s on the host)")
print(f"crash-rows: {rows_n} {bad_rows}")
PY
exit $status
