#!/usr/bin/env bash
# Builds the static bowctl that the VM image and recovery environments use.
# Prints its path on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BOW_ROOT"
log "building static bowctl (x86_64-unknown-linux-musl)"
cargo build --quiet --release --locked -p bowctl --target x86_64-unknown-linux-musl >&2
echo "$BOW_ROOT/target/x86_64-unknown-linux-musl/release/bowctl"
