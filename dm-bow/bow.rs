// SPDX-License-Identifier: GPL-2.0

//! dm-bow: a device-mapper target that backs up blocks on first write, so a
//! device can be checkpointed, then committed or rolled back.
//!
//! Layout: [`ffi`] holds every `unsafe` line and the C entry points; [`target`]
//! is the target's logic; `bow_core` is the code shared with `bowctl` (on-disk
//! format, checksum, table grammar, state machine), mounted from `../bow-core`.

mod ffi;
#[cfg(CONFIG_KUNIT)]
mod kunit_cases;
mod rangetree;
mod target;

/// The code shared with `bowctl`, mounted from the `bow-core` crate's sources.
/// Its module list matches `bow-core/src/lib.rs`.
#[path = "../bow-core/src"]
#[allow(missing_docs, unreachable_pub, dead_code, clippy::all)]
mod bow_core {
    pub(crate) mod crc;
    pub(crate) mod format;
    pub(crate) mod rangemap;
    pub(crate) mod state;
    pub(crate) mod table;
}

use kernel::prelude::*;

module! {
    type: BowModule,
    name: "dm_bow",
    author: "dm-bow developers",
    description: "device-mapper backup-on-write target with checkpoint, commit and rollback",
    license: "GPL",
}

struct BowModule {
    _target: ffi::Registration,
}

impl kernel::Module for BowModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let reg = ffi::Registration::new::<target::Bow>(c"bow", target::VERSION, module)?;
        pr_info!(
            "bow target {}.{}.{} registered\n",
            target::VERSION[0],
            target::VERSION[1],
            target::VERSION[2]
        );
        Ok(Self { _target: reg })
    }
}
