# shellcheck shell=dash # busybox ash runs it (ShellCheck has no ash dialect)
# timeout: 1200
# cost: 263
# checks: 105
# The checkpoint round trip (see roundtrip in lib.sh) on ext4 with 4 KiB and
# 1 KiB blocks, xfs and vfat, with and without block_size:4096.
. /tests/lib.sh
# shellcheck disable=SC2034 # DISK, COPY and MIB are read by lib.sh's roundtrip
DISK=/dev/vda COPY=/dev/vdb
insmod /lib/modules/dm-bow.ko || { fail insmod; finish; }
# fstests' escape hatch for mkfs.xfs's 300 MiB minimum on small test devices.
export TEST_DIR=/mnt TEST_DEV=/dev/null QA_CHECK_FS=1

# shellcheck disable=SC2034 # read by lib.sh's roundtrip
MIB=64
TABLE_OPTS="1 block_size:4096" FSBS=4096 roundtrip "ext4-4k bs4096" mkfs.ext4 -q -F -b 4096
TABLE_OPTS="" FSBS=512 roundtrip "ext4-4k default" mkfs.ext4 -q -F -b 4096
TABLE_OPTS="" FSBS=512 roundtrip "ext4-1k default" mkfs.ext4 -q -F -b 1024
TABLE_OPTS="1 block_size:4096" FSBS=4096 roundtrip "xfs bs4096" mkfs.xfs -q -f
TABLE_OPTS="" FSBS=512 roundtrip "xfs default" mkfs.xfs -q -f
TABLE_OPTS="1 block_size:4096" FSBS=4096 roundtrip "vfat bs4096" mkfs.vfat -S 4096
TABLE_OPTS="" FSBS=512 roundtrip "vfat default" mkfs.vfat
rmmod dm_bow
finish
