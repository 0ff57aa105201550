//! The library half of bowctl: devices, the device-mapper interface and
//! errors. The binary (`main.rs`) turns these into commands and output.
//!
//! The on-disk format, the checksum, validation and the restore plan are
//! `bow_core`'s: the same code the kernel module compiles.

pub mod cli;
pub mod device;
pub mod disk;
pub mod dm;
pub mod error;
pub mod lifecycle;
pub mod platform;
