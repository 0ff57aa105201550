#!/bin/sh
# bow-update.sh: run by the updater once the new slot is installed, before
# the reboot into it. BOW_RETRIES boots (default 2) may fail before the data
# is rolled back.
# shellcheck source=/dev/null # the site's own settings, not in this tree
[ -f "${BOW_CONF:=/etc/bow.conf}" ] && . "$BOW_CONF"
: "${BOW_META_DIR:=/metadata}" "${BOW_RETRIES:=2}"
export BOWCTL_RECORD="$BOW_META_DIR/bow/checkpoint.json"
exec bowctl start --retries "$BOW_RETRIES"
