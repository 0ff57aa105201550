// SPDX-License-Identifier: GPL-2.0

//! State changes, 0 -> 1 and 1 -> 2, with I/O running.
//!
//! A change sets `Inner::changing` under the map's lock. From then on no new
//! bio is admitted: [`Shared::route`] holds each on `Inner::deferred`. The
//! change waits only for the bios admitted before it (those with workers,
//! and the writes in flight it must see land), does its I/O with no lock
//! held, switches the state and clears `changing` under the lock, and
//! releases the held bios to the workers, which map them in the new state.
//! On failure the old state stays in force and the held bios are released
//! all the same.

use super::*;
use crate::bow_core::state as st;
use crate::ffi::kernel_crc32_le;

impl Shared {
    /// Moves to `want`. Returns the result and how many held bios went to the
    /// workers' queue, which the caller kicks.
    pub(super) fn change_state(&self, want: State) -> (Result, usize) {
        let _t = self.transition.lock();
        let cur = self.state();
        if let Err(e) = st::transition(cur, want) {
            pr_warn!("bow: {}\n", e);
            return (Err(code::EINVAL), 0);
        }
        {
            let mut g = self.inner.lock();
            g.changing = true;
            // Let the bios admitted before the change finish with the workers.
            while g.inflight > 0 || g.log.as_ref().is_some_and(|l| l.writing) {
                self.cond.wait(&mut g);
            }
        }
        let r = match want {
            State::Checkpoint => self.checkpoint(),
            State::Committed => self.commit(),
            State::Trim => Err(code::EINVAL),
        };
        let mut g = self.inner.lock();
        if r.is_ok() {
            g.state = want;
            self.publish_state(want);
        }
        g.changing = false;
        let released = self.release_deferred(&mut g);
        drop(g);
        self.cond.notify_all();
        self.log_cond.notify_all();
        (r, released)
    }

    /// 0 -> 1: back up block 0, relocate its live copy, write the first log
    /// block, all durably. On failure the map is put back as it was.
    fn checkpoint(&self) -> Result {
        let spb = self.spb;
        // Writes remapped in state 0 land before block 0 is read.
        self.writes0.wait_zero();
        let pending = KVec::with_capacity(PENDING_MAX, GFP_KERNEL)?;
        let spare = KVec::with_capacity(PENDING_MAX, GFP_KERNEL)?;
        let extents = self.inner.lock().map.extents();
        // One entry per extent, a million of them on a fragmented device:
        // more than kmalloc gives, so it may come from vmalloc. Nothing
        // changes the map meanwhile (`changing`), so the count holds.
        let mut free_map = KVVec::with_capacity(extents, GFP_KERNEL)?;
        if self.lock_ready()?.free_blocks < 4 {
            pr_warn!("bow: checkpoint needs free space: trim the device first\n");
            return Err(code::ENOSPC);
        }
        // One walk records the free extents and marks every other block
        // unchanged, a chunk per hold of the lock.
        self.walk_map(|e| {
            if e.kind == Kind::Free {
                // Capacity was reserved for every extent: no allocation.
                let _ = free_map.push((e.start, e.len()), GFP_NOWAIT);
            }
            Some(rangemap::at_checkpoint(e.kind))
        });
        let block0_was = kind_at(&mut self.inner.lock(), 0).unwrap_or(Kind::Unchanged);
        let undo = |blocks: &[u64]| {
            self.walk_map(|e| {
                Some(if e.kind == Kind::Unchanged {
                    Kind::Used
                } else {
                    e.kind
                })
            });
            for &b in blocks {
                let _ = self.assign_now(b, b + 1, Kind::Free);
            }
            let _ = self.assign_now(
                0,
                1,
                if block0_was == Kind::Free {
                    Kind::Free
                } else {
                    Kind::Used
                },
            );
        };
        let taken = (|| -> Result<(u64, u64)> {
            let mut g = self.lock_ready()?;
            self.assign(&mut g, 0, 1, Kind::Changed)?;
            drop(g);
            let mut g = self.lock_ready()?;
            let a = self.take_free_block(&mut g)?;
            drop(g);
            let mut g = self.lock_ready()?;
            match self.take_free_block(&mut g) {
                Ok(l) => Ok((a, l)),
                Err(e) => {
                    drop(g);
                    let _ = self.assign_now(a, a + 1, Kind::Free);
                    Err(e)
                }
            }
        })();
        let (a, l) = match taken {
            Ok(v) => v,
            Err(e) => {
                undo(&[]);
                pr_err!("bow: checkpoint failed ({:?}); staying in state 0\n", e);
                return Err(e);
            }
        };

        let r = (|| -> Result<(KVec<u8>, LogHeader)> {
            let mut data = self.block_buf()?;
            let bs = data.len();
            self.io.sync(&self.dev, 0, &mut data, bs, IoKind::Read)?;
            let crc = kernel_crc32_le(0, &data);
            self.io
                .sync(&self.dev, a * spb, &mut data, bs, IoKind::Write)?;
            self.io
                .sync(&self.dev, l * spb, &mut data, bs, IoKind::Write)?;
            let mut block = self.block_buf()?;
            let mut h = LogHeader::new(self.bs, 0, l * spb);
            LogEntry {
                source: 0,
                dest: a * spb,
                size: self.bs,
                checksum: crc,
            }
            .encode_at(&mut block, 0)
            .map_err(|_| code::EINVAL)?;
            // The live copy's place is free at checkpoint and will hold data
            // newer than it: a restore zeroes it.
            LogEntry::zero(l * spb, self.bs)
                .encode_at(&mut block, 1)
                .map_err(|_| code::EINVAL)?;
            h.count = 2;
            h.encode(&mut block).map_err(|_| code::EINVAL)?;
            self.io
                .sync(&self.dev, 0, &mut block, bs, IoKind::WriteFlushFua)?;
            Ok((block, h))
        })();
        let (block, header) = match r {
            Ok(v) => v,
            Err(e) => {
                undo(&[a, l]);
                pr_err!("bow: checkpoint failed ({:?}); staying in state 0\n", e);
                return Err(e);
            }
        };
        // Shared, so that `free_map` formats it without the map's lock.
        let free_map = match Arc::new(free_map, GFP_KERNEL) {
            Ok(f) => f,
            Err(e) => {
                undo(&[a, l]);
                pr_err!("bow: checkpoint failed ({:?}); staying in state 0\n", e);
                return Err(e.into());
            }
        };
        let mut g = self.inner.lock();
        g.log = Some(LogState {
            header,
            block: Some(block),
            pending,
            spare: Some(spare),
            sector0_next: l * spb,
            enqueued: 0,
            durable: 0,
            unlogged: 0,
            writing: false,
            failed: false,
        });
        g.live0 = l;
        g.free_at_checkpoint = Some(free_map);
        g.live_registered = live::add(self.dev.devt());
        let free = g.free_blocks;
        drop(g);
        pr_info!(
            "bow: checkpoint taken: {} free blocks of {} bytes\n",
            free,
            self.bs
        );
        Ok(())
    }

    /// 1 -> 2: put the live block 0 back durably.
    fn commit(&self) -> Result {
        let l = self.inner.lock().live0;
        // Writes sent to the live copy land before it is copied.
        self.block0_writes.wait_zero();
        let r = (|| -> Result {
            let mut data = self.block_buf()?;
            let bs = data.len();
            self.io
                .sync(&self.dev, l * self.spb, &mut data, bs, IoKind::Read)?;
            self.io
                .sync(&self.dev, 0, &mut data, bs, IoKind::WriteFlushFua)
        })();
        if let Err(e) = r {
            pr_err!("bow: commit failed ({:?}); staying in state 1\n", e);
            return Err(e);
        }
        let mut g = self.inner.lock();
        if core::mem::take(&mut g.live_registered) {
            live::remove(self.dev.devt());
        }
        drop(g);
        pr_info!("bow: committed\n");
        Ok(())
    }
}
