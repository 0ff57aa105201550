//! The range map: what each block of the device is, as runs of blocks.
//!
//! The map covers `[0, blocks)` exactly with non-overlapping extents, and no
//! two neighbours have the same kind. The storage is abstract ([`Store`]) so
//! the kernel keeps it in an rbtree keyed by each extent's last block while the
//! tests keep it in a `BTreeMap`; the decisions (split, merge, classify,
//! allocate) are made here, once.

/// What a run of blocks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// State 0: in use by the filesystem (not discarded since the table was loaded).
    Used,
    /// Discarded in state 0 and not written since: free for backups.
    Free,
    /// State 1: held data at checkpoint and has not been backed up yet.
    Unchanged,
    /// State 1: backed up already, or free at checkpoint and written since.
    Changed,
    /// State 1: holds a backup, a saved log block or the live copy of block 0.
    Backup,
    /// State 1: a copy involving these blocks is in flight; writers wait.
    Busy,
    /// State 1: free at checkpoint, not written since, and covered by a
    /// durable "zero on restore" entry, so writes into it need no log write.
    /// Still free for backups.
    Claimed,
}

impl Kind {
    /// Free space: holds nothing the checkpoint needs, so backups may go there.
    pub const fn is_free(self) -> bool {
        matches!(self, Kind::Free | Kind::Claimed)
    }
}

/// One extent of the map: blocks `[start, end)` of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First block.
    pub start: u64,
    /// One past the last block.
    pub end: u64,
    /// What the blocks are.
    pub kind: Kind,
}

impl Extent {
    /// Number of blocks.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the extent has no blocks.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The store could not get a node for a new extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoNode;

/// Where the extents live. Implementations need only keep extents by their
/// last block; they never see overlapping extents.
pub trait Store {
    /// The extent containing `block`, if any.
    fn containing(&mut self, block: u64) -> Option<Extent>;
    /// Removes the extent containing `block` and returns it.
    fn remove_containing(&mut self, block: u64) -> Option<Extent>;
    /// Adds an extent that overlaps no other.
    fn insert(&mut self, e: Extent) -> Result<(), NoNode>;
}

/// The most extents one [`assign`] can add beyond those it removes.
pub const MAX_NEW_EXTENTS: usize = 2;

/// Makes blocks `[start, end)` of kind `kind`, splitting and merging extents.
///
/// Needs at most [`MAX_NEW_EXTENTS`] more nodes than it frees; a store that
/// recycles removed nodes and holds that many spare never fails. On `NoNode`
/// the map may have lost blocks, so callers must reserve first.
pub fn assign<S: Store>(s: &mut S, start: u64, end: u64, kind: Kind) -> Result<(), NoNode> {
    if start >= end {
        return Ok(());
    }
    let mut new = Extent { start, end, kind };
    // Take out every extent overlapping [start, end), keeping the parts outside.
    let mut cur = start;
    let mut left = None;
    let mut right = None;
    while cur < end {
        let Some(e) = s.remove_containing(cur) else {
            break;
        };
        if e.start < start {
            left = Some(Extent {
                start: e.start,
                end: start,
                kind: e.kind,
            });
        }
        if e.end > end {
            right = Some(Extent {
                start: end,
                end: e.end,
                kind: e.kind,
            });
        }
        cur = e.end;
    }
    // Merge with same-kind neighbours, inside or outside the old extents.
    match left {
        Some(l) if l.kind == kind => new.start = l.start,
        Some(l) => s.insert(l)?,
        None if start > 0 => {
            if let Some(l) = s.containing(start - 1) {
                if l.kind == kind {
                    s.remove_containing(start - 1);
                    new.start = l.start;
                }
            }
        }
        None => {}
    }
    match right {
        Some(r) if r.kind == kind => new.end = r.end,
        Some(r) => s.insert(r)?,
        None => {
            if let Some(r) = s.containing(end) {
                if r.kind == kind {
                    s.remove_containing(end);
                    new.end = r.end;
                }
            }
        }
    }
    s.insert(new)
}

/// Calls `f` with each piece of the map inside `[start, end)`, in order,
/// clipped to that range.
pub fn for_each_in<S: Store, F: FnMut(Extent)>(s: &mut S, start: u64, end: u64, mut f: F) {
    let mut cur = start;
    while cur < end {
        let Some(e) = s.containing(cur) else { return };
        let piece = Extent {
            start: cur,
            end: e.end.min(end),
            kind: e.kind,
        };
        if piece.is_empty() {
            return;
        }
        f(piece);
        cur = piece.end;
    }
}

/// Finds up to `want` free blocks ([`Kind::is_free`]) of one extent, scanning from `hint` to the
/// end of the map and then from the start. Returns the first free run found
/// (which may be shorter than `want`) without changing the map.
pub fn find_free<S: Store>(s: &mut S, blocks: u64, hint: u64, want: u64) -> Option<(u64, u64)> {
    let scan = |s: &mut S, from: u64, to: u64| -> Option<(u64, u64)> {
        let mut cur = from;
        while cur < to {
            let e = s.containing(cur)?;
            if e.kind.is_free() {
                let len = (e.end - cur).min(want);
                return Some((cur, len));
            }
            cur = e.end;
        }
        None
    };
    if want == 0 {
        return None;
    }
    let hint = if hint >= blocks { 0 } else { hint };
    scan(s, hint, blocks).or_else(|| scan(s, 0, hint))
}

/// The map of a device in state 0: every block in use.
pub fn init<S: Store>(s: &mut S, blocks: u64) -> Result<(), NoNode> {
    s.insert(Extent {
        start: 0,
        end: blocks,
        kind: Kind::Used,
    })
}

/// What the checkpoint turns each kind into: free space stays free (it is the
/// pool for backups), everything else held data at checkpoint.
pub const fn at_checkpoint(k: Kind) -> Kind {
    match k {
        Kind::Free => Kind::Free,
        _ => Kind::Unchanged,
    }
}

#[cfg(any(test, feature = "model"))]
pub mod model {
    //! A `BTreeMap` store and a block-by-block model, for the tests.
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// Extents keyed by last block, as the kernel keeps them.
    #[derive(Default, Debug)]
    pub struct MapStore {
        pub by_last: BTreeMap<u64, Extent>,
    }

    impl Store for MapStore {
        fn containing(&mut self, block: u64) -> Option<Extent> {
            self.by_last
                .range(block..)
                .next()
                .map(|(_, e)| *e)
                .filter(|e| e.start <= block)
        }
        fn remove_containing(&mut self, block: u64) -> Option<Extent> {
            let e = self.containing(block)?;
            self.by_last.remove(&(e.end - 1));
            Some(e)
        }
        fn insert(&mut self, e: Extent) -> Result<(), NoNode> {
            assert!(!e.is_empty());
            assert!(
                self.by_last.insert(e.end - 1, e).is_none(),
                "overlap at {e:?}"
            );
            Ok(())
        }
    }

    impl MapStore {
        pub fn extents(&self) -> Vec<Extent> {
            self.by_last.values().copied().collect()
        }
        /// Checks coverage of [0, blocks) and maximal merging.
        pub fn check(&self, blocks: u64) {
            let ex = self.extents();
            let mut cur = 0;
            let mut prev: Option<Kind> = None;
            for e in &ex {
                assert_eq!(e.start, cur, "gap or overlap in {ex:?}");
                assert!(!e.is_empty());
                assert_ne!(Some(e.kind), prev, "unmerged neighbours in {ex:?}");
                prev = Some(e.kind);
                cur = e.end;
            }
            assert_eq!(cur, blocks, "map does not end at the device end: {ex:?}");
        }
        pub fn blocks(&self) -> Vec<Kind> {
            let mut v = Vec::new();
            for e in self.by_last.values() {
                for _ in e.start..e.end {
                    v.push(e.kind);
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model::MapStore;
    use super::*;
    extern crate std;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn kind_strategy() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Used),
            Just(Kind::Free),
            Just(Kind::Unchanged),
            Just(Kind::Changed),
            Just(Kind::Backup),
            Just(Kind::Busy),
            Just(Kind::Claimed),
        ]
    }

    #[test]
    fn split_and_merge() {
        let mut s = MapStore::default();
        init(&mut s, 100).unwrap();
        assign(&mut s, 10, 20, Kind::Free).unwrap();
        assign(&mut s, 20, 30, Kind::Free).unwrap();
        s.check(100);
        assert_eq!(s.extents().len(), 3);
        assign(&mut s, 15, 25, Kind::Used).unwrap();
        s.check(100);
        assert_eq!(s.extents().len(), 5);
        assign(&mut s, 0, 100, Kind::Used).unwrap();
        s.check(100);
        assert_eq!(s.extents().len(), 1);
    }

    #[test]
    fn find_free_wraps_and_clips() {
        let mut s = MapStore::default();
        init(&mut s, 100).unwrap();
        assert_eq!(find_free(&mut s, 100, 0, 4), None);
        assign(&mut s, 10, 12, Kind::Free).unwrap();
        assign(&mut s, 50, 60, Kind::Free).unwrap();
        assert_eq!(find_free(&mut s, 100, 0, 4), Some((10, 2)));
        assert_eq!(find_free(&mut s, 100, 11, 4), Some((11, 1)));
        assert_eq!(find_free(&mut s, 100, 12, 4), Some((50, 4)));
        assert_eq!(find_free(&mut s, 100, 70, 40), Some((10, 2)));
        assert_eq!(find_free(&mut s, 100, 1000, 40), Some((10, 2)));
    }

    proptest! {
        /// Random assigns keep the map exact, merged, and equal to a per-block model.
        #[test]
        fn assign_matches_block_model(
            blocks in 1u64..200,
            ops in proptest::collection::vec((0u64..220, 0u64..60, kind_strategy()), 0..60),
        ) {
            let mut s = MapStore::default();
            init(&mut s, blocks).unwrap();
            let mut model = vec![Kind::Used; blocks as usize];
            for (start, len, kind) in ops {
                let start = start.min(blocks);
                let end = (start + len).min(blocks);
                assign(&mut s, start, end, kind).unwrap();
                for b in start..end {
                    model[b as usize] = kind;
                }
                s.check(blocks);
                prop_assert_eq!(s.blocks(), model.clone());
            }
            // for_each_in reports exactly the model's kinds.
            let mut seen = Vec::new();
            for_each_in(&mut s, 0, blocks, |e| {
                for _ in e.start..e.end { seen.push(e.kind); }
            });
            prop_assert_eq!(seen, model);
        }

        #[test]
        fn find_free_only_returns_free(
            blocks in 1u64..200,
            frees in proptest::collection::vec((0u64..200, 1u64..20), 0..10),
            hint in 0u64..250,
            want in 1u64..30,
        ) {
            let mut s = MapStore::default();
            init(&mut s, blocks).unwrap();
            for (st, len) in frees {
                let st = st.min(blocks);
                assign(&mut s, st, (st + len).min(blocks), Kind::Free).unwrap();
            }
            let model = s.blocks();
            match find_free(&mut s, blocks, hint, want) {
                Some((st, len)) => {
                    prop_assert!(len >= 1 && len <= want);
                    for b in st..st + len { prop_assert_eq!(model[b as usize], Kind::Free); }
                }
                None => prop_assert!(!model.contains(&Kind::Free)),
            }
        }
    }
}
