#!/usr/bin/env bash
# The project's main job: builds everything (kernel cached) and shows dm-bow
# working in the VM, printing the guest's own narration.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$BOW_ROOT/ci/setup.sh"
demo=${BOW_DEMO:-demo}
status=0
bash "$BOW_ROOT/tests/vm/run.sh" "$demo" || status=$?
echo
echo "---- what the guest printed ----"
tr -d '\r' < "$BOW_ROOT/target/vm/last/console.log" \
    | sed -n "/^BOW-SCENARIO-START $demo\$/,/^BOW-SCENARIO-END $demo /p" \
    | grep -v '^\[' || true
exit $status
