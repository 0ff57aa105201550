# Shared helpers for the ci/ and tests/ scripts. Source it; do not run it.
# shellcheck shell=bash

BOW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything expensive (kernel tree, kernel build, initramfs pieces) lives here,
# outside the work tree, so a fresh clone on the same machine reuses it.
BOW_CACHE=${BOW_CACHE:-/var/cache/dm-bow}
export BOW_ROOT BOW_CACHE
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# tsv_row <tsv> <name> <pass|fail> <detail>: appends one result row (the
# form tests/run-all.sh counts) and prints its PASS or FAIL line; returns 1
# for a failure.
tsv_row() {
    printf '%s\t%s\t%s\n' "$2" "$4" "$3" >> "$1"
    if [ "$3" = pass ]; then echo "PASS: $2 ($4)"; else echo "FAIL: $2 ($4)"; return 1; fi
}

# The kernel's version, as Debian packages it.
kernel_version() {
    dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null \
        || die "linux-source-6.12 is not installed (run ci/setup.sh)"
}

# Identifies one kernel build: the source version, the config fragments and
# the toolchain that compiles Rust against it.
kernel_key() {
    local h
    h=$( {
        kernel_version
        cat "$BOW_ROOT"/ci/kernel/*.config
        rustc --version
        bindgen --version
        clang --version | head -1
    } | sha256sum | cut -c1-12)
    printf '%s-%s' "$(kernel_version)" "$h"
}

kernel_src() { printf '%s/src-%s' "$BOW_CACHE" "$(kernel_version)"; }
kernel_build() { printf '%s/kbuild-%s' "$BOW_CACHE" "$(kernel_key)"; }

# expected_checks <scenario[:arg]>: the checks the VM scenario makes at least
# when it runs to its end, from its "# checks: N" line (with an argument, from
# its "# checks <arg>: N" line); 0 when it names none (unknown: then a cut
# short scenario counts one check not run). A scenario cut short, or a boot
# never made, is reported as that many checks not run.
expected_checks() {
    local name=${1%%:*} arg="" f n
    [ "$name" != "$1" ] && arg=${1#*:}
    f=$BOW_ROOT/tests/vm/scenarios/$name.sh
    if [ -n "$arg" ]; then
        n=$(sed -n "s/^# checks $arg: *\([0-9]*\).*/\1/p" "$f" 2>/dev/null | head -1)
    else
        n=$(sed -n 's/^# checks: *\([0-9]*\).*/\1/p' "$f" 2>/dev/null | head -1)
    fi
    echo "${n:-0}"
}
