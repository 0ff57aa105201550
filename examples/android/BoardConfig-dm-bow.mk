# dm-bow in a device's BoardConfig.mk: the module goes into the vendor
# ramdisk and is loaded by first-stage init (modules.load.dm-bow).
# $(DM_BOW_KO) is the dm-bow.ko built against the device's kernel
# (`make KDIR=<kernel build dir>`, docs/install.md).
BOARD_VENDOR_RAMDISK_KERNEL_MODULES += $(DM_BOW_KO)
BOARD_VENDOR_RAMDISK_KERNEL_MODULES_LOAD += dm-bow.ko
# bowctl for a rollback or an inspection by hand from recovery, with its
# SELinux domain (sepolicy/).
BOARD_VENDOR_SEPOLICY_DIRS += $(DM_BOW_DIR)/examples/android/sepolicy
