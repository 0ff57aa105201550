#!/bin/sh
# bow-commit.sh: run once the new system has booted and proved itself
# (Android: sys.boot_completed=1; systemd: boot-complete.target). Commits
# the checkpoint and closes the update. With no update pending it does
# nothing and succeeds.
# shellcheck source=/dev/null # the site's own settings, not in this tree
[ -f "${BOW_CONF:=/etc/bow.conf}" ] && . "$BOW_CONF"
: "${BOW_META_DIR:=/metadata}"
export BOWCTL_RECORD="$BOW_META_DIR/bow/checkpoint.json"
[ -f "$BOWCTL_RECORD" ] || exit 0
bowctl commit
rc=$?
# 3: already committed (a second run).
[ $rc = 3 ] && rc=0
exit $rc
