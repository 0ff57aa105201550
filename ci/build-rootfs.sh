#!/usr/bin/env bash
# Builds the root filesystem of the xfstests guest: Debian bookworm
# (debootstrap --variant=minbase, from Debian's own packages) plus the tools
# xfstests needs. busybox is not enough for xfstests.
#
# The tree is cached in $BOW_CACHE/rootfs-<key>/root, keyed by the suite, the
# mirror, the package list and this script. Prints the tree's directory.
# usage: ci/build-rootfs.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SUITE=bookworm
MIRROR=${BOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(
    # the shell and text tools xfstests is written in
    bash perl gawk bc sed grep findutils coreutils diffutils hostname bsdextrautils
    # block devices, mounts and filesystems
    util-linux mount e2fsprogs xfsprogs dmsetup kmod
    # what the tests call
    attr acl psmisc procps fio xfsdump python3 lvm2
    # the runtime libraries of the xfstests binaries
    libaio1 liburing2 libacl1 libattr1 libuuid1
)

[ "$(id -u)" = 0 ] || die "ci/build-rootfs.sh must run as root (debootstrap)"
command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
        || die "could not install debootstrap"
}

key=$( { echo "$SUITE $MIRROR"; printf '%s\n' "${PACKAGES[@]}"; cat "$0"; } | sha256sum | cut -c1-12)
out=$BOW_CACHE/rootfs-$key
if [ -f "$out/.bow-done" ]; then
    echo "$out/root"
    exit 0
fi

log "debootstrap $SUITE (minbase) into $out (a few minutes)"
rm -rf "$out"
mkdir -p "$out"
include=$(IFS=,; echo "${PACKAGES[*]}")
if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$out/root" "$MIRROR" \
        > "$out/debootstrap.log" 2>&1; then
    tail -30 "$out/debootstrap.log" >&2
    die "debootstrap failed; full log in $out/debootstrap.log"
fi

r=$out/root
# Space is precious in the image: no package cache, docs or locales.
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* \
       "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/locale/* "$r"/usr/share/info/*
# The users and groups xfstests expects (README: fsgqa, fsgqa2, 123456-fsgqa).
chroot "$r" /bin/sh -e -c '
    groupadd -f fsgqa
    id fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa
    id fsgqa2 >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa2
    id 123456-fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa 123456-fsgqa
'
echo xfstests-vm > "$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 xfstests-vm\n' > "$r/etc/hosts"
: > "$r/etc/fstab"
dpkg-query --admindir="$r/var/lib/dpkg" -W > "$out/packages.txt"
touch "$out/.bow-done"
echo "$r"
