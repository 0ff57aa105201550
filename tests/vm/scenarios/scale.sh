# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 3000
# checks: 16
# manual: about 20 min under TCG for its million extents (tests/vm/run.sh scale)
# A checkpoint of a device with a million free extents: bow with 512-byte
# blocks over all of /dev/vdc (1 GiB, 2097152 blocks), every odd block past
# the first 8 MiB discarded in state 0 (one 512-byte discard each), then
# the checkpoint with a writer busy on used blocks between free ones, first
# overwrites of the first 8 MiB (less on a small N), `dmsetup status`, the `free_map` message, a rollback
# checked below the target, and the removal. Nothing whose size grows with
# the extents may come from kmalloc (the free map at checkpoint is a KVVec:
# 16 MiB here, above kmalloc's 4 MiB).
#
# Prints "BOW-SCALE key=value..." with the costs, measured under TCG with
# KASAN and lockdep (times are only comparable within one run): the trims,
# the checkpoint, status and free_map, and kernel memory (Slab in
# /proc/meminfo) per extent of the map.
#
# usage: scale.sh [N]   -- N free extents (default: every odd block past 8 MiB, 1040383)
. /tests/lib.sh
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
DISK=/dev/vdc
LEN=$(blockdev --getsz $DISK)
MAXN=$(( (LEN - 16384) / 2 - 1 ))
N=${1:-$MAXN}
[ "$N" -le "$MAXN" ] || { fail "at most $MAXN extents on a $LEN-sector disk"; finish; }
ms_since() { echo $(( $(now_ms) - $1 )); }
slab() { awk '/^Slab:/ { print $2 * 1024 }' /proc/meminfo; }
# kmalloc-64, where each range-tree node (48 bytes) lives: objects in use, and
# the bytes each takes in its slab (object, alignment and, on a KASAN kernel,
# its redzone and metadata).
K64=/sys/kernel/slab/kmalloc-64
k64_objects() { cut -d' ' -f1 $K64/objects 2>/dev/null || echo 0; }
k64_slot=$(cat $K64/slab_size 2>/dev/null || echo 0)

# Known content on the blocks the test overwrites (the first 8 MiB, used):
# from the random pool.
pool
dd if=$POOL of=$DISK bs=1M count=8 oflag=direct 2>/dev/null
ref=$(dd if=$DISK bs=1M count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)

check "create (512-byte blocks, $LEN blocks)" dmsetup create scale --table "0 $LEN bow $DISK 1 block_size:512"
D=$(dm_dev scale)
S=$(bow_sysfs scale)
echo 3 > /proc/sys/vm/drop_caches
s0=$(slab) k0=$(k64_objects) t=$(now_ms)
# One discard per extent, made in the kernel: a table of one-block linear
# targets onto the odd blocks, 65536 at a time; one blkdiscard of it reaches
# bow as that many one-block discards (dm splits a bio at every target).
# (fio's one-syscall-per-trim runs at 300-1000 trims/s under TCG: an hour.)
made=0
while [ $made -lt $N ]; do
    n=$(( N - made )); [ $n -le 65536 ] || n=65536
    awk -v n=$n -v s=$(( 16384 + 1 + 2 * made )) -v d=$D \
        'BEGIN { for (i = 0; i < n; i++) printf "%d 1 linear %s %d\n", i, d, s + 2 * i }' > /tmp/frag.table
    t1=$(now_ms)
    dmsetup create frag < /tmp/frag.table || break
    t2=$(now_ms)
    blkdiscard "$(dm_dev frag)" || { dmsetup remove frag; break; }
    t3=$(now_ms)
    dmsetup remove frag || break
    t4=$(now_ms)
    made=$(( made + n ))
    echo "scale: $made discards in $(( t4 - t )) ms (this batch: table $(( t2 - t1 )) ms, discard $(( t3 - t2 )) ms, remove $(( t4 - t3 )) ms)"
done
rm -f /tmp/frag.table
eq "$N one-block discards, every other block" "$N" "$made"
trim_ms=$(ms_since $t)
ext=$(status_field scale extents)
eq "free space: every trimmed block" $(( N * 512 )) "$(cat $S/free)"
check "the map holds $N free extents between used ones (extents=$ext)" [ "$ext" -ge $(( 2 * N )) ]
echo 3 > /proc/sys/vm/drop_caches
per=$(( ($(slab) - s0) / ext ))
# Nodes per 1000 extents (1000 when the map is all that grew), times the
# bytes each takes: the slab the map costs, with less of the noise above.
k64_per_1000=$(( ($(k64_objects) - k0) * 1000 / ext ))
echo "scale: kmalloc-64 grew by $k64_per_1000 objects per 1000 extents, $k64_slot bytes each in its slab"

# The free map in state 0: the live map, read a chunk of extents per hold
# of its lock. Nothing discards from here to the checkpoint, so the list the
# checkpoint takes must be the same.
t=$(now_ms)
dmsetup message scale 0 free_map > /tmp/fm0
fm0_ms=$(ms_since $t)
eq "free_map in state 0 names every free extent" "$N" "$(wc -w < /tmp/fm0)"

# The checkpoint, with a writer going on used (even) blocks between free
# ones: rewrites in state 0, first overwrites (copies) and rewrites after.
( i=0; while [ ! -e /tmp/stop-w ]; do
      dd if=$POOL of=$D bs=512 count=1 seek=$(( 1048576 + (i % 4096) * 2 )) oflag=direct conv=notrunc 2>/dev/null \
          || { echo "writer: write failed"; touch /tmp/w-failed; }
      i=$((i + 1))
  done ) &
wpid=$!
sleep 2
t=$(now_ms)
check "echo 1 > state with $N free extents and a writer going" sh -c "echo 1 > $S/state"
ckpt_ms=$(ms_since $t)
eq "state after the checkpoint" 1 "$(cat $S/state)"
sleep 2
touch /tmp/stop-w; wait $wpid
check "no write of the writer failed" [ ! -e /tmp/w-failed ]

# First overwrites: the first 8 MiB, or 3/4 of the free space when that is
# less (each 512-byte block overwritten needs a free block for its backup;
# beyond that the writes fail with ENOSPC, as they must).
ow=$(( N * 512 * 3 / 4 / 65536 ))
[ $ow -gt 128 ] && ow=128
[ $ow -lt 1 ] && ow=1
t=$(now_ms)
check "first overwrites of $((ow * 64)) KiB of used blocks" dd if=/dev/urandom of=$D bs=64k count=$ow oflag=direct conv=notrunc,fsync
ow_ms=$(ms_since $t)
copies=$(status_field scale copies)
check "the overwrites were backed up (copies=$copies)" [ "$copies" -ge $((ow * 64)) ]
t=$(now_ms); dmsetup status scale >/dev/null; status_ms=$(ms_since $t)
t=$(now_ms)
dmsetup message scale 0 free_map > /tmp/fm1
fm_ms=$(ms_since $t)
eq "free_map names every free extent at checkpoint" "$N" "$(wc -w < /tmp/fm1)"
check "free_map at checkpoint is the list state 0 gave" cmp -s /tmp/fm0 /tmp/fm1
rm -f /tmp/fm0 /tmp/fm1

t=$(now_ms)
check "remove in state 1" dmsetup remove scale
rm_ms=$(ms_since $t)
t=$(now_ms)
check "bowctl restore" bowctl restore $DISK
restore_ms=$(ms_since $t)
eq "the overwritten blocks are back, read below the target" "$ref" \
    "$(dd if=$DISK bs=1M count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)"
check "rmmod" rmmod dm_bow
echo "BOW-SCALE extents=$ext free_extents=$N trim_ms=$trim_ms trims_per_s=$(( N * 1000 / (trim_ms + 1) )) slab_bytes_per_extent=$per kmalloc64_per_1000_extents=$k64_per_1000 kmalloc64_slab_size=$k64_slot checkpoint_ms=$ckpt_ms overwrite_kib=$((ow * 64)) overwrite_ms=$ow_ms status_ms=$status_ms free_map0_ms=$fm0_ms free_map_ms=$fm_ms remove_ms=$rm_ms restore_ms=$restore_ms"
finish
