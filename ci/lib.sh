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

# The test kernels, one per BOW_KERNEL:
#   x86_64     the debug kernel (KASAN, lockdep, ...) every scenario runs on
#   arm64-4k   a lean arm64 kernel with 4 KiB pages (Android's GKI default)
#   arm64-16k  the same with 16 KiB pages (CONFIG_ARM64_16K_PAGES)
BOW_KERNEL=${BOW_KERNEL:-x86_64}
export BOW_KERNEL
case "$BOW_KERNEL" in
    x86_64|arm64-4k|arm64-16k) ;;
    *) printf 'error: BOW_KERNEL=%s: not one of x86_64, arm64-4k, arm64-16k\n' "$BOW_KERNEL" >&2; exit 2 ;;
esac

# kernel_arch: the kernel's ARCH.
kernel_arch() { case "$BOW_KERNEL" in x86_64) echo x86_64 ;; *) echo arm64 ;; esac; }
# kernel_fragments: the config fragments merged on top of tinyconfig, in order.
kernel_fragments() {
    case "$BOW_KERNEL" in
        x86_64) ls "$BOW_ROOT"/ci/kernel/*.config ;;
        arm64-*) printf '%s\n' "$BOW_ROOT/ci/kernel/base.config" "$BOW_ROOT/ci/kernel/arm64/common.config" \
                     "$BOW_ROOT/ci/kernel/arm64/${BOW_KERNEL#arm64-}.config" ;;
    esac
}
# kernel_make_args: what every make against the kernel needs besides -C/O/M.
kernel_make_args() { echo LLVM=1; [ "$(kernel_arch)" = x86_64 ] || echo ARCH="$(kernel_arch)"; }
# kernel_image: the bootable image, relative to the build directory.
kernel_image() { case "$BOW_KERNEL" in x86_64) echo arch/x86/boot/bzImage ;; *) echo arch/arm64/boot/Image ;; esac; }

# Identifies one kernel build: the source version, the config fragments and
# the toolchain that compiles Rust against it.
kernel_key() {
    local h
    h=$( {
        kernel_version
        # shellcheck disable=SC2046 # one path per line, no spaces
        cat $(kernel_fragments)
        rustc --version
        bindgen --version
        clang --version | head -1
    } | sha256sum | cut -c1-12)
    printf '%s-%s' "$(kernel_version)" "$h"
}

kernel_src() { printf '%s/src-%s' "$BOW_CACHE" "$(kernel_version)"; }
kernel_build() {
    case "$BOW_KERNEL" in
        x86_64) printf '%s/kbuild-%s' "$BOW_CACHE" "$(kernel_key)" ;;
        *) printf '%s/kbuild-%s-%s' "$BOW_CACHE" "$BOW_KERNEL" "$(kernel_key)" ;;
    esac
}
# module_sources: the files a source package of the module ships (tracked
# files only, one per line, relative to $BOW_ROOT).
module_sources() {
    git -C "$BOW_ROOT" ls-files Kbuild Makefile dkms.conf LICENSE dm-bow bow-core/src | grep -v '^dm-bow/bindings_generated.rs$'
}
# x86_smp <n>: qemu's -smp value for an x86_64 guest of n CPUs, each its
# own socket. qemu 7.2 makes `-smp n` one socket of n cores, and its BIOS
# (SeaBIOS 1.16) lists only the first CPU of each socket in the MP table,
# which the test kernel (built without ACPI) reads: the guest saw one CPU.
x86_smp() { echo "$1,sockets=$1,cores=1,threads=1"; }
# X86_CPU: qemu's -cpu value for the x86_64 guests: all TCG emulates but
# 5-level paging (LA57). With LA57, the 6.12 KASAN kernel can report a
# false "KASAN: wild-memory-access" in its own early boot: identify_cpu()
# clears the boot CPU's feature bits before reading them again, KASAN's
# lower bound of the kernel's addresses follows pgtable_l5_enabled(), which
# reads the LA57 bit, so an interrupt taken in that window (handle_edge_irq
# under identify_boot_cpu) sees its irq_desc, a direct-map address of
# 0xff11..., outside the address space. Seen in a few boots in a hundred,
# 0.1-2.3 s after start, before any test code ran.
# shellcheck disable=SC2034 # used by the scripts that source this file
X86_CPU=max,la57=off
# vm_dir: where the VM's kernel, module, initramfs and last run live.
vm_dir() { case "$BOW_KERNEL" in x86_64) echo "$BOW_ROOT/target/vm" ;; *) echo "$BOW_ROOT/target/vm-$BOW_KERNEL" ;; esac; }

# scenario_header <scenario[:arg]> <key>: the number on the VM scenario's
# first "# <key>: N" line, or nothing when it has none.
scenario_header() {
    sed -n "s/^# $2: *\([0-9]*\).*/\1/p" "$BOW_ROOT/tests/vm/scenarios/${1%%:*}.sh" 2>/dev/null | head -1
}

# scenario_limit <scenario[:arg]>: the VM scenario's time limit in seconds,
# from its "# timeout: N" line, else 300.
scenario_limit() {
    local t
    t=$(scenario_header "$1" timeout)
    echo "${t:-300}"
}
# scenario_cost <scenario[:arg]>: what the scenario costs in seconds, for
# splitting the scenarios between two guests: its "# cost: N" line (seconds
# measured in a test command run, two guests at once), else its time limit.
scenario_cost() {
    local c
    c=$(scenario_header "$1" cost)
    [ -n "$c" ] && echo "$c" || scenario_limit "$1"
}

# expected_checks <scenario[:arg]>: the checks the VM scenario makes at least
# when it runs to its end, from its "# checks: N" line (with an argument, from
# its "# checks <arg>: N" line); 0 when it names none (unknown: then a cut
# short scenario counts one check not run). A scenario cut short, or a boot
# never made, is reported as that many checks not run.
expected_checks() {
    local n
    if [ "${1%%:*}" != "$1" ]; then
        n=$(scenario_header "$1" "checks ${1#*:}")
    else
        n=$(scenario_header "$1" checks)
    fi
    echo "${n:-0}"
}

# KERNEL_REPORT_RE: an extended regex for the kernel reports that fail a VM
# run whatever its checks said (BUG, WARNING, Oops, KASAN, lockdep, hung
# task, soft lockup, RCU stall, arm64's "Internal error").
# shellcheck disable=SC2034 # used by the scripts that source this file
KERNEL_REPORT_RE='BUG:|WARNING:|Oops|Kernel panic|KASAN|UBSAN|possible recursive locking|circular locking|lockdep is turned off|inconsistent lock state|blocked for more than|general protection fault|soft lockup|hard LOCKUP|rcu.*stall|Call [Tt]race:|Unable to handle|Internal error:'
