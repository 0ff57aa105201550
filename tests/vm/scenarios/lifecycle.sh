# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 900
# cost: 138
# checks: 88
# The update lifecycle's corner cases in one boot (issue 6): bowctl start,
# boot, commit, abort and health, through the example init scripts where an
# init would use them. A "reboot" here is an unmount and the removal of the
# bow device; the real power cuts are in the `update` scenario.
. /tests/lib.sh
export BOW_DATA_DEV=/dev/vda BOW_DATA_DIR=/data BOW_NAME=userdata
export BOW_META_DEV=/dev/vdb BOW_META_DIR=/metadata
export BOW_BLOCK_SIZE=4096 BOW_RETRIES=1
export BOWCTL_RECORD=/metadata/bow/checkpoint.json
REC=$BOWCTL_RECORD
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
mkdir -p /data /metadata
mkfs.ext4 -q -F -b 4096 /dev/vdb 32M
mkfs.ext4 -q -F -b 4096 /dev/vda 96M
mount /dev/vda /data && mkdir /data/d
for i in 1 2 3 4 5 6; do yes "original $i" | head -c 300000 > /data/d/f$i; done
umount /data
mount /dev/vdb /metadata
# The whole disk's checksum below everything, taken with nothing mounted on
# it (a mount itself writes the superblock, so this only serves where no
# mount happens in between).
disk_sum() { sum_range /dev/vda 0 $(( 96 * 256 )); }
# Every file's content, as the mounted filesystem at /data shows it.
tree_sum() { (cd /data && find . -path ./lost+found -prune -o -type f -print | sort | xargs md5sum) | md5sum | cut -c1-32; }
no_log() { bowctl inspect /dev/vda | grep -q 'no checkpoint'; }
mount /dev/vda /data && ORIG=$(tree_sum) && umount /data
boot() { sh /usr/lib/bow/bow-boot.sh > /tmp/boot.out 2>&1; }
reboot_sim() {
    umount /data 2>/dev/null
    dmsetup remove userdata 2>/dev/null
    return 0
}
change() { yes "new $1" | head -c 400000 > /data/d/f1; rm -f /data/d/f2; echo new > /data/d/added; sync; }
files_are() { eq "$1" "$2" "$(head -n 1 /data/d/f1)"; }

# --- nothing pending -------------------------------------------------------
check "no record, no log: boot mounts the device itself" boot
check "  it says no update is pending" grep -q "no update pending" /tmp/boot.out
check "  no bow device" sh -c "! dmsetup info userdata >/dev/null 2>&1"
check "boot again in the same boot: nothing to do, still exit 0" boot
check "  it says already mounted" grep -q "already mounted" /tmp/boot.out
umount /data
expect_fail "abort with nothing pending fails" bowctl abort
eq "  with exit status 3 (nothing to do)" 3 "$(bowctl abort >/dev/null 2>&1; echo $?)"
expect_fail "commit with no device and no record fails" bowctl commit
check "no record, no log: no log written" no_log

# --- start, attempt, health, abort ----------------------------------------
check "start --retries 1 (bow-update.sh)" sh /usr/lib/bow/bow-update.sh
check "  the record names 1 attempt" grep -q '"remaining": 1' $REC
expect_fail "start --retries 0 is refused" bowctl start --retries 0
check "boot: an attempt under bow" boot
check "  attempt 1 of 1" grep -q "attempt 1 of 1" /tmp/boot.out
eq "  state 1 (checkpoint)" 1 "$(cat "$(bow_sysfs userdata)"/state)"
check "  the record names the device" grep -q '"device": "userdata"' $REC
check "pending: an update is pending (exit 0)" bowctl pending
check "checkpointing: userdata is in state 1 (exit 0)" bowctl checkpointing userdata
check "boot again in the same boot: finishes nothing new, exit 0" boot
check "  it says the device exists" grep -q "already exists" /tmp/boot.out
check "health --once: healthy above 1M free" bowctl health --once --min-free 1M
change 1
eq "health --once --json reports healthy" healthy "$(bowctl --json health --once --min-free 1M | sed -n 's/.*"result": "\([a-z_]*\)".*/\1/p' | head -1)"
check "health below the threshold with --on-low abort: abort requested" bowctl health --once --min-free 100G --on-low abort
check "  the record says abort" grep -q '"abort": true' $REC
eq "abort twice: nothing to do (3)" 3 "$(bowctl abort >/dev/null 2>&1; echo $?)"
reboot_sim
check "boot after the abort: rolls back" boot
check "  it says a rollback was requested" grep -q "rollback was requested" /tmp/boot.out
check "  record removed" [ ! -f $REC ]
files_are "  the data is the original" "original 1"
eq "  every file equals the original" "$ORIG" "$(tree_sum)"
check "  no bow device" sh -c "! dmsetup info userdata >/dev/null 2>&1"
umount /data
check "  fsck clean" e2fsck -fn /dev/vda
check "  no log left" no_log

# --- health commits --------------------------------------------------------
check "start" bowctl start --retries 2
check "boot: attempt" boot
change 2
check "health below the threshold, default --on-low (commit, vold's default): commits" bowctl health --once --min-free 100G
eq "  state 2" 2 "$(cat "$(bow_sysfs userdata)"/state)"
check "  record removed" [ ! -f $REC ]
eq "pending after the commit: no (3)" 3 "$(bowctl pending >/dev/null 2>&1; echo $?)"
eq "checkpointing after the commit: no (3)" 3 "$(bowctl checkpointing >/dev/null 2>&1; echo $?)"
eq "commit again: nothing to do (3)" 3 "$(bowctl commit userdata >/dev/null 2>&1; echo $?)"
reboot_sim
check "boot after the commit: plain mount" boot
check "  no update pending" grep -q "no update pending" /tmp/boot.out
files_are "  the new data stayed" "new 2"
ORIG=$(tree_sum)
umount /data

# --- retries used up -------------------------------------------------------
check "start --retries 1" bowctl start --retries 1
check "boot: attempt 1 of 1" boot
change 3
reboot_sim
check "boot: attempts used up, rolls back" boot
check "  it says every attempt was used" grep -q "every boot attempt was used" /tmp/boot.out
files_are "  the data is as before the update" "new 2"
eq "  every file equals the pre-update data" "$ORIG" "$(tree_sum)"
umount /data

# --- an interrupted commit finishes as a commit ----------------------------
check "start" bowctl start --retries 2
check "boot: attempt" boot
change 4
expect_fail "commit cut after its record (test hook)" env BOWCTL_TEST_STOP_AFTER_RECORD=1 bowctl commit
check "  the record says committing" grep -q '"committing": true' $REC
eq "  the device is still in state 1" 1 "$(cat "$(bow_sysfs userdata)"/state)"
expect_fail "abort is refused once committing" bowctl abort
reboot_sim
check "boot: finishes the commit (roll forward)" boot
check "  it says so" grep -q "interrupted commit" /tmp/boot.out
files_are "  the new data is kept" "new 4"
check "  record removed" [ ! -f $REC ]
ORIG=$(tree_sum)
umount /data
check "  no log left" no_log
check "  fsck clean" e2fsck -fn /dev/vda

# --- a damaged record ------------------------------------------------------
check "start" bowctl start --retries 2
check "boot: attempt" boot
change 5
reboot_sim
echo '{"record": {"version": 1, "retries": 2, "remaining": 7' > $REC
check "damaged record with a valid log: rolls back" boot
check "  it warns about the record" grep -q "damaged\|warning" /tmp/boot.out
check "  the damaged record is kept aside" [ -f $REC.corrupt ]
files_are "  the data is as before the update" "new 4"
eq "  every file equals the pre-update data" "$ORIG" "$(tree_sum)"
umount /data
rm -f $REC.corrupt
echo garbage > $REC
check "damaged record, no log: plain mount" boot
check "  no bow device" sh -c "! dmsetup info userdata >/dev/null 2>&1"
eq "  the files are unchanged" "$ORIG" "$(tree_sum)"
umount /data
check "  no log written" no_log
rm -f $REC.corrupt

# --- an invalid log is never rolled back -----------------------------------
check "start" bowctl start --retries 2
check "boot: attempt" boot
change 6
reboot_sim
# Damage entry 1's checksum in the log block (block 0: a 28-byte header,
# then 24-byte entries with the checksum at 20).
printf '\377\377\377\377' | dd of=/dev/vda bs=1 seek=$(( 28 + 24 + 20 )) conv=notrunc 2>/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches
BAD=$(disk_sum)
cp $REC /tmp/rec.before
boot; rc=$?
eq "boot refuses an invalid log with exit status 4" 4 "$rc"
check "  it names the problem" grep -q -i "checksum\|invalid" /tmp/boot.out
check "  nothing mounted" sh -c "! grep -q ' /data ' /proc/mounts"
eq "  nothing written to the disk" "$BAD" "$(disk_sum)"
check "  the record is unchanged" cmp $REC /tmp/rec.before
bowctl restore --roll-forward /dev/vda > /dev/null
check "after an explicit roll forward, boot starts a new attempt" boot
reboot_sim
bowctl restore /dev/vda > /dev/null
rm -f $REC

# --- the initramfs-tools script --------------------------------------------
check "start" bowctl start --retries 1
umount /metadata
mkdir -p /root/data /run
cat > /etc/bow.conf <<EOF
BOW_DATA_DEV=/dev/vda
BOW_META_DEV=/dev/vdb
BOW_DATA_DIR=/data
BOW_BLOCK_SIZE=4096
EOF
check "initramfs local-bottom script: attempt under bow at \${rootmnt}/data" env rootmnt=/root sh /usr/lib/bow/initramfs-local-bottom
eq "  mounted through bow at /root/data, state 1" 1 "$(cat "$(bow_sysfs userdata)"/state 2>/dev/null)"
check "  the metadata partition is unmounted again" sh -c "! grep -q ' /run/bow-metadata ' /proc/mounts"
umount /root/data
dmsetup remove userdata
rm -f /etc/bow.conf
mount /dev/vdb /metadata
check "  the record counted the attempt" grep -q '"remaining": 0' $REC
check "boot: rolls back" boot
umount /data
umount /metadata
check "no bow device left; the module unloads" rmmod dm_bow
finish
