# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 900
# cost: 124
# checks: 35
# Raw-device behaviour with block_size:4096 on 32 MiB: exact free-space
# accounting with merged discards, write amplification for each kind of
# write (first overwrites at QD1 and QD16, rewrites, writes into free space),
# chaining of 3+ log blocks, block 0 and its relocated copy, writes into a
# block holding a backup, ENOSPC, then restore of every non-free block.
. /tests/lib.sh
DISK=/dev/vda COPY=/dev/vdb
MIB=32 LEN=$(( 32 * 2048 ))
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
dd if=/dev/urandom of=$DISK bs=1M count=$MIB oflag=direct 2>/dev/null
check "create" dmsetup create raw --table "0 $LEN bow $DISK 1 block_size:4096"
D=$(dm_dev raw) DN=dm-$(dm_minor raw) S=$(bow_sysfs raw)
M=$((1024 * 1024))

# --- state 0: free space is exactly what was discarded --------------------
blkdiscard -o $((24 * M)) -l $((4 * M)) $D
blkdiscard -o $((26 * M)) -l $((6 * M)) $D   # overlaps the first
eq "overlapping discards merge: free is exact" $((8 * M)) "$(cat $S/free)"
blkdiscard -o $((24 * M - 8192)) -l 8192 $D  # adjacent below
eq "adjacent discard merges" $((8 * M + 8192)) "$(cat $S/free)"
blkdiscard -o 4096 -l 2048 $D 2>/dev/null    # part of one block: not free
eq "partial-block discard records nothing" $((8 * M + 8192)) "$(cat $S/free)"
dd if=/dev/urandom of=$D bs=4096 seek=$((24 * 256 - 2)) count=2 oflag=direct conv=notrunc 2>/dev/null
eq "a write into free space makes it used again" $((8 * M)) "$(cat $S/free)"
extents=$(status_field raw extents)
eq "the map is two extents (used, free)" 2 "$extents"

dd if=$DISK of=$COPY bs=1M count=$MIB iflag=direct oflag=direct 2>/dev/null
check "checkpoint by message" dmsetup message raw 0 checkpoint
eq "state 1" 1 "$(cat $S/state)"
dmsetup message raw 0 free_map > /tmp/free
eq "free map at checkpoint" "6144+2048 " "$(cat /tmp/free)"

# --- write amplification ---------------------------------------------------
# spread_writes: 100 single-block direct writes, 37 blocks apart, at QD1.
spread_writes() {
    for i in $(seq 0 99); do
        rnd 1 | dd of=$D bs=4096 seek=$(( 10 + i * 37 )) count=1 iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
    done
}
n0=$(status_field raw log_entries) lb0=$(status_field raw log_bytes)
wa_begin vda $DN
spread_writes
wa_end
# Each: the backup, the user's write, and a log write of the log block's
# sectors in use (1 to 5 here): 2.36, where a whole-block log write made 3.
logw=$(log_sectors_one_by_one $n0 100)
eq "QD1 first overwrites: 2 writes each, plus $logw log sectors" $(( 100 * 16 + logw )) "$WA_BELOW"
eq "QD1 first overwrites: status log_bytes counts the log's sectors" $(( logw * 512 )) $(( $(status_field raw log_bytes) - lb0 ))
eq "QD1 first overwrites: one extra read per backed-up block" $(( 100 * 8 )) "$RD_BELOW"
echo "WA first-overwrite QD1 $WA_FRAC"

wa_begin vda $DN
spread_writes
wa_end
eq "rewrites: write amplification 1.000" "1.000" "$WA_FRAC"
echo "WA rewrite $WA_FRAC"

lw0=$(status_field raw log_writes) lb0=$(status_field raw log_bytes)
wa_begin vda $DN
for i in $(seq 0 49); do
    dd if=/dev/urandom of=$D bs=4096 seek=$(( 8100 + i )) count=1 oflag=direct conv=notrunc 2>/dev/null
done
wa_end
# The first write claims the free 1 MiB window around it: one log write.
eq "writes into free space: one log write, for the claim" 1 $(( $(status_field raw log_writes) - lw0 ))
eq "writes into free space: 50 blocks and the log write" $(( 50 * 8 + ($(status_field raw log_bytes) - lb0) / 512 )) "$WA_BELOW"
check "writes into free space: the log write is at most one block" [ $(( $(status_field raw log_bytes) - lb0 )) -le 4096 ]
echo "WA free-space $WA_FRAC"

wa_begin vda $DN
fio --name=qd16 --filename=$D --rw=randwrite --bs=4k --direct=1 --ioengine=libaio --iodepth=16 --iodepth_batch_submit=16 --iodepth_batch_complete_min=16 \
    --offset=$((4000 * 4096)) --size=$((512 * 4096)) --randrepeat=1 --output=/tmp/fio.out >/dev/null 2>&1
fio_rc=$?
wa_end
eq "fio QD16 ran" 0 "$fio_rc"
eq "QD16: 512 first overwrites" $((512 * 8)) "$WA_DM"
check "QD16 first overwrites: write amplification $WA_FRAC <= 2.1" [ "$WA_X100" -le 210 ]
echo "WA first-overwrite QD16 $WA_FRAC"

# --- log chaining ------------------------------------------------------------
seq_now=$(status_field raw log_seq)
check "at least 3 chained log blocks (log_seq=$seq_now)" [ "$seq_now" -ge 2 ]

# --- block 0 and its relocated live copy ------------------------------------
dd if=/dev/urandom of=/tmp/b0 bs=4096 count=1 2>/dev/null
check "write block 0" dd if=/tmp/b0 of=$D bs=4096 count=1 oflag=direct conv=notrunc
eq "block 0 reads back what was written" "$(md5sum < /tmp/b0)" "$(dd if=$D bs=4096 count=1 iflag=direct 2>/dev/null | md5sum)"
eq "disk block 0 still holds the log" 424f5700 "$(magic_of $DISK)"
s0=$(sector0_of $DISK)
check "live block 0 is in the free region (sector $s0)" [ "$s0" -ge $(( 6144 * 8 )) ]
dd if=/dev/urandom of=$D bs=4096 seek=$(( s0 / 8 )) count=1 oflag=direct conv=notrunc 2>/dev/null
s0b=$(sector0_of $DISK)
check "writing over the live copy moves it (sector $s0 -> $s0b)" [ "$s0b" != "$s0" ]
eq "block 0 still reads back" "$(md5sum < /tmp/b0)" "$(dd if=$D bs=4096 count=1 iflag=direct 2>/dev/null | md5sum)"

# --- a write into a block holding a backup moves the backup first -----------
bdest=$(bowctl inspect --json $DISK | sed -n 's/.*"dest": \([0-9]*\).*/\1/p' | sed -n 5p)
copies1=$(status_field raw copies)
dd if=/dev/urandom of=$D bs=4096 seek=$(( bdest / 8 )) count=1 oflag=direct conv=notrunc 2>/dev/null
check "write into a backup block (sector $bdest) copied it first" [ "$(status_field raw copies)" -gt "$copies1" ]

# --- discards in state 1 cost nothing and destroy nothing --------------------
wa_begin vda $DN
blkdiscard -o $((1 * M)) -l $((1 * M)) $D
wa_end
eq "a discard in state 1 writes nothing below" 0 "$WA_BELOW"

# --- ENOSPC -------------------------------------------------------------------
dd if=/dev/urandom of=$D bs=1M seek=8 count=14 oflag=direct conv=notrunc 2>/tmp/dd.err
check "filling free space ends in ENOSPC" grep -q "No space left on device" /tmp/dd.err
check "status counts it (enospc=$(status_field raw enospc))" [ "$(status_field raw enospc)" -ge 1 ]
dmsetup status raw

check "remove in state 1" dmsetup remove raw

# The on-disk log, decoded with the shared code, against what was written:
# every QD1 first overwrite has an entry with that source, one block long.
bowctl inspect --json $DISK > /tmp/log.json
missing=0
for i in $(seq 0 99); do
    src=$(( (10 + i * 37) * 8 ))
    grep -A2 "\"source\": $src," /tmp/log.json | grep -q '"size": 4096' || missing=$((missing + 1))
done
eq "every QD1 first overwrite is logged with its source and size" 0 "$missing"
eq "entry 0 of sequence 0 backs up block 0" 1 \
    "$(tr -d ' \n' < /tmp/log.json | grep -c '"sequence":0,"index":0,"source":0,')"
eq "only checksum-0 entries (moves of the live block 0) are unverified" "" \
    "$(grep -B1 '"checksum_verified": false' /tmp/log.json | grep '"checksum":' | grep -v '"checksum": 0,')"
bowctl inspect $DISK | tail -1
check "log valid after ENOSPC" sh -c "bowctl inspect $DISK >/dev/null"
check "restore" sh -c "bowctl restore $DISK >/dev/null"
zero_ranges $DISK 4096 /tmp/free
zero_ranges $COPY 4096 /tmp/free
eq "every block not free at checkpoint restored" \
    "$(dd if=$COPY bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)" \
    "$(dd if=$DISK bs=1M count=$MIB iflag=direct 2>/dev/null | md5sum)"
rmmod dm_bow
finish
