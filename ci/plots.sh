#!/usr/bin/env bash
# Draws the benchmark's pictures as PNG with gnuplot, from measured data only:
#
#   qd-iops.png         first-overwrite IOPS against queue depth: dm-linear,
#                       dm-bow, dm-snapshot (from ci/bench.sh's rows)
#   qd-wa.png           write amplification against queue depth, with the
#                       model's 2 + 1/K line (K = copies per log write) and
#                       the ideal 2 + 1/depth
#   scale-memory.png    kernel memory per extent against free extents (log-log)
#   scale-time.png      checkpoint time (and free_map, removal) against free
#                       extents (log-log), with a line through 10^6 of slope 1
#
# usage: ci/plots.sh [--docs]
#   Inputs: target/bench/rows.txt and batch.txt (written by ci/bench.sh) and
#   target/scale/scale.txt (written by ci/scale.sh); where one is missing,
#   the copy kept in docs/img/. Output: target/plots/, or with --docs,
#   docs/img/ (the data files used are copied there too, so the pictures in
#   docs/performance.md can always be drawn again).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

docs=0
[ "${1:-}" = --docs ] && docs=1
command -v gnuplot >/dev/null || {
    log "installing gnuplot-nox"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >/dev/null
}

img=$BOW_ROOT/docs/img
out=$BOW_ROOT/target/plots
[ $docs = 1 ] && out=$img
mkdir -p "$out"
# pick <file in target/> <name in docs/img>: the newer measurement if there is one.
pick() { if [ -s "$1" ]; then echo "$1"; elif [ -s "$img/$2" ]; then echo "$img/$2"; fi; }
rows=$(pick "$BOW_ROOT/target/bench/rows.txt" bench-rows.txt)
batch=$(pick "$BOW_ROOT/target/bench/batch.txt" bench-batch.txt)
scale=$(pick "$BOW_ROOT/target/scale/scale.txt" scale.txt)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

common='set terminal pngcairo size 900,520 font ",11" noenhanced; set grid; set key top left'
xtics_extents='set xtics ("1,000" 1000, "10,000" 10000, "100,000" 100000, "1,000,000" 1000000)'

if [ -n "$rows" ]; then
    # One line per depth: depth, then IOPS and write amplification of each target.
    awk '$2 ~ /^first-qd[0-9]+$/ { d = substr($2, 9) + 0; seen[d] = 1; iops[$1, d] = $3; wa[$1, d] = $4 }
        END { for (d in seen) print d, iops["linear", d] + 0, iops["bow", d] + 0, iops["snapshot", d] + 0, wa["bow", d] + 0, wa["snapshot", d] + 0 }' \
        "$rows" | sort -n > "$tmp/qd.dat"
    if [ -n "$batch" ]; then
        # depth, copies per log write, log sectors per log write
        sed -n 's/^first-qd\([0-9]*\) copies=\([0-9]*\) log_writes=\([0-9]*\) log_sectors=\([0-9]*\).*/\1 \2 \3 \4/p' "$batch" |
            awk '$3 > 0 { print $1, $2 / $3, $4 / $3 }' | sort -n > "$tmp/batch.dat"
    fi
    when=$(sed -n 's/^# //p' "$rows" | head -1)
    gnuplot <<EOF
$common
set output "$out/qd-iops.png"
set title "First overwrites (4 KiB random, O_DIRECT): IOPS against queue depth\n$when"
set xlabel "queue depth"; set ylabel "IOPS"
set logscale x 2; set xtics (1, 2, 4, 8, 16, 32)
set yrange [0:*]
plot "$tmp/qd.dat" using 1:2 with linespoints lw 2 title "dm-linear", \
     "" using 1:3 with linespoints lw 2 title "dm-bow", \
     "" using 1:4 with linespoints lw 2 title "dm-snapshot (persistent, 4 KiB chunks)"
EOF
    wa_plot="plot \"$tmp/qd.dat\" using 1:5 with linespoints lw 2 title \"dm-bow, measured\", \
     \"\" using 1:6 with linespoints lw 2 title \"dm-snapshot, measured\", \
     2 + 1 / x with lines dt 2 title \"2 + 1/depth (a whole-block log write per depth writes)\""
    if [ -s "$tmp/batch.dat" ]; then
        wa_plot="$wa_plot, \"$tmp/batch.dat\" using 1:(2 + 1 / \$2) with points pt 6 ps 1.5 title \"2 + 1/K, K = dm-bow's copies per log write\""
    fi
    gnuplot <<EOF
$common
set output "$out/qd-wa.png"
set title "First overwrites: write amplification against queue depth\n$when"
set xlabel "queue depth"; set ylabel "sectors written below / sectors written"
set logscale x 2; set xtics (1, 2, 4, 8, 16, 32)
set key top right
set yrange [1.9:3.1]
$wa_plot
EOF
fi

if [ -n "$scale" ]; then
    # free extents, slab bytes per extent, checkpoint s, free_map s, removal
    # s, and the nodes' bytes per extent from kmalloc-64's own counts ("?"
    # for runs made before the scenario printed them)
    awk '{ delete v; for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           k = ("kmalloc64_slab_size" in v) ? v["kmalloc64_per_1000_extents"] * v["kmalloc64_slab_size"] / 1000 : "?"
           print v["free_extents"], v["slab_bytes_per_extent"], v["checkpoint_ms"] / 1000, v["free_map_ms"] / 1000, v["remove_ms"] / 1000, k }' \
        <(grep -v '^#' "$scale") | sort -n > "$tmp/scale.dat"
    when=$(sed -n 's/^# //p' "$scale" | head -1)
    gnuplot <<EOF
$common
set output "$out/scale-memory.png"
set title "Kernel memory per extent (slab, KASAN kernel) against free extents at checkpoint\n$when"
set xlabel "free extents"; set ylabel "bytes of slab per extent"
set logscale xy; $xtics_extents
set xrange [500:2e6]; set yrange [10:10000]
set key top right
set datafile missing "?"
plot "$tmp/scale.dat" using 1:2 with points pt 7 ps 1.5 title "measured: Slab in /proc/meminfo, before and after, per extent", \
     "" using 1:6 with points pt 5 ps 1.5 title "measured: kmalloc-64 objects added x their slab size, per extent", \
     64 with lines dt 2 title "goal: 64 bytes", \
     48 with lines dt 3 title "one range-tree node (48 bytes)"
EOF
    gnuplot <<EOF
$common
set output "$out/scale-time.png"
set title "Time against free extents at checkpoint (TCG, KASAN kernel)\n$when"
set xlabel "free extents"; set ylabel "seconds"
set logscale xy; $xtics_extents
set xrange [500:2e6]
plot "$tmp/scale.dat" using 1:3 with linespoints lw 2 pt 7 title "checkpoint (echo 1 > state)", \
     "" using 1:4 with linespoints lw 2 pt 5 title "free_map (state 1)", \
     "" using 1:5 with linespoints lw 2 pt 9 title "removal in state 1", \
     2.0 * x / 1040383 with lines dt 2 title "slope 1 (linear), through the checkpoint at a million"
EOF
fi

if [ $docs = 1 ]; then
    [ -n "$rows" ] && [ "$rows" != "$img/bench-rows.txt" ] && cp "$rows" "$img/bench-rows.txt"
    [ -n "$batch" ] && [ "$batch" != "$img/bench-batch.txt" ] && cp "$batch" "$img/bench-batch.txt"
    [ -n "$scale" ] && [ "$scale" != "$img/scale.txt" ] && cp "$scale" "$img/scale.txt"
fi
ls "$out"/*.png 2>/dev/null | sed 's/^/wrote /'
[ -n "$rows$scale" ] || die "no data: run ci/bench.sh or ci/scale.sh first"
