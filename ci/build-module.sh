#!/usr/bin/env bash
# Builds dm-bow.ko out of tree against the cached test kernel.
# Prints the path of the module on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kb=$(bash "$BOW_ROOT/ci/build-kernel.sh")
log "building dm-bow.ko against $kb"
out=$BOW_ROOT/target/module.log
mkdir -p "$BOW_ROOT/target"
if ! make -C "$kb" M="$BOW_ROOT" LLVM=1 -j"$(nproc)" modules >"$out" 2>&1; then
    cat "$out" >&2
    die "module build failed"
fi
# Warnings are bugs too: show them.
grep -E "warning|error" "$out" >&2 || true
echo "$BOW_ROOT/dm-bow/dm-bow.ko"
