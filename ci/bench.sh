#!/usr/bin/env bash
# The benchmark: boots the test VM once and runs the same fio jobs on
# dm-linear, dm-bow and a persistent dm-snapshot (tests/vm/scenarios/bench.sh),
# then prints one table with the ratios of dm-bow to dm-linear and to
# dm-snapshot. Under TCG only ratios within one run mean anything.
#
# usage: ci/bench.sh [OPS [DEPTHS]]   (4 KiB writes per row, default 1024;
#   further first-overwrite queue depths beside 1 and 16, colon-separated,
#   default 2:4:8:32)
# The table is also written to target/bench/table.md, the rows to rows.txt
# and batch.txt, and the plots of IOPS and write amplification against
# queue depth to target/plots/ (ci/plots.sh; `ci/plots.sh --docs` puts them
# in docs/img/).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ops=${1:-1024}
depths=${2:-2:4:8:32}
bash "$BOW_ROOT/ci/setup.sh"
if ! bash "$BOW_ROOT/tests/vm/run.sh" "bench:$ops:$depths"; then
    echo "warning: the bench scenario reported failures (see above); the table shows what was measured" >&2
fi
out=$BOW_ROOT/target/bench
mkdir -p "$out"
console=$BOW_ROOT/target/vm/last/console.log
kernel=$(basename "$(kernel_build)")
run="$(date -u +%Y-%m-%d), commit $(git -C "$BOW_ROOT" rev-parse --short HEAD), $ops writes per row, kernel $kernel"
{
    echo "# $run"
    tr -d '\r' < "$console" | sed -n 's/^BOW-BENCH //p' | grep -v '^target '
} > "$out/rows.txt"
{
    echo "# $run"
    tr -d '\r' < "$console" | sed -n 's/^BOW-BATCH //p'
} > "$out/batch.txt"
[ "$(grep -vc '^#' "$out/rows.txt")" -gt 0 ] || die "the VM printed no benchmark rows (console: $console)"
awk -v ops="$ops" -v kernel="$kernel" -v when="$(date -u +%Y-%m-%d)" '
    /^#/ { next }
    { iops[$1, $2] = $3; wa[$1, $2] = $4; rpw[$1, $2] = $5; fpw[$1, $2] = $6; cpu[$1, $2] = $7; ctx[$1, $2] = $8; if (!seen[$2]++) order[++n] = $2 }
    function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "-" }
    function cell(t, r) { return ((t, r) in iops) ? sprintf("%s | %s | %s | %s | %s | %s", iops[t, r], wa[t, r], rpw[t, r], fpw[t, r], cpu[t, r], ctx[t, r]) : "- | - | - | - | - | -" }
    END {
        printf "Benchmark: %d x 4 KiB per row, O_DIRECT, libaio; kernel %s; %s\n\n", ops, kernel, when
        print "| row | target | IOPS | write amp. | reads/write | flushes/write | CPU ms/io | switches/io |"
        print "|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= n; i++)
            foreach_target(order[i])
        print ""
        print "| row | bow / linear IOPS | bow / snapshot IOPS |"
        print "|---|---|---|"
        for (i = 1; i <= n; i++) {
            r = order[i]
            printf "| %s | %s | %s |\n", r, ratio(iops["bow", r], iops["linear", r]), ratio(iops["bow", r], iops["snapshot", r])
        }
    }
    function foreach_target(r,    t, k, ts) {
        split("linear bow snapshot", ts, " ")
        for (k = 1; k <= 3; k++) {
            t = ts[k]
            if ((t, r) in iops) printf "| %s | %s | %s |\n", r, t, cell(t, r)
        }
    }' "$out/rows.txt" | tee "$out/table.md"
printf '\ncopies per log write (dm-bow):\n'
sed -n 's/^first-qd/QD/p' "$out/batch.txt"
bash "$BOW_ROOT/ci/plots.sh"
