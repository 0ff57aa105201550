#!/usr/bin/env bash
# Installs everything the build and the tests need on Debian bookworm, as root.
# Idempotent and silent when everything is already there; when something cannot
# be installed it says exactly what and stops.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BINDGEN_VERSION=0.73.2
DEB_PACKAGES=(
    # kernel and module build
    clang lld llvm libclang-dev flex bison bc libelf-dev libssl-dev cpio kmod make
    linux-source-6.12 xz-utils
    # the VM and its userspace
    qemu-system-x86 busybox-static e2fsprogs xfsprogs dosfstools dmsetup fio
    # the arm64 guests: the emulator, and debootstrap for their userspace
    # (ci/build-arm64-userland.sh); `file` checks the static aarch64 bowctl
    qemu-system-arm debootstrap file
    # the systemd guest (tests/vm/systemd.sh): RAUC bundles are built and
    # signed on the host; debugfs (e2fsprogs) reads its disks afterwards
    rauc squashfs-tools openssl
    # host-side checks
    util-linux coreutils gzip
    # where a hung guest's vCPUs are (tests/vm/run.sh, through qemu's gdb stub)
    gdb-multiarch
    # lint (ci/lint.sh): shellcheck; checkpatch.pl is perl; RST checks
    shellcheck perl python3 python3-docutils
    # lint: systemd-analyze verify of examples/systemd
    systemd
    # the protocol's model (tests/model/run.sh)
    spin gcc
    # the install path (ci/install-test.sh)
    dkms
    # the Android SELinux policy example (tests/sepolicy/run.sh)
    checkpolicy secilc selinux-utils m4
)
RUST_COMPONENTS=(rust-src rustfmt clippy)
RUST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

[ "$(id -u)" = 0 ] || die "ci/setup.sh must run as root (it installs Debian packages)"

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/bow-apt.log 2>&1; then
        tail -20 /tmp/bow-apt.log >&2
        die "could not install Debian packages: ${missing[*]}"
    fi
fi

command -v rustup >/dev/null || die "rustup not found: install the Rust toolchain with rustup first"
installed_components=$(rustup component list --installed)
for c in "${RUST_COMPONENTS[@]}"; do
    grep -q "^$c" <<<"$installed_components" || {
        log "rustup component add $c"
        rustup component add "$c" >/dev/null 2>&1 || die "rustup could not add component $c"
    }
done
installed_targets=$(rustup target list --installed)
for t in "${RUST_TARGETS[@]}"; do
    grep -qx "$t" <<<"$installed_targets" || {
        log "rustup target add $t"
        rustup target add "$t" >/dev/null 2>&1 || die "rustup could not add target $t"
    }
done

if ! bindgen --version 2>/dev/null | grep -qx "bindgen $BINDGEN_VERSION"; then
    log "cargo install bindgen-cli $BINDGEN_VERSION (a few minutes)"
    cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION" \
        || die "cargo could not install bindgen-cli $BINDGEN_VERSION"
fi
