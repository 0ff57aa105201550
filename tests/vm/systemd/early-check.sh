#!/bin/sh
# Run by bow-test-early.service before any test code (see there). The
# pattern is the host's list of kernel reports (KERNEL_REPORT_RE in
# ci/lib.sh), copied into the guest's root when it is built. bowtest.early_report
# on the kernel command line writes a report of its own first: the host uses
# it to test that a discarded boot leaves no trace (BOW_SYSTEMD_EARLY_REPORT).
patterns=/usr/lib/bow-test/kernel-report.re
if grep -q 'bowtest\.early_report' /proc/cmdline; then
    echo "<3>BUG: bowtest.early_report: a report the test harness asked for" > /dev/kmsg
fi
if dmesg | grep -q -E -f "$patterns"; then
    echo "BOW-EARLY-KERNEL-REPORT: the kernel reported a problem before the test ran; stopping this boot"
    dmesg | grep -E -f "$patterns" | head -5 | sed 's/^/    /'
    # At once, like a power cut: the host puts the disks back as they were
    # before this boot and boots again.
    systemctl reboot --force --force
    sleep 60
fi
exit 0
