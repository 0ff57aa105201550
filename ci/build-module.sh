#!/usr/bin/env bash
# Builds dm-bow.ko out of tree against the cached test kernel.
# Prints the path of the module on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kb=$(bash "$BOW_ROOT/ci/build-kernel.sh")
log "building dm-bow.ko against $kb"
out=$BOW_ROOT/target/module.log
mkdir -p "$BOW_ROOT/target"
# Kbuild does not always see that the kernel changed under an out-of-tree
# module: after a switch between two cached kernels it kept a dm-bow.ko
# with the other kernel's vermagic ("preempt"), which insmod refused.
# Objects built against another kernel are cleaned first.
stamp=$BOW_ROOT/target/module.kernel
if [ "$(cat "$stamp" 2>/dev/null)" != "$kb" ]; then
    make -C "$kb" M="$BOW_ROOT" LLVM=1 clean >/dev/null 2>&1 || true
fi
if ! make -C "$kb" M="$BOW_ROOT" LLVM=1 -j"$(nproc)" modules >"$out" 2>&1; then
    cat "$out" >&2
    die "module build failed"
fi
# Warnings are bugs too: show them.
grep -E "warning|error" "$out" >&2 || true
echo "$kb" > "$stamp"
echo "$BOW_ROOT/dm-bow/dm-bow.ko"
