#!/usr/bin/env bash
# Builds a Debian bookworm root filesystem for a guest (debootstrap
# --variant=minbase, from Debian's own packages):
#   xfstests (default): the tools xfstests needs; busybox is not enough for it
#   systemd: systemd as PID 1 with udev and D-Bus, and RAUC, for the
#            systemd-booted update guest (tests/vm/systemd.sh)
#
# The tree is cached in $BOW_CACHE/rootfs-<key>/root, keyed by the flavour,
# the suite, the mirror, the package list and this script. Prints the tree's
# directory.
# usage: ci/build-rootfs.sh [xfstests|systemd]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FLAVOUR=${1:-xfstests}
SUITE=bookworm
MIRROR=${BOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
case "$FLAVOUR" in
    xfstests) PACKAGES=(
        # the shell and text tools xfstests is written in
        bash perl gawk bc sed grep findutils coreutils diffutils hostname bsdextrautils
        # block devices, mounts and filesystems
        util-linux mount e2fsprogs xfsprogs dmsetup kmod
        # what the tests call
        attr acl psmisc procps fio xfsdump python3 lvm2
        # the runtime libraries of the xfstests binaries
        libaio1 liburing2 libacl1 libattr1 libuuid1
    ) ;;
    systemd) PACKAGES=(
        # PID 1, device events and the system bus RAUC's service is on
        systemd udev dbus
        # the updater: its command line and its D-Bus service
        rauc rauc-service
        # what the units and the test call
        util-linux mount e2fsprogs dmsetup kmod procps
    ) ;;
    *) die "unknown rootfs flavour '$FLAVOUR' (xfstests or systemd)" ;;
esac

[ "$(id -u)" = 0 ] || die "ci/build-rootfs.sh must run as root (debootstrap)"
command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
        || die "could not install debootstrap"
}

key=$( { echo "$FLAVOUR $SUITE $MIRROR"; printf '%s\n' "${PACKAGES[@]}"; cat "$0"; } | sha256sum | cut -c1-12)
out=$BOW_CACHE/rootfs-$key
# One build at a time: the test command starts this early in the
# background, and the test that needs the tree may ask for it meanwhile.
mkdir -p "$BOW_CACHE"
exec 9> "$out.lock"
flock 9
if [ -f "$out/.bow-done" ]; then
    echo "$out/root"
    exit 0
fi

log "debootstrap $SUITE (minbase, $FLAVOUR) into $out (a few minutes)"
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
if [ "$FLAVOUR" = xfstests ]; then
    # The users and groups xfstests expects (README: fsgqa, fsgqa2, 123456-fsgqa).
    chroot "$r" /bin/sh -e -c '
        groupadd -f fsgqa
        id fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa
        id fsgqa2 >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa2
        id 123456-fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa 123456-fsgqa
    '
    host=xfstests-vm
else
    host=bow-systemd-vm
fi
echo "$host" > "$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$host" > "$r/etc/hosts"
: > "$r/etc/fstab"
dpkg-query --admindir="$r/var/lib/dpkg" -W > "$out/packages.txt"
touch "$out/.bow-done"
echo "$r"
