#!/usr/bin/env bash
# The install path, tested against the test kernel's build tree: the root
# Makefile (`make`, `make install`), DKMS (`dkms add` and `dkms build` with
# the repository's dkms.conf), and the clear errors on a kernel without
# CONFIG_RUST and without LLVM. Each check is one row of
# target/install/results.tsv; exits 1 if any fails.
#
# Every build happens in a copy of the files a source package would ship
# (Kbuild, Makefile, dkms.conf, dm-bow/, bow-core/src/), so the check also
# proves that list is complete.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

# BOW_KERNEL (ci/lib.sh) names the kernel tree; an arm64 one is a cross
# build (the Makefile reads ARCH from the tree's configuration), tested with
# make, make install and DKMS; the error messages are checked on x86_64.
out=$BOW_ROOT/target/install
tag=""
if [ "$BOW_KERNEL" != x86_64 ]; then
    out=$BOW_ROOT/target/install-$BOW_KERNEL
    tag="$BOW_KERNEL: "
fi
rm -rf "$out"
mkdir -p "$out"
results=$out/results.tsv
: > "$results"
kb=$(kernel_build)
[ -f "$kb/include/config/auto.conf" ] || die "no test kernel build at $kb (run ci/build-kernel.sh)"
rel=$(make -s -C "$kb" kernelrelease 2>/dev/null)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

row() { printf 'install\t%s%s\t%s\n' "$tag" "$1" "$2" >> "$results"; echo "$(echo "$2" | tr a-z A-Z): install: $tag$1"; }
# check <what> <command...>
check() { local what=$1; shift; if "$@" > "$tmp/last.log" 2>&1; then row "$what" pass; else row "$what" fail; sed 's/^/    /' "$tmp/last.log" | tail -20; fi; }
# fails_with <what> <message part> <command...>: the command fails and says so.
fails_with() {
    local what=$1 msg=$2; shift 2
    if "$@" > "$tmp/last.log" 2>&1; then
        row "$what" fail; echo "    it succeeded"
    elif grep -qF -- "$msg" "$tmp/last.log"; then
        row "$what" pass
    else
        row "$what" fail; sed 's/^/    /' "$tmp/last.log" | tail -20
    fi
}
# vermagic_ok <ko>: the module was built for the test kernel.
vermagic_ok() { [ -f "$1" ] && modinfo -F vermagic "$1" | grep -q "^$rel "; }
# is_aarch64 <file>: an arm64 object.
is_aarch64() { [ -f "$1" ] && file -b "$1" | grep -q 'ARM aarch64'; }

# The files a source package ships.
src=$tmp/src/dm-bow-1.0.0
mkdir -p "$src"
module_sources | (cd "$BOW_ROOT" && cpio -pdm --quiet "$src")
grep -q '^BUILT_MODULE_NAME\[0\]="dm-bow"' "$src/dkms.conf" || die "dkms.conf not in the shipped files"

log "install: make against $kb ($rel)"
build=$tmp/build
cp -a "$src" "$build"
check "make KDIR=<test kernel> builds dm-bow.ko" nice make -C "$build" KDIR="$kb" -j"$(nproc)"
check "the module is built for the kernel it was given ($rel)" vermagic_ok "$build/dm-bow/dm-bow.ko"
if [ "$(kernel_arch)" = arm64 ]; then
    check "the module is an arm64 object (cross-compiled, ARCH from the tree)" \
        is_aarch64 "$build/dm-bow/dm-bow.ko"
fi
check "make install puts it in updates/" \
    nice make -C "$build" KDIR="$kb" INSTALL_MOD_PATH="$tmp/root" DEPMOD=true install
check "installed: /lib/modules/$rel/updates/dm-bow/dm-bow.ko" vermagic_ok "$tmp/root/lib/modules/$rel/updates/dm-bow/dm-bow.ko"

if [ "$BOW_KERNEL" = x86_64 ]; then
    log "install: the errors a user meets"
    # A kernel tree configured without CONFIG_RUST (only what the check reads).
    mkdir -p "$tmp/norust/include/config"
    touch "$tmp/norust/Makefile"
    grep -v '^CONFIG_RUST' "$kb/include/config/auto.conf" > "$tmp/norust/include/config/auto.conf"
    fails_with "make against a kernel without CONFIG_RUST says so" "built without CONFIG_RUST=y" \
        make -C "$build" KDIR="$tmp/norust"
    fails_with "make with no kernel build directory says so" "no kernel build directory" \
        make -C "$build" KDIR="$tmp/nothing"
    # Kbuild's own checks, for whoever calls kbuild directly.
    fails_with "kbuild without CONFIG_RUST says so" "built without CONFIG_RUST=y" \
        make -C "$kb" M="$build" LLVM=1 CONFIG_RUST= modules
    fails_with "kbuild without LLVM=1 says so" "pass LLVM=1" \
        make -C "$kb" M="$build" modules
fi

log "install: DKMS"
if ! command -v dkms > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dkms > "$tmp/apt.log" 2>&1 \
        || { row "dkms installed" fail; tail -5 "$tmp/apt.log"; }
fi
if command -v dkms > /dev/null; then
    d=(--dkmstree "$tmp/dkms" --sourcetree "$tmp/src")
    mkdir -p "$tmp/dkms"
    check "dkms add" dkms add "${d[@]}" -m dm-bow -v 1.0.0
    check "dkms build against the test kernel" \
        nice dkms build "${d[@]}" -m dm-bow -v 1.0.0 -k "$rel" --kernelsourcedir "$kb"
    ko=$(find "$tmp/dkms/dm-bow/1.0.0/$rel" -name 'dm-bow.ko*' 2>/dev/null | head -1)
    check "dkms built dm-bow.ko for $rel" vermagic_ok "${ko:-none}"
    if [ "$(kernel_arch)" = arm64 ]; then
        check "dkms built an arm64 object" is_aarch64 "${ko:-none}"
    fi
fi

p=$(grep -c $'\tpass$' "$results" || true)
f=$(grep -c $'\tfail$' "$results" || true)
echo "install: $p passed, $f failed"
[ "$f" = 0 ]
