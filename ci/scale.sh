#!/usr/bin/env bash
# The scale measurements: boots the test VM for the `scale` scenario at each
# count of free extents, collects its BOW-SCALE lines into
# target/scale/scale.txt, and draws the plots of memory and time against
# extents (ci/plots.sh; `ci/plots.sh --docs` puts them in docs/img/).
# Under TCG the million-extent run alone takes about 21 min.
#
# usage: ci/scale.sh [N ...]   (default: 1000 10000 100000 and every odd
#   block of the 1 GiB disk, 1040383)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$BOW_ROOT/ci/setup.sh"
[ $# -gt 0 ] || set -- 1000 10000 100000 max
out=$BOW_ROOT/target/scale
mkdir -p "$out"
echo "# $(date -u +%Y-%m-%d), commit $(git -C "$BOW_ROOT" rev-parse --short HEAD), kernel $(basename "$(kernel_build)")" > "$out/scale.txt"
for n in "$@"; do
    s=scale:$n
    [ "$n" = max ] && s=scale
    # One boot per count, so each starts with the same slab.
    bash "$BOW_ROOT/tests/vm/run.sh" "$s" || die "the scale scenario failed for $n (console: $BOW_ROOT/target/vm/last/console.log)"
    tr -d '\r' < "$BOW_ROOT/target/vm/last/console.log" | sed -n 's/^BOW-SCALE //p' >> "$out/scale.txt"
done
cat "$out/scale.txt"
bash "$BOW_ROOT/ci/plots.sh"
