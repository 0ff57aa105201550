//! Logic shared by the dm-bow kernel module and `bowctl`.
//!
//! Everything here uses `core` only and has no dependencies, so the kernel
//! module mounts these very files (see `dm-bow/bow.rs`) and `cargo test`
//! checks the code the kernel runs. The module list below must match the one
//! in `dm-bow/bow.rs`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod crc;
pub mod format;
pub mod rangemap;
pub mod restore;
pub mod state;
pub mod table;
#[cfg(feature = "model")]
pub mod testimg;
