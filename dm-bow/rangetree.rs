// SPDX-License-Identifier: GPL-2.0

//! The kernel's storage for the shared range map: an rbtree of extents keyed
//! by their last block, with a small pool of spare nodes so that changing the
//! map under a spinlock never allocates.

use crate::bow_core::rangemap::{self, Extent, Kind, NoNode, Store};
use crate::ffi::vec_pop;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

/// Spare nodes kept for one [`rangemap::assign`] plus one more.
pub(crate) const SPARES: usize = 2 * rangemap::MAX_NEW_EXTENTS + 2;

#[derive(Clone, Copy)]
pub(crate) struct Value {
    start: u64,
    kind: Kind,
}

type Reservation = RBTreeNodeReservation<u64, Value>;

/// Extents keyed by last block, plus spare nodes.
pub(crate) struct RangeTree {
    tree: RBTree<u64, Value>,
    spare: KVec<Reservation>,
    extents: usize,
}

impl RangeTree {
    /// An empty tree with room for its spare nodes.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            tree: RBTree::new(),
            spare: KVec::with_capacity(SPARES * 2, GFP_KERNEL)?,
            extents: 0,
        })
    }

    /// How many spare nodes are short of [`SPARES`].
    pub(crate) fn spares_needed(&self) -> usize {
        SPARES.saturating_sub(self.spare.len())
    }

    /// Adds spare nodes allocated outside the lock.
    pub(crate) fn add_spares(&mut self, nodes: &mut KVec<Reservation>) {
        while self.spare.len() < self.spare.capacity() {
            let Some(n) = vec_pop(nodes) else { break };
            // Cannot fail: there is capacity, so no allocation happens.
            if self.spare.push(n, GFP_NOWAIT).is_err() {
                break;
            }
        }
    }

    /// Whether a whole [`rangemap::assign`] is guaranteed to find its nodes.
    pub(crate) fn ready(&self) -> bool {
        self.spare.len() >= rangemap::MAX_NEW_EXTENTS
    }

    /// Number of extents in the map.
    pub(crate) fn extents(&self) -> usize {
        self.extents
    }

    /// Calls `f` with at most `max` extents in order, from the one holding
    /// block `from` (or the first after it), and gives each the kind `f`
    /// returns; `f` returning `None` ends the walk there. `f` must map
    /// distinct neighbouring kinds to distinct kinds, so no merge is needed.
    /// Returns the block to go on from, or `None` once the last extent is
    /// done or `f` stopped: a walk of the whole map is a series of calls,
    /// each short enough to make under the map's spinlock.
    pub(crate) fn visit(
        &mut self,
        from: u64,
        max: usize,
        mut f: impl FnMut(Extent) -> Option<Kind>,
    ) -> Option<u64> {
        let mut c = self.tree.cursor_lower_bound(&from)?;
        for _ in 0..max {
            let (last, v) = c.current_mut();
            let last = *last;
            v.kind = f(Extent {
                start: v.start,
                end: last + 1,
                kind: v.kind,
            })?;
            c = c.move_next()?;
        }
        Some(c.current().1.start)
    }
}

/// Allocates `n` spare nodes (outside any spinlock).
pub(crate) fn alloc_spares(n: usize, flags: kernel::alloc::Flags) -> Result<KVec<Reservation>> {
    let mut v = KVec::with_capacity(n, flags)?;
    for _ in 0..n {
        v.push(RBTreeNodeReservation::new(flags)?, flags)?;
    }
    Ok(v)
}

impl Store for RangeTree {
    fn containing(&mut self, block: u64) -> Option<Extent> {
        let c = self.tree.cursor_lower_bound(&block)?;
        let (last, v) = c.current();
        (v.start <= block).then_some(Extent {
            start: v.start,
            end: *last + 1,
            kind: v.kind,
        })
    }

    fn remove_containing(&mut self, block: u64) -> Option<Extent> {
        let e = self.containing(block)?;
        let node = self.tree.remove_node(&(e.end - 1))?;
        self.extents = self.extents.saturating_sub(1);
        if self.spare.len() < self.spare.capacity() {
            // Cannot allocate: there is capacity.
            let _ = self.spare.push(node.into_reservation(), GFP_NOWAIT);
        }
        Some(e)
    }

    fn insert(&mut self, e: Extent) -> Result<(), NoNode> {
        if e.is_empty() {
            return Ok(());
        }
        let r = vec_pop(&mut self.spare).ok_or(NoNode)?;
        self.tree.insert(r.into_node(
            e.end - 1,
            Value {
                start: e.start,
                kind: e.kind,
            },
        ));
        self.extents += 1;
        Ok(())
    }
}
