#!/usr/bin/env bash
# Builds xfstests (fstests) from a source checkout for the xfstests guest.
# The checkout is not part of this repository: pass its path in XFSTESTS_SRC
# (e.g. a clone of https://github.com/kdave/xfstests, a mirror of upstream
# fstests). The build runs on the host, which is Debian bookworm like the
# guest's root filesystem, so the binaries link against the same libraries.
#
# The result is cached in $BOW_CACHE/xfstests-<key>, keyed by the checkout's
# commit (and a hash of any uncommitted changes) and the versions of the build
# dependencies. A warm cache costs nothing. Prints the build directory.
# usage: XFSTESTS_SRC=/path/to/xfstests ci/build-xfstests.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=${XFSTESTS_SRC:-}
[ -n "$src" ] || die "XFSTESTS_SRC is not set: point it at an xfstests source checkout"
[ -f "$src/check" ] && [ -f "$src/configure.ac" ] || die "XFSTESTS_SRC=$src is not an xfstests checkout"
src=$(cd "$src" && pwd)

BUILD_DEPS=(xfslibs-dev uuid-dev libacl1-dev libaio-dev liburing-dev libattr1-dev
            autoconf automake libtool libtool-bin make gcc pkg-config gettext)
missing=()
for p in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing xfstests build dependencies: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/bow-xfstests-apt.log 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/bow-xfstests-apt.log 2>&1; } \
        || { tail -20 /tmp/bow-xfstests-apt.log >&2; die "could not install: ${missing[*]}"; }
fi

# The key: the source (commit + uncommitted changes, or a hash of every file
# when it is not a git checkout) and the build dependencies' versions.
src_id() {
    if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
        git -C "$src" rev-parse HEAD
        git -C "$src" status --porcelain --untracked-files=no | sha256sum
        git -C "$src" diff HEAD | sha256sum
    else
        (cd "$src" && find . -type f ! -path './.git/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum
    fi
}
key=$( { src_id; dpkg-query -W "${BUILD_DEPS[@]}"; } | sha256sum | cut -c1-12)
out=$BOW_CACHE/xfstests-$key
if [ -f "$out/.bow-done" ]; then
    echo "$out"
    exit 0
fi

log "building xfstests from $src into $out"
rm -rf "$out" "$out.tmp"
mkdir -p "$out.tmp"
# Build in a copy: the checkout stays clean.
tar -C "$src" --exclude=.git -cf - . | tar -C "$out.tmp" -xf -
{ git -C "$src" rev-parse HEAD 2>/dev/null || echo "not a git checkout"; } > "$out.tmp/.bow-source-commit"
start=$(date +%s)
if ! make -C "$out.tmp" -j"$(( $(nproc) + 1 ))" > "$out.tmp/.bow-build.log" 2>&1; then
    tail -40 "$out.tmp/.bow-build.log" >&2
    die "xfstests build failed; full log in $out.tmp/.bow-build.log"
fi
[ -x "$out.tmp/ltp/fsstress" ] && [ -x "$out.tmp/src/godown" ] || die "xfstests build produced no ltp/fsstress or src/godown"
log "xfstests built in $(( $(date +%s) - start )) s"
mv "$out.tmp" "$out"
touch "$out/.bow-done"
echo "$out"
