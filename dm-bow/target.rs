// SPDX-License-Identifier: GPL-2.0

//! The bow target's logic, above the FFI layer. No `unsafe` here.

use crate::bow_core::state::{Counters, Message, State, StatusIma, StatusInfo};
use crate::bow_core::table::{self, Geometry, TableError};
use crate::ffi::{Args, Bio, CtrError, DmDev, Mapped, Op, StatusBuf, StatusKind, Target, TargetSetup};
use core::fmt::Write;
use kernel::error::code;
use kernel::prelude::*;

/// Version of the target type, as `dmsetup targets` shows it.
pub(crate) const VERSION: [u32; 3] = [1, 0, 0];

fn table_error(e: TableError) -> CtrError {
    CtrError::inval(e.message())
}

/// One bow target instance.
pub(crate) struct Bow {
    /// The device below, opened read-write.
    dev: DmDev,
    /// First sector of the target in the dm device.
    begin: u64,
    /// Block size and number of blocks.
    geometry: Geometry,
    /// The table words as given, joined by single spaces, for `dmsetup table`.
    table_line: KVec<u8>,
}

impl Target for Bow {
    fn new(ti: &mut TargetSetup, args: Args<'_>) -> Result<KBox<Self>, CtrError> {
        let parsed = table::parse_args(args.bytes()).map_err(table_error)?;
        let path = args.get(0).ok_or(table_error(TableError::ArgCount))?;
        let dev = ti
            .get_device(path)
            .map_err(|errno| CtrError { errno, msg: TableError::DeviceLookup.message() })?;
        let writable = ti.table_writable() && !dev.read_only();
        let geometry =
            table::check_geometry(&parsed, dev.logical_block_size(), ti.len(), writable).map_err(table_error)?;
        let nomem = CtrError { errno: code::ENOMEM, msg: c"Cannot allocate memory" };
        let mut table_line = KVec::new();
        for (i, w) in args.bytes().enumerate() {
            if i > 0 {
                table_line.push(b' ', GFP_KERNEL).map_err(|_| nomem)?;
            }
            table_line.extend_from_slice(w, GFP_KERNEL).map_err(|_| nomem)?;
        }
        ti.set_discards(true);
        KBox::new(Self { dev, begin: ti.begin(), geometry, table_line }, GFP_KERNEL).map_err(|_| nomem)
    }

    fn map(&self, bio: Bio) -> Mapped {
        let sector = bio.sector().saturating_sub(self.begin);
        match bio.op() {
            // State 0 keeps discards to itself: they describe free space,
            // which the checkpoint will need, so nothing is passed down.
            // (Recording them as free space is not implemented yet.)
            Op::Discard => bio.endio(None),
            _ => bio.remap(&self.dev, sector),
        }
    }

    fn status(&self, kind: StatusKind, out: &mut StatusBuf<'_>) {
        let info = StatusInfo {
            state: State::Trim,
            block_size: self.geometry.block_size,
            counters: Counters::default(),
        };
        // A status that does not fit is cut short; device-mapper shows what fits.
        let _ = match kind {
            StatusKind::Info => write!(out, "{info}"),
            StatusKind::Ima => write!(out, "{}", StatusIma(&info)),
            StatusKind::Table => match core::str::from_utf8(&self.table_line) {
                Ok(s) => out.write_str(s),
                Err(_) => out.write_str("?"),
            },
        };
    }

    fn message(&self, args: Args<'_>) -> Result<(), Error> {
        match Message::parse(args.bytes()) {
            None => {
                pr_warn!("bow: unknown message (expected 'checkpoint' or 'commit')\n");
                Err(code::EINVAL)
            }
            // State changes arrive with the checkpoint machinery.
            Some(_) => Err(code::EOPNOTSUPP),
        }
    }

    fn device(&self) -> &DmDev {
        &self.dev
    }

    fn block_size(&self) -> u32 {
        self.geometry.block_size
    }
}
