#!/usr/bin/env bash
# The hygiene checks a kernel maintainer runs first, and ours, in seconds:
#   - kernel-rustfmt: the module's Rust, formatted with the kernel tree's
#     .rustfmt.toml, the way `make rustfmtcheck` runs rustfmt
#   - kernel-clippy: the module built with CLIPPY=1, no warning
#   - checkpatch: scripts/checkpatch.pl --no-tree on every C file
#   - shellcheck: every shell script, at -S warning
#   - cargo-fmt: cargo fmt --check of the workspace
#   - cargo-clippy: cargo clippy --workspace --all-targets, warnings denied
#   - docs: the docs stand on their own (no link or reference out of the
#     repository) and the RST parses cleanly (ci/doclinks.py)
#   - systemd-units: systemd-analyze verify of examples/systemd (the
#     template with an instance) and examples/rauc's unit, no warning
# Each is one check: its line in target/lint/results.tsv is pass or fail, and
# whatever it reported is printed. Exits non-zero if any failed.
#
# usage: ci/lint.sh   (installs what it needs, builds the test kernel if not cached)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BOW_ROOT" || exit 1
bash ci/setup.sh || die "setup failed"
kb=$(bash ci/build-kernel.sh) || die "kernel build failed"
ksrc=$(kernel_src)
out=$BOW_ROOT/target/lint
mkdir -p "$out"
: > "$out/results.tsv"
status=0

# lint <name> <command...>: runs the command; any output or a non-zero exit fails it.
lint() {
    local name=$1 log=$out/$1.log st
    shift
    "$@" > "$log" 2>&1
    st=$?
    if [ "$st" = 0 ] && [ ! -s "$log" ]; then
        printf 'lint %s\tpass\n' "$name" >> "$out/results.tsv"
        echo "PASS: lint $name"
    else
        printf 'lint %s\tfail\n' "$name" >> "$out/results.tsv"
        echo "FAIL: lint $name (exit $st):"
        head -40 "$log" | sed 's/^/    /'
        status=1
    fi
}

shell_scripts() {
    # Every tracked file that is a shell script: by extension or by shebang.
    git ls-files -z | while IFS= read -r -d '' f; do
        case $f in
            *.sh) echo "$f" ;;
            *) [ -f "$f" ] && head -c 64 "$f" | head -1 | grep -qE '^#!.*(/|env )(ba|busybox )?sh$' && echo "$f" ;;
        esac
    done
}

# The kernel's rustfmt target formats each file with the tree's config;
# bow.rs pulls in its modules (the shared core included).
lint kernel-rustfmt rustfmt --config-path "$ksrc/.rustfmt.toml" --check dm-bow/bow.rs
# Kbuild skips an up-to-date object, so the crate is made stale first.
kernel_clippy() {
    touch dm-bow/bow.rs
    make -C "$kb" M="$BOW_ROOT" LLVM=1 CLIPPY=1 -j"$(nproc)" modules 2>&1 | grep -E -A8 '^(warning|error)'
    [ "${PIPESTATUS[0]}" = 0 ]
}
lint kernel-clippy kernel_clippy
mapfile -t cfiles < <(git ls-files '*.c' '*.h')
lint checkpatch perl "$ksrc/scripts/checkpatch.pl" --no-tree --quiet --file "${cfiles[@]}"
mapfile -t scripts < <(shell_scripts)
lint shellcheck shellcheck -S warning -f gcc "${scripts[@]}"
lint cargo-fmt cargo fmt --all --check
cargo_clippy() {
    cargo clippy --workspace --all-targets --locked --quiet -- -D warnings 2>&1 | grep -v '^$'
    [ "${PIPESTATUS[0]}" = 0 ]
}
lint cargo-clippy cargo_clippy
lint docs python3 ci/doclinks.py
systemd_units() {
    local d st
    d=$(mktemp -d)
    cp examples/systemd/*.service examples/rauc/*.service "$d/"
    cp "$d/bow-boot@.service" "$d/bow-boot@dev-vdb.service"
    (cd "$d" && systemd-analyze verify --man=no ./bow-boot@dev-vdb.service ./bow-commit.service ./bow-health.service \
        ./rauc-mark-good.service 2>&1)
    st=$?
    rm -rf "$d"
    return $st
}
lint systemd-units systemd_units
exit $status
