#!/usr/bin/env bash
# Builds a static bowctl for aarch64 (Android devices are arm64) on an x86_64
# Debian bookworm host. Prints the binary's path on stdout.
#
# The linker is rust-lld, which ships with the rustup toolchain; the musl
# start files and libc.a come with the target's rust-std. No cross compiler,
# no Debian cross packages. If qemu-aarch64-static is installed (Debian's
# qemu-user-static), the binary is also run once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BOW_ROOT"
TARGET=aarch64-unknown-linux-musl

if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "installing rust target $TARGET"
    rustup target add "$TARGET" >&2
fi
command -v file >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file >/dev/null

log "building static bowctl ($TARGET)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    cargo build --quiet --release --locked -p bowctl --target "$TARGET" >&2

bin=$BOW_ROOT/target/$TARGET/release/bowctl
desc=$(file -b "$bin")
[[ $desc == *"ARM aarch64"* && $desc == *"statically linked"* ]] || die "unexpected binary: $desc"
log "$(stat -c %s "$bin") bytes: $desc"
if command -v qemu-aarch64-static >/dev/null; then
    qemu-aarch64-static "$bin" --version >&2 || die "$bin does not run under qemu-aarch64-static"
fi
echo "$bin"
