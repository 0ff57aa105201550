#!/usr/bin/env bash
# Fetches the arm64 guests' userspace: Debian bookworm's arm64 packages of the
# tools the VM scenarios call (busybox, dmsetup, e2fsprogs, xfsprogs,
# dosfstools, fio, util-linux, ...) and the libraries they need, unpacked
# into one tree. Nothing runs: debootstrap's first stage (--foreign) resolves
# and downloads the packages, and every one of them is unpacked with
# dpkg-deb, so no arm64 emulation or host multiarch setup is needed.
# ci/build-initramfs.sh takes the binaries and their libraries from it.
#
# Cached in $BOW_CACHE/arm64-userland-<key>/root, keyed by the suite, the
# mirror, the package list and this script. Prints the tree's directory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SUITE=bookworm
MIRROR=${BOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(busybox-static dmsetup e2fsprogs xfsprogs dosfstools fio util-linux diffutils coreutils)

[ "$(id -u)" = 0 ] || die "ci/build-arm64-userland.sh must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (run ci/setup.sh)"

key=$( { echo "$SUITE $MIRROR"; printf '%s\n' "${PACKAGES[@]}"; cat "$0"; } | sha256sum | cut -c1-12)
out=$BOW_CACHE/arm64-userland-$key
if [ -f "$out/.bow-done" ]; then
    echo "$out/root"
    exit 0
fi

log "fetching Debian $SUITE arm64 packages into $out (a minute or two)"
rm -rf "$out"
mkdir -p "$out"
r=$out/root
include=$(IFS=,; echo "${PACKAGES[*]}")
if ! debootstrap --foreign --arch=arm64 --variant=minbase --include="$include" \
        "$SUITE" "$r" "$MIRROR" > "$out/debootstrap.log" 2>&1; then
    tail -30 "$out/debootstrap.log" >&2
    die "debootstrap (first stage, arm64) failed; full log in $out/debootstrap.log"
fi
# The first stage unpacks only the essential packages; the rest wait in the
# archive cache for a second stage that would run in the guest. Unpack them
# all here.
n=0
for deb in "$r"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$r" || die "could not unpack $deb"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || die "debootstrap left no packages in $r/var/cache/apt/archives"
for p in "${PACKAGES[@]}"; do
    ls "$r"/var/cache/apt/archives/"${p}"_*_arm64.deb >/dev/null 2>&1 \
        || ls "$r"/var/cache/apt/archives/"${p}"_*_all.deb >/dev/null 2>&1 \
        || die "package $p was not fetched"
done
rm -f "$r"/var/cache/apt/archives/*.deb
[ -x "$r/bin/busybox" ] || die "no arm64 busybox in $r"
file -b "$r/bin/busybox" | grep -q 'ARM aarch64' || die "$r/bin/busybox is not an aarch64 binary"
touch "$out/.bow-done"
log "unpacked $n arm64 packages"
echo "$r"
