#!/usr/bin/env bash
# Model-checks the crash-safety protocol (tests/model/bow.pml) with spin:
#   - the protocol as the code has it: every interleaving of two writers,
#     the commit and a power cut at any step, then the restore (itself cut
#     and run again): no assertion may fail;
#   - each seeded bad variant must be caught (an assertion fails);
#   - every function the model names (its `code:` lines) must still exist,
#     so a rename in the code shows here.
# Writes target/model/results.tsv (one row per check) and exits non-zero if
# any check failed. docs/reliability.md says what the model covers.
set -uo pipefail
. "$(dirname "$0")/../../ci/lib.sh"
cd "$BOW_ROOT" || exit 1
command -v spin >/dev/null || die "spin not found: run ci/setup.sh"
out=$BOW_ROOT/target/model
rm -rf "$out" && mkdir -p "$out"
tsv=$out/results.tsv
: > "$tsv"
status=0
row() { tsv_row "$tsv" "$@" || status=1; } # <name> <pass|fail> <detail>

# verify <label> [-Dflag]: builds the verifier and runs a full search.
# Prints pan's summary; its error count goes to $out/<label>.errors.
verify() {
    local dir=$out/$1
    shift
    mkdir -p "$dir"
    cp tests/model/bow.pml "$dir/"
    (
        cd "$dir" || exit 1
        spin -a "$@" bow.pml > spin.log 2>&1 || { cat spin.log; exit 1; }
        gcc -O2 -DSAFETY -DVECTORSZ=4096 -o pan pan.c > gcc.log 2>&1 || { cat gcc.log; exit 1; }
        # -E: after the power cut the writers stay blocked for good, which
        # is the point, not a deadlock.
        ./pan -E -m400000 > pan.log 2>&1
        cat pan.log
    )
}

errors_of() { sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out/$1/pan.log" | head -1; }
states_of() { sed -n 's/^ *\([0-9e.+]*\) states, stored.*/\1/p' "$out/$1/pan.log" | head -1; }

log "spin: the protocol (every interleaving and power cut)"
verify good > /dev/null
e=$(errors_of good) s=$(states_of good)
if [ "$e" = 0 ] && grep -q "Full statespace search" "$out/good/pan.log" && ! grep -q "Search not completed" "$out/good/pan.log"; then
    row "model: the protocol holds (full search)" pass "$s states, 0 errors"
else
    row "model: the protocol holds (full search)" fail "errors: ${e:-none reported}; see $out/good/pan.log"
fi

for bad in BAD_RELEASE_EARLY BAD_NO_RESERVE; do
    log "spin: seeded bad variant $bad"
    verify "$bad" "-D$bad" > /dev/null
    e=$(errors_of "$bad")
    why=$(cd "$out/$bad" && spin -t "-D$bad" bow.pml 2>&1 | sed -n 's/.*text of failed assertion: //p' | head -1)
    if [ "${e:-0}" -ge 1 ] && [ -n "$why" ]; then
        row "model: bad variant $bad is caught" pass "counterexample: $why"
    else
        row "model: bad variant $bad is caught" fail "spin found no counterexample"
    fi
done

# Every function the model stands for must exist in the code.
model_functions() { grep -oE 'code: [^*]*' tests/model/bow.pml | grep -oE '[A-Za-z_]+::[a-z_]+' | sort -u; }
log "spin: the model's functions exist in the code"
missing=()
while read -r name; do
    fn=${name##*::}
    case $name in
        Shared::*) where=(dm-bow/target.rs dm-bow/target) ;;
        rangemap::*) where=(bow-core/src/rangemap.rs) ;;
        restore::*) where=(bow-core/src/restore.rs) ;;
        *) missing+=("$name (unknown module)"); continue ;;
    esac
    grep -rqE "fn $fn(<|\()" "${where[@]}" || missing+=("$name")
done < <(model_functions)
if [ ${#missing[@]} = 0 ]; then
    row "model: every function it names exists" pass "$(model_functions | wc -l) functions"
else
    row "model: every function it names exists" fail "missing: ${missing[*]}"
fi
exit $status
