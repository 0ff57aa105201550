#!/usr/bin/env bash
# The project's main job: builds everything (kernel cached) and shows the
# update lifecycle in the VM across six boots of one machine, as the guest
# narrates it: version-1 data, an update whose new system fails twice (each
# boot ends in a power cut), the rollback, then an update that commits.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$BOW_ROOT/ci/setup.sh"
exec bash "$BOW_ROOT/tests/vm/update.sh" --narrate
