#!/usr/bin/env bash
# Builds the test kernel named by BOW_KERNEL (x86_64, the default; arm64-4k,
# arm64-16k: ci/lib.sh) from Debian's linux-source-6.12 with LLVM=1 and the
# committed config fragments (ci/kernel/). The result is cached in $BOW_CACHE, keyed by the
# source version, the fragments and the toolchain; a warm cache costs nothing.
# Prints the build directory on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$(kernel_src)
out=$(kernel_build)
if [ -f "$out/.bow-done" ]; then
    echo "$out"
    exit 0
fi

# The test command builds the arm64 kernels while the x86_64 one builds:
# one extraction at a time.
mkdir -p "$BOW_CACHE"
exec 9> "$BOW_CACHE/extract.lock"
flock 9
if [ ! -f "$src/.bow-extracted" ]; then
    log "extracting linux-source $(kernel_version) into $src"
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    tar -C "$src.tmp" --strip-components=1 -xf /usr/src/linux-source-6.12.tar.xz
    mv "$src.tmp" "$src"
    touch "$src/.bow-extracted"
fi
flock -u 9
exec 9>&-

log "building the $BOW_KERNEL kernel into $out (a cold build takes several minutes)"
rm -rf "$out"
mkdir -p "$out"
mapfile -t margs < <(kernel_make_args)
mapfile -t frags < <(kernel_fragments)
mk() { make -C "$src" O="$out" "${margs[@]}" "$@"; }
mk rustavailable >/dev/null || { mk rustavailable || true; die "the Rust toolchain is not usable for this kernel"; }
mk tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frags[@]}" >/dev/null
mk olddefconfig >/dev/null

# merge_config does not fail when a symbol cannot be set; we do. A later
# fragment may override an earlier one (the arm64 kernels drop what only
# the x86_64 guests use), so only each symbol's last setting is checked.
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qxF "$line" "$out/.config" || { echo "kernel config: $line did not stick" >&2; missing=1; } ;;
        "# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}
            grep -q "^$sym=" "$out/.config" && { echo "kernel config: $sym should be unset" >&2; missing=1; } ;;
    esac
done < <(cat "${frags[@]}" | awk '
    /^CONFIG_[A-Za-z0-9_]*=/ { sym = $0; sub(/=.*/, "", sym) }
    /^# CONFIG_[A-Za-z0-9_]* is not set/ { sym = $2 }
    sym != "" { if (!(sym in last)) order[++n] = sym; last[sym] = $0; sym = "" }
    END { for (i = 1; i <= n; i++) print last[order[i]] }')
[ "$missing" = 0 ] || die "config fragments did not apply cleanly"

start=$(date +%s)
mk -j"$(( $(nproc) + 1 ))" "$(basename "$(kernel_image)")" modules > "$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log" >&2; die "kernel build failed; full log in $out/build.log"; }
log "kernel built in $(( $(date +%s) - start )) s"
touch "$out/.bow-done"
echo "$out"
