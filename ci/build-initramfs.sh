#!/usr/bin/env bash
# Builds the guest's initramfs from Debian's binaries: busybox, dmsetup and its
# libraries, e2fsprogs, xfsprogs, dosfstools, fio, the static bowctl, the
# module and the test scripts.
# usage: build-initramfs.sh <dm-bow.ko> <bowctl> <output.cpio.gz> [<root>]
# With <root>, another architecture's tree of those packages
# (ci/build-arm64-userland.sh), the binaries and libraries come from there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ko=$1 bowctl=$2 out=$3 root=${4:-}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,tmp,mnt,run,etc,tests}
cp -L "${root:-}/bin/busybox" "$stage/bin/busybox"

# copy_lib <name>: a shared library of <root>, by its soname, and the
# libraries it needs in turn (DT_NEEDED, read with readelf: nothing of
# another architecture can run here).
copy_lib() {
    local f
    [ -e "$stage/lib/$1" ] && return 0
    # Some sit in a subdirectory named by the binary's RUNPATH (ceph's, for
    # fio's librbd): the first file of that name under lib or usr/lib.
    f=$(find "$root/lib" "$root/usr/lib" -name "$1" -print -quit)
    [ -n "$f" ] || die "initramfs: library $1 not found in $root"
    cp -L "$f" "$stage/lib/$1"
    copy_needed "$f"
}
copy_needed() {
    local lib
    for lib in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        copy_lib "$lib"
    done
}

# Binaries copied with the shared libraries they need (found with ldd, or
# in <root> for another architecture).
copy_bin() {
    if [ -n "$root" ]; then
        local d interp
        for d in usr/sbin usr/bin sbin bin; do
            if [ -e "$root/$d/$1" ]; then
                cp -L "$root/$d/$1" "$stage/usr/sbin/$1"
                interp=$(readelf -l "$root/$d/$1" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
                if [ -n "$interp" ] && [ ! -e "$stage$interp" ]; then
                    mkdir -p "$stage$(dirname "$interp")"
                    cp -L "$root$interp" "$stage$interp"
                fi
                copy_needed "$root/$d/$1"
                return 0
            fi
        done
        die "initramfs: $1 not found in $root"
    fi
    local src dst lib
    src=$(command -v "$1" || true)
    [ -n "$src" ] || die "initramfs: $1 not found on the host (run ci/setup.sh)"
    src=$(readlink -f "$src")
    dst="$stage/usr/sbin/$1"
    cp "$src" "$dst"
    ldd "$src" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        [ -e "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}
for b in dmsetup mke2fs e2fsck dumpe2fs debugfs tune2fs mkfs.xfs xfs_repair xfs_db xfs_io \
         mkfs.fat fsck.fat fio blkdiscard fstrim fsfreeze cmp dd getconf; do
    copy_bin "$b"
done
ln -s mke2fs "$stage/usr/sbin/mkfs.ext4"
ln -s e2fsck "$stage/usr/sbin/fsck.ext4"
ln -s mkfs.fat "$stage/usr/sbin/mkfs.vfat"
ln -s fsck.fat "$stage/usr/sbin/fsck.vfat"
# mke2fs reads its defaults from here.
[ -f "$root/etc/mke2fs.conf" ] && cp "$root/etc/mke2fs.conf" "$stage/etc/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$stage/etc/passwd"
echo 'root:x:0:' > "$stage/etc/group"

cp "$bowctl" "$stage/usr/sbin/bowctl"
mkdir -p "$stage/lib/modules"
cp "$ko" "$stage/lib/modules/dm-bow.ko"
cp -r "$BOW_ROOT"/tests/vm/guest/. "$stage/tests/"
cp -r "$BOW_ROOT"/tests/vm/scenarios "$stage/tests/scenarios"
# The example init scripts, run as an init would run them.
mkdir -p "$stage/usr/lib/bow"
cp "$BOW_ROOT"/examples/init/*.sh "$stage/usr/lib/bow/"
cp "$BOW_ROOT"/examples/initramfs-tools/scripts/local-bottom/bow "$stage/usr/lib/bow/initramfs-local-bottom"
mv "$stage/tests/init" "$stage/init"
chmod +x "$stage/init"

(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$out"
