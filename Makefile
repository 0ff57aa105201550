# SPDX-License-Identifier: GPL-2.0
#
# dm-bow.ko, built out of tree against a kernel configured with CONFIG_RUST=y
# and built with LLVM (docs/install.md). Kbuild itself reads ./Kbuild.
#
#   make [KDIR=<kernel build dir>]
#   make install [KDIR=...] [INSTALL_MOD_PATH=<root>]   into updates/dm-bow/, then depmod
#   make clean
#
# KDIR defaults to the running kernel's build directory. For an arm64
# kernel's tree the build cross-compiles (ARCH=arm64, read from its config).

KDIR ?= /lib/modules/$(shell uname -r)/build
LLVM ?= 1
# The kernel's architecture comes from its configuration, so a build for an
# arm64 kernel on an x86_64 host (clang cross-compiles) needs no ARCH=;
# an ARCH given on the command line or in the environment wins.
ARCH ?= $(shell grep -q '^CONFIG_ARM64=y' $(KDIR)/include/config/auto.conf 2>/dev/null && echo arm64)
kmake = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM) $(if $(ARCH),ARCH=$(ARCH))

all: check-kdir
	$(kmake) modules

install: all
	$(kmake) INSTALL_MOD_DIR=updates modules_install

clean: check-kdir
	$(kmake) clean

check-kdir:
	@test -f $(KDIR)/Makefile || { echo "error: no kernel build directory at $(KDIR): install the headers of the kernel to build for, or pass KDIR=<kernel build dir>" >&2; exit 1; }
	@test -f $(KDIR)/include/config/auto.conf || { echo "error: $(KDIR) is not a configured kernel build directory (no include/config/auto.conf)" >&2; exit 1; }
	@grep -q '^CONFIG_RUST=y' $(KDIR)/include/config/auto.conf || { echo "error: the kernel in $(KDIR) was built without CONFIG_RUST=y; dm-bow is written in Rust and needs a kernel configured with it (docs/install.md)" >&2; exit 1; }

.PHONY: all install clean check-kdir
