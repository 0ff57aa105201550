// SPDX-License-Identifier: GPL-2.0

//! The devices that have a bow target in checkpoint state, module-wide, so
//! that a new table on such a device (a second constructor, as a reload
//! makes) is refused instead of losing the checkpoint.
//!
//! A small fixed set of device numbers in atomics: no lock, no allocation.
//! A device is added when its checkpoint is taken and removed at commit or
//! when its target goes away.

use core::sync::atomic::{AtomicU32, Ordering};

/// Devices with a live checkpoint at once; more are not guarded (the
/// checkpoint itself works, a reload of that device is then not refused).
const SLOTS: usize = 64;

static LIVE: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// Records `dev` (a nonzero `dev_t`). Returns false when the set is full.
pub(super) fn add(dev: u32) -> bool {
    dev != 0
        && LIVE.iter().any(|s| {
            s.compare_exchange(0, dev, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
}

/// Forgets `dev`.
pub(super) fn remove(dev: u32) {
    if let Some(s) = LIVE.iter().find(|s| s.load(Ordering::SeqCst) == dev) {
        let _ = s.compare_exchange(dev, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Whether `dev` has a live checkpoint.
pub(super) fn has(dev: u32) -> bool {
    dev != 0 && LIVE.iter().any(|s| s.load(Ordering::SeqCst) == dev)
}
