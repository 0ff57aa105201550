# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 1500
# cost: 105
# checks: 34
# dm-bow against dm-linear and a persistent dm-snapshot (4 KiB chunks, COW on
# a second disk of the same kind), side by side in one boot, with the same
# fio jobs (4 KiB random writes, O_DIRECT, libaio, default submission).
#
# Rows: first overwrites at QD1 and QD16, rewrites, writes into free space
# (for dm-bow: space discarded before the checkpoint), the committed target,
# and reads. Columns: IOPS, write amplification (sectors written below /
# sectors written to the device), reads per write (sectors read below /
# sectors written) and flushes per write (field 16 of /sys/block/*/stat,
# below, / writes to the device); and where the time goes: CPU time of all
# the guest's CPUs (user, system, irq, softirq in /proc/stat) and context switches
# (ctxt), each per request to the device. Each row is printed as a
# BOW-BENCH line.
#
# Timing under TCG means something only as a ratio within one run, so the
# scenario checks only exact counts: write amplification and reads. The
# IOPS ratios are the benchmark's (ci/bench.sh), not a test.
#
# usage: bench.sh [OPS[:DEPTH...]]   -- OPS 4 KiB writes per row (256; 1024
# in ci/bench.sh); then, colon-separated, further queue depths for first
# overwrites (ci/bench.sh: 2:4:8:32), each a row "first-qdN" on a
# region of its own, for the plots of IOPS and write amplification against
# queue depth.
. /tests/lib.sh
ARG=${1:-256}
OPS=${ARG%%:*} DEPTHS=
case $ARG in *:*) DEPTHS=$(echo "${ARG#*:}" | tr ':' ' ') ;; esac
NDEPTHS=$(echo $DEPTHS | wc -w)
A=/dev/vda B=/dev/vdb
LEN=$(( 512 * 2048 ))
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
R=$(( OPS * 4096 ))      # bytes per row region
# Regions of the first half: QD1 first overwrites, QD16 first overwrites, committed.
QD1_OFF=$(( 16 * 1024 * 1024 )) QD16_OFF=$(( QD1_OFF + R )) COMMIT_OFF=$(( QD16_OFF + R ))
# Then one region per further depth, all below the discarded upper half.
SWEEP_OFF=$(( COMMIT_OFF + R ))
if [ $(( SWEEP_OFF + NDEPTHS * R )) -gt $(( 256 * 1024 * 1024 )) ]; then
    fail "bench: $OPS writes per row and $NDEPTHS further depths do not fit below 256 MiB"
    finish
fi
FREE_OFF=$(( 300 * 1024 * 1024 ))   # in the discarded upper half

# stat <dev> <field>: one field of /sys/block/<dev>/stat.
stat_of() { awk -v f=$2 '{ print $f }' /sys/block/$1/stat; }
# snap <devs...>: sums fields 3 (sectors read), 7 (sectors written) and 16
# (flushes) over the devices below.
snap() { local r=0 w=0 f=0 d; for d in "$@"; do r=$((r + $(stat_of $d 3))); w=$((w + $(stat_of $d 7))); f=$((f + $(stat_of $d 16))); done; echo "$r $w $f"; }

# cpu: busy clock ticks (USER_HZ) of all CPUs, and context switches, so far.
cpu() { awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 } $1 == "ctxt" { c = $2 } END { print b, c }' /proc/stat; }

# row <target> <row name> <dm-dev> <rw> <qd> <offset> <below devs...>: runs one
# fio job and prints "BOW-BENCH target row iops wa reads_per_write flushes_per_write
# cpu_ms_per_io ctxt_per_io".
row() {
    local t=$1 name=$2 dev=$3 rw=$4 qd=$5 off=$6; shift 6
    local dn=${dev#/dev/} b0 b1 d0w d1w d0io d1io d0r d1r c0 c1 out iops field
    b0=$(snap "$@"); d0w=$(stat_of $dn 7); d0io=$(stat_of $dn 5); d0r=$(stat_of $dn 1); c0=$(cpu)
    out=$(fio --minimal --name=b --filename=$dev --rw=$rw --bs=4k --direct=1 --ioengine=libaio --iodepth=$qd \
        --offset=$off --size=$R --randrepeat=1 2>&1)
    local rc=$?
    c1=$(cpu); b1=$(snap "$@"); d1w=$(stat_of $dn 7); d1io=$(stat_of $dn 5); d1r=$(stat_of $dn 1)
    [ $rw = randread ] && field=8 || field=49
    iops=$(echo "$out" | tail -1 | cut -d';' -f$field)
    check "$t $name: fio ran (rc=$rc, $iops IOPS)" sh -c "[ $rc = 0 ] && [ \"${iops:-0}\" -gt 0 ]"
    set -- $b0; local r0=$1 w0=$2 f0=$3
    set -- $b1; local r1=$1 w1=$2 f1=$3
    local dw=$((d1w - d0w)) dio=$((d1io - d0io))
    WA=$(awk -v b=$((w1 - w0)) -v d=$dw 'BEGIN { if (d > 0) printf "%.3f", b / d; else print "-" }')
    RPW=$(awk -v b=$((r1 - r0)) -v d=$dw 'BEGIN { if (d > 0) printf "%.3f", b / d; else print "-" }')
    FPW=$(awk -v b=$((f1 - f0)) -v d=$dio 'BEGIN { if (d > 0) printf "%.3f", b / d; else print "-" }')
    READS=$((r1 - r0)) BELOW_W=$((w1 - w0)) DM_W=$dw
    # Requests to the device (writes, or reads for the read row).
    local nio=$((dio + d1r - d0r))
    set -- $c0; local t0=$1 x0=$2
    set -- $c1; local t1=$1 x1=$2
    CPU=$(awk -v t=$((t1 - t0)) -v n=$nio -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" 'BEGIN { if (n > 0) printf "%.2f", t * 1000 / hz / n; else print "-" }')
    CTX=$(awk -v x=$((x1 - x0)) -v n=$nio 'BEGIN { if (n > 0) printf "%.1f", x / n; else print "-" }')
    echo "BOW-BENCH $t $name $iops $WA $RPW $FPW $CPU $CTX"
}

# Fresh data under every region, the same for each target.
prepare() {
    dd if=/dev/urandom of=$A bs=1M seek=16 count=$(( ((3 + NDEPTHS) * R) / 1048576 + 1 )) oflag=direct 2>/dev/null
}

# sweep <target> <dm-dev> <below devs...>: a first-overwrite row at each
# further depth. For dm-bow, also the exact accounting of the QD16 row and
# how many copies shared a log write (a BOW-BATCH line).
sweep() {
    local t=$1 dev=$2 i=0 d off lw0 ls0 lw ls
    shift 2
    for d in $DEPTHS; do
        off=$(( SWEEP_OFF + i * R )) i=$((i + 1))
        if [ $t = bow ]; then
            lw0=$(status_field bow log_writes) ls0=$(log_sectors)
        fi
        row $t first-qd$d $dev randwrite $d $off "$@"
        if [ $t = bow ]; then
            lw=$(( $(status_field bow log_writes) - lw0 )) ls=$(( $(log_sectors) - ls0 ))
            eq "bow first overwrites QD$d: 2 writes per write, plus $ls log sectors ($lw log writes)" \
                $(( 2 * DM_W + ls )) "$BELOW_W"
            batch_line first-qd$d $OPS $lw $ls
        fi
    done
}

echo "BOW-BENCH target row iops wa reads_per_write flushes_per_write cpu_ms_per_io ctxt_per_io (ops=$OPS)"

# --- dm-linear ----------------------------------------------------------------
prepare
dmsetup create lin --table "0 $LEN linear $A 0"
D=$(dm_dev lin)
row linear first-qd1 $D randwrite 1 $QD1_OFF vda
row linear first-qd16 $D randwrite 16 $QD16_OFF vda
row linear rewrite-qd16 $D randwrite 16 $QD16_OFF vda
row linear free-qd16 $D randwrite 16 $FREE_OFF vda
row linear committed-qd16 $D randwrite 16 $COMMIT_OFF vda
row linear read-qd16 $D randread 16 $QD16_OFF vda
sweep linear $D vda
dmsetup remove lin

# --- dm-bow -------------------------------------------------------------------
prepare
dmsetup create bow --table "0 $LEN bow $A 1 block_size:4096"
D=$(dm_dev bow) S=$(bow_sysfs bow)
blkdiscard -o $((256 * 1024 * 1024)) -l $((256 * 1024 * 1024)) $D
echo 1 > $S/state
# log_sectors: sectors the log wrote so far (status log_bytes).
log_sectors() { echo $(( $(status_field bow log_bytes) / 512 )); }
# batch_line <row> <copies> <log writes> <log sectors>: the BOW-BATCH line.
batch_line() {
    echo "BOW-BATCH $1 copies=$2 log_writes=$3 log_sectors=$4 copies_per_log_write=$(awk -v c=$2 -v l=$3 'BEGIN { if (l > 0) printf "%.1f", c / l; else print "-" }')"
}
n0=$(status_field bow log_entries) ls0=$(log_sectors) lw0=$(status_field bow log_writes)
row bow first-qd1 $D randwrite 1 $QD1_OFF vda
batch_line first-qd1 $OPS $(( $(status_field bow log_writes) - lw0 )) $(( $(log_sectors) - ls0 ))
# At QD1 each first overwrite has a log write of its own, of the sectors of
# the log block in use (28 bytes of header, 24 per entry), plus a whole block
# for each full log block saved (169 entries a block, and each later block
# starts with its chain entry). Computed here from the entry count alone.
logw=$(log_sectors_one_by_one $n0 $OPS)
eq "bow first overwrites QD1: 2 writes per write, plus $logw log sectors" $(( 16 * OPS + logw )) "$BELOW_W"
eq "bow first overwrites QD1: status log_bytes counts those log sectors" $logw $(( $(log_sectors) - ls0 ))
eq "bow first overwrites QD1: one read per written sector" $(( 8 * OPS )) "$READS"
lw0=$(status_field bow log_writes) ls0=$(log_sectors) c0=$(status_field bow copies)
row bow first-qd16 $D randwrite 16 $QD16_OFF vda
lw=$(( $(status_field bow log_writes) - lw0 )) ls=$(( $(log_sectors) - ls0 ))
copies=$(( $(status_field bow copies) - c0 ))
# Exact, whatever the batching: a copy and the user's write per write, plus
# what the log wrote.
eq "bow first overwrites QD16: one copy per write" $OPS $copies
eq "bow first overwrites QD16: 2 writes per write, plus $ls log sectors ($lw log writes)" \
    $(( 2 * DM_W + ls )) "$BELOW_W"
batch_line first-qd16 $copies $lw $ls
# How many copies share a log write depends on timing, so the write
# amplification does too (the goal is 2.1: 2.085 at 7.0 copies per log write
# in a 1024-write run; docs/performance.md). The check is on what is not
# timing: the accounting above, and that group commit works at all (without
# it one copy per log write, and 2.6 here).
check "bow first overwrites QD16: group commit, $copies copies in $lw log writes (at least 3 each; write amplification $WA)" \
    [ $(( copies )) -ge $(( 3 * lw )) ]
eq "bow first overwrites QD16: one read per written sector" 1.000 "$RPW"
sweep bow $D vda
row bow rewrite-qd16 $D randwrite 16 $QD16_OFF vda
eq "bow rewrites: write amplification 1" 1.000 "$WA"
eq "bow rewrites: no reads" 0 "$READS"
lw0=$(status_field bow log_writes) ls0=$(log_sectors) c0=$(status_field bow copies)
row bow free-qd16 $D randwrite 16 $FREE_OFF vda
lw=$(( $(status_field bow log_writes) - lw0 )) ls=$(( $(log_sectors) - ls0 ))
# Each 1 MiB window of free space is claimed (logged to be zeroed by a
# rollback) before its first write: a log write, shared by the claims made
# together; no copies.
eq "bow writes into free space: no copies" 0 $(( $(status_field bow copies) - c0 ))
eq "bow writes into free space: its writes plus $ls log sectors ($lw log writes)" \
    $(( DM_W + ls )) "$BELOW_W"
check "bow writes into free space: at most one log write per 1 MiB window ($lw for $((R / 1048576)) MiB)" \
    [ $lw -le $(( R / 1048576 + 1 )) ]
check "bow writes into free space: write amplification $WA <= 1.01" awk -v w=$WA 'BEGIN { exit !(w <= 1.01) }'
eq "bow writes into free space: no reads" 0 "$READS"
echo 2 > $S/state
row bow committed-qd16 $D randwrite 16 $COMMIT_OFF vda
eq "bow committed: write amplification 1" 1.000 "$WA"
eq "bow committed: no reads" 0 "$READS"
row bow read-qd16 $D randread 16 $QD16_OFF vda
dmsetup remove bow

# --- dm-snapshot, persistent, 4 KiB chunks, COW on the second disk -------------
prepare
dd if=/dev/zero of=$B bs=1M count=1 oflag=direct 2>/dev/null
dmsetup create origin --table "0 $LEN snapshot-origin $A"
dmsetup create snap --table "0 $LEN snapshot $A $B P 8"
D=$(dm_dev origin)
row snapshot first-qd1 $D randwrite 1 $QD1_OFF vda vdb
row snapshot first-qd16 $D randwrite 16 $QD16_OFF vda vdb
row snapshot rewrite-qd16 $D randwrite 16 $QD16_OFF vda vdb
row snapshot free-qd16 $D randwrite 16 $FREE_OFF vda vdb
row snapshot read-qd16 $D randread 16 $QD16_OFF vda vdb
sweep snapshot $D vda vdb
dmsetup remove snap
dmsetup remove origin

check "rmmod" rmmod dm_bow
finish
