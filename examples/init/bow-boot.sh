#!/bin/sh
# bow-boot.sh: the boot half of an A/B update under dm-bow, for an init
# written in busybox sh (Android-style or embedded Linux). Run it once per
# boot, before anything uses the data partition. It mounts the metadata
# partition that holds bowctl's update record, then lets `bowctl boot`
# decide: roll back, checkpoint under bow, or just mount.
#
# Settings (environment, or the file BOW_CONF, default /etc/bow.conf):
#   BOW_DATA_DEV      the protected data partition     (required)
#   BOW_DATA_DIR      where it is mounted               (/data)
#   BOW_NAME          the bow device's name             (userdata)
#   BOW_META_DEV      the metadata partition            (required)
#   BOW_META_DIR      where it is mounted               (/metadata)
#   BOW_FS_OPTIONS    mount options for the data        (empty)
#   BOW_BLOCK_SIZE    bow block size                    (the device's)
#
# Exit status: 0 when the data is mounted; bowctl's status otherwise (4: the
# checkpoint log is invalid and was left untouched; see `bowctl inspect`).
# shellcheck source=/dev/null # the site's own settings, not in this tree
[ -f "${BOW_CONF:=/etc/bow.conf}" ] && . "$BOW_CONF"
: "${BOW_DATA_DIR:=/data}" "${BOW_NAME:=userdata}" "${BOW_META_DIR:=/metadata}"
: "${BOW_FS_OPTIONS:=}" "${BOW_BLOCK_SIZE:=}"
if [ -z "$BOW_DATA_DEV" ] || [ -z "$BOW_META_DEV" ]; then
    echo "bow-boot: BOW_DATA_DEV and BOW_META_DEV must be set" >&2
    exit 2
fi

# The record lives on the metadata partition, never on the protected one.
mkdir -p "$BOW_META_DIR" "$BOW_DATA_DIR"
if ! grep -q " $BOW_META_DIR " /proc/mounts; then
    mount "$BOW_META_DEV" "$BOW_META_DIR" || { echo "bow-boot: cannot mount $BOW_META_DEV" >&2; exit 1; }
fi
export BOWCTL_RECORD="$BOW_META_DIR/bow/checkpoint.json"

# dm-bow must be there before bowctl can create a device (built in, or a module).
[ -d /sys/module/dm_bow ] || modprobe dm-bow 2>/dev/null || true

set -- boot "$BOW_DATA_DEV" "$BOW_DATA_DIR" --name "$BOW_NAME"
[ -n "$BOW_FS_OPTIONS" ] && set -- "$@" -o "$BOW_FS_OPTIONS"
[ -n "$BOW_BLOCK_SIZE" ] && set -- "$@" --block-size "$BOW_BLOCK_SIZE"
bowctl "$@"
rc=$?
if [ $rc != 0 ]; then
    echo "bow-boot: bowctl boot failed ($rc); the data partition is not mounted" >&2
fi
exit $rc
