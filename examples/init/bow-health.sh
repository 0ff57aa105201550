#!/bin/sh
# bow-health.sh: watches the space left for backups while an update runs
# under a checkpoint. Below BOW_MIN_FREE it commits (BOW_ON_LOW=commit, the
# default, as Android's vold) or requests a rollback and reboots into it
# (BOW_ON_LOW=abort), the choice Android makes with its commit-on-full
# property. Exits when the checkpoint is committed or after acting.
# shellcheck source=/dev/null # the site's own settings, not in this tree
[ -f "${BOW_CONF:=/etc/bow.conf}" ] && . "$BOW_CONF"
: "${BOW_META_DIR:=/metadata}" "${BOW_MIN_FREE:=100M}" "${BOW_ON_LOW:=commit}" "${BOW_INTERVAL:=5}"
export BOWCTL_RECORD="$BOW_META_DIR/bow/checkpoint.json"
[ -f "$BOWCTL_RECORD" ] || exit 0
set -- health --min-free "$BOW_MIN_FREE" --on-low "$BOW_ON_LOW" --interval "$BOW_INTERVAL"
[ "$BOW_ON_LOW" = abort ] && [ "${BOW_REBOOT:-1}" = 1 ] && set -- "$@" --reboot
exec bowctl "$@"
