#!/usr/bin/env bash
# Builds dm-bow.ko out of tree against the cached test kernel (BOW_KERNEL).
# Prints the path of the module on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kb=$(bash "$BOW_ROOT/ci/build-kernel.sh")
mapfile -t margs < <(kernel_make_args)
# Kbuild builds an external module inside its source directory. The x86_64
# module is built in the checkout; another kernel's in a copy of the files a
# source package ships (target/<kernel>/src), so builds for two kernels never
# share objects.
src=$BOW_ROOT
if [ "$BOW_KERNEL" != x86_64 ]; then
    src=$BOW_ROOT/target/$BOW_KERNEL/src
    mkdir -p "$src"
    # Sources only (no objects of the checkout's build); -u -p keep an
    # unchanged file's time, so make rebuilds only what changed.
    module_sources | (cd "$BOW_ROOT" && xargs cp -u -p --parents -t "$src")
fi
log "building dm-bow.ko against $kb"
out=$src/target/module.log
mkdir -p "$src/target"
# Kbuild does not always see that the kernel changed under an out-of-tree
# module: after a switch between two cached kernels it kept a dm-bow.ko
# with the other kernel's vermagic ("preempt"), which insmod refused.
# Objects built against another kernel are cleaned first.
stamp=$src/target/module.kernel
if [ "$(cat "$stamp" 2>/dev/null)" != "$kb" ]; then
    make -C "$kb" M="$src" "${margs[@]}" clean >/dev/null 2>&1 || true
fi
if ! make -C "$kb" M="$src" "${margs[@]}" -j"$(nproc)" modules >"$out" 2>&1; then
    cat "$out" >&2
    die "module build failed"
fi
# Warnings are bugs too: show them.
grep -E "warning|error" "$out" >&2 || true
echo "$kb" > "$stamp"
echo "$src/dm-bow/dm-bow.ko"
