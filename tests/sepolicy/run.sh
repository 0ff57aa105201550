#!/usr/bin/env bash
# Compiles the Android SELinux policy example (examples/android/sepolicy)
# with the tools Debian packages, around a stand-in base policy
# (tests/sepolicy/base.conf, tail.conf) and stand-ins for the AOSP macros
# it uses (macros.m4):
#   - checkpolicy builds the policy (every type and permission the rules name
#     must exist; MLS on, as Android's);
#   - checkpolicy -C turns it into CIL and secilc compiles that;
#   - sefcontext_compile checks file_contexts against the built policy;
#   - the rules bowctl needs are in it (DM ioctls, the data partition,
#     sysfs, /metadata/bow);
#   - seeded mistakes are caught: a rule on an undeclared type, a file
#     context with an undeclared type.
# Writes target/sepolicy/results.tsv (one row per check) and exits non-zero
# if any check failed.
set -uo pipefail
. "$(dirname "$0")/../../ci/lib.sh"
cd "$BOW_ROOT" || exit 1
for t in checkpolicy secilc sefcontext_compile m4; do
    command -v "$t" >/dev/null || die "$t not found: run ci/setup.sh"
done
src=examples/android/sepolicy
here=tests/sepolicy
out=$BOW_ROOT/target/sepolicy
rm -rf "$out" && mkdir -p "$out"
tsv=$out/results.tsv
: > "$tsv"
status=0
row() { tsv_row "$tsv" "$@" || status=1; } # <name> <pass|fail> <detail>
# build <dir> <extra te>: policy.conf, then checkpolicy; returns its status.
build() {
    mkdir -p "$1"
    { cat "$here/base.conf"; m4 "$here/macros.m4" "$src/bowctl.te"; printf '%s\n' "$2"; cat "$here/tail.conf"; } > "$1/policy.conf"
    checkpolicy -M -c 30 -o "$1/policy.30" "$1/policy.conf" > "$1/checkpolicy.log" 2>&1
}

if build "$out/good" ""; then
    row "sepolicy: checkpolicy builds bowctl.te" pass "$(wc -l < "$out/good/policy.conf") lines of policy.conf"
else
    row "sepolicy: checkpolicy builds bowctl.te" fail "$(tail -3 "$out/good/checkpolicy.log" | tr '\n' ' ')"
fi
if checkpolicy -M -C -o "$out/good/policy.cil" "$out/good/policy.conf" > "$out/good/cil.log" 2>&1 \
    && secilc -M true -c 30 -o "$out/good/policy.secilc" -f "$out/good/fc.out" "$out/good/policy.cil" > "$out/good/secilc.log" 2>&1; then
    row "sepolicy: secilc compiles it as CIL" pass "$(grep -c . "$out/good/policy.cil") CIL lines"
else
    row "sepolicy: secilc compiles it as CIL" fail "$(cat "$out/good/cil.log" "$out/good/secilc.log" | tail -3 | tr '\n' ' ')"
fi
if sefcontext_compile -p "$out/good/policy.30" -o "$out/good/file_contexts.bin" "$src/file_contexts" > "$out/good/fc.log" 2>&1; then
    row "sepolicy: file_contexts is valid against it" pass "$(grep -vc '^#' "$src/file_contexts") entries"
else
    row "sepolicy: file_contexts is valid against it" fail "$(tail -3 "$out/good/fc.log" | tr '\n' ' ')"
fi

# The rules bowctl needs, as compiled (CIL spells them out one per line).
cil=$out/good/policy.cil
need() { # <what> <regex on the CIL>
    if grep -qE "$2" "$cil" 2>/dev/null; then row "sepolicy: allows $1" pass "found"; else row "sepolicy: allows $1" fail "no rule matches $2"; fi
}
need "device-mapper ioctls on /dev/device-mapper" '^\(allowx bowctl dm_device \(ioctl chr_file \(\(range 0xfd00 0xfd11\)\)\)\)'
need "read and write of the data partition" '^\(allow bowctl userdata_block_device \(blk_file \(.*write'
need "writes to the bow sysfs files" '^\(allow bowctl sysfs_dm \(file \(.*write'
need "the record in /metadata/bow" '^\(typetransition bowctl metadata_file dir "bow" bowctl_metadata_file\)'
need "CAP_SYS_ADMIN" '^\(allow bowctl self \(capability \(sys_admin\)\)\)'
need "the transition from recovery" '^\(typetransition recovery bowctl_exec process bowctl\)'

# Seeded mistakes must be caught.
if build "$out/bad-type" "allow bowctl no_such_type:file read;"; then
    row "sepolicy: a rule on an undeclared type is refused" fail "checkpolicy accepted it"
else
    row "sepolicy: a rule on an undeclared type is refused" pass "$(grep -m1 -i 'unknown\|not defined\|error' "$out/bad-type/checkpolicy.log" | cut -c1-100)"
fi
printf '/system/bin/bowctl u:object_r:no_such_exec:s0\n' > "$out/bad.fc"
if [ -f "$out/good/policy.30" ] && ! sefcontext_compile -p "$out/good/policy.30" -o "$out/bad.bin" "$out/bad.fc" > "$out/bad-fc.log" 2>&1; then
    row "sepolicy: a file context with an undeclared type is refused" pass "$(head -1 "$out/bad-fc.log" | cut -c1-100)"
else
    row "sepolicy: a file context with an undeclared type is refused" fail "sefcontext_compile accepted it"
fi
exit $status
