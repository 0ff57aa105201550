//! Restore under power cuts (spec 6.4): cut a restore after every write and
//! sync it issues, lose any subset of the writes not yet synced, run restore
//! again, and the device must still come back to its checkpoint image.

use bow_core::restore::{self, Disk, IoError, Step};
use bow_core::testimg::{Image, Rng};

/// What a restore did, in order.
#[derive(Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Sync,
}

struct Recorder {
    data: Vec<u8>,
    ops: Vec<Op>,
}

impl Disk for Recorder {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), IoError> {
        b.copy_from_slice(&self.data[o as usize..o as usize + b.len()]);
        Ok(())
    }
    fn write_at(&mut self, o: u64, b: &[u8]) -> Result<(), IoError> {
        self.data[o as usize..o as usize + b.len()].copy_from_slice(b);
        self.ops.push(Op::Write(o, b.to_vec()));
        Ok(())
    }
    fn sync(&mut self) -> Result<(), IoError> {
        self.ops.push(Op::Sync);
        Ok(())
    }
}

fn apply(d: &mut [u8], o: u64, b: &[u8]) {
    d[o as usize..o as usize + b.len()].copy_from_slice(b);
}

/// The device after a cut before op `k`: every write before the last sync
/// before `k` is durable; of the later ones, those `keep` picks survive.
fn crash_state(base: &[u8], ops: &[Op], k: usize, keep: &mut impl FnMut(usize) -> bool) -> Vec<u8> {
    let mut d = base.to_vec();
    let last_sync = ops[..k].iter().rposition(|o| matches!(o, Op::Sync));
    for (i, op) in ops[..k].iter().enumerate() {
        if let Op::Write(o, b) = op {
            if last_sync.is_some_and(|s| i < s) || keep(i) {
                apply(&mut d, *o, b);
            }
        }
    }
    d
}

fn restore_fully(data: Vec<u8>) -> Recorder {
    let mut r = Recorder {
        data,
        ops: Vec::new(),
    };
    let log = restore::validate(&mut r)
        .expect("a crash state must validate")
        .expect("a crash state before the end must still hold a log");
    restore::restore(&mut r, &log, &mut ()).unwrap();
    r
}

fn check_every_cut(img: &Image, seed: u64) -> usize {
    let first = restore_fully(img.data.clone());
    assert_eq!(
        img.first_mismatch(&first.data),
        None,
        "uninterrupted restore"
    );
    let ops = first.ops;
    let mut rng = Rng::new(seed);
    let mut states = 0;
    for k in 0..ops.len() {
        // Lose all unsynced writes, keep all, and two random subsets.
        for mode in 0..4 {
            let mut keep = |_: usize| match mode {
                0 => false,
                1 => true,
                _ => rng.below(2) == 0,
            };
            let crashed = crash_state(&img.data, &ops, k, &mut keep);
            let mut r = Recorder {
                data: crashed,
                ops: Vec::new(),
            };
            // `None` only once block 0 holds the original again.
            if let Some(log) = restore::validate(&mut r)
                .unwrap_or_else(|e| panic!("seed {seed} cut {k} mode {mode}: {e:?}"))
            {
                restore::restore(&mut r, &log, &mut ()).unwrap();
            }
            assert_eq!(
                img.first_mismatch(&r.data),
                None,
                "cut before op {k} of {}, mode {mode}",
                ops.len()
            );
            states += 1;
        }
    }
    states
}

#[test]
fn random_overwrites_survive_a_cut_anywhere() {
    for seed in 0..6 {
        let mut img = Image::new(4096, 96, 48, seed);
        img.scribble(60, seed + 100);
        assert!(check_every_cut(&img, seed) > 0);
    }
}

#[test]
fn claimed_free_space_is_zeroed_and_backups_in_it_survive_a_cut_anywhere() {
    for seed in 0..4 {
        // 512-byte blocks: chaining too. Free blocks are taken from the end
        // of the free area first; claim windows there and at its start, so
        // backups land in claimed space both before and after the claim.
        let mut img = Image::new(512, 400, 200, 20 + seed);
        let mut written = Vec::new();
        let mut d = vec![0u8; 512];
        let mut claims = 0;
        for (i, first) in [390u64, 210, 370, 250, 300, 230].into_iter().enumerate() {
            if !img.claim(first, 6) {
                continue;
            }
            claims += 1;
            img.scribble(25, seed * 10 + i as u64);
            for b in [first, first + 2, first + 5] {
                d.fill(b as u8 | 1);
                if img.write_free(b, &d) {
                    written.push(b);
                }
            }
        }
        assert!(claims >= 3 && !written.is_empty());
        assert!(check_every_cut(&img, seed) > 0);
        let r = restore_fully(img.data.clone());
        for b in written {
            let at = b as usize * 512;
            assert!(
                r.data[at..at + 512].iter().all(|x| *x == 0),
                "block {b} written after the checkpoint comes back zeroed"
            );
        }
        // Every free block: as at checkpoint, or zeroed (backups' places,
        // saved log blocks and the live copy's place are cleared).
        for b in 0..img.blocks as usize {
            let rg = b * 512..(b + 1) * 512;
            if img.free_at_checkpoint[b] {
                assert!(
                    r.data[rg.clone()].iter().all(|x| *x == 0)
                        || r.data[rg.clone()] == img.checkpoint[rg],
                    "free block {b} holds other data after the restore"
                );
            }
        }
    }
}

#[test]
fn chained_log_survives_a_cut_anywhere() {
    // 512-byte blocks hold 20 entries: many sequences.
    let mut img = Image::new(512, 600, 300, 7);
    img.scribble(250, 8);
    assert!(!img.saved_log_blocks.is_empty());
    assert!(check_every_cut(&img, 9) > 0);
}

#[test]
fn sequential_rewrite_restores_in_large_copies() {
    let mut img = Image::new(4096, 1200, 600, 3);
    img.rewrite_run(1, 500, 4);
    let log = restore::validate(&mut Recorder {
        data: img.data.clone(),
        ops: Vec::new(),
    })
    .unwrap()
    .unwrap();
    let plan = restore::plan(&log);
    let copies = plan
        .iter()
        .filter(|s| matches!(s, Step::Copy { .. }))
        .count();
    let entries: usize = log.blocks.iter().map(|b| b.entries.len()).sum();
    assert!(
        copies * 20 < entries,
        "{copies} copies for {entries} entries"
    );
    assert_eq!(
        img.first_mismatch(&restore_fully(img.data.clone()).data),
        None
    );
    check_every_cut(&img, 5);
}

#[test]
fn interrupted_restore_twice_gives_the_same_image() {
    let mut img = Image::new(1024, 300, 150, 11);
    img.scribble(120, 12);
    let done = restore_fully(img.data.clone()).data;
    let again = {
        let mut r = Recorder {
            data: done.clone(),
            ops: Vec::new(),
        };
        assert!(
            restore::validate(&mut r).unwrap().is_none(),
            "nothing left to restore"
        );
        r.data
    };
    assert_eq!(done, again);
}

/// Logs where blocks serve as backup space after their own data was saved,
/// so a newer entry reads a block an older one writes: without the WOB
/// fences a cut would lose data. Compared with the uninterrupted restore on
/// every block that is not a leftover backup.
#[test]
fn hazardous_logs_need_and_get_fences() {
    let mut fenced = 0;
    for seed in 0..40u64 {
        let mut img = Image::new(512, 64, 24, seed);
        let mut rng = Rng::new(seed ^ 0xabc);
        // Blocks whose current content is a needed backup.
        let mut holds = std::collections::BTreeSet::new();
        let mut dests = std::collections::BTreeSet::new();
        let mut sources = std::collections::BTreeSet::new();
        for _ in 0..30 {
            if img.free_left() < 3 {
                break;
            }
            // Sources and dests from the used region; the free list stays
            // for the target's own blocks (block 0's copies, log chaining).
            let used = img.blocks - 24;
            let s = 1 + rng.below(used - 1);
            let d = 1 + rng.below(used - 1);
            if s == d || holds.contains(&d) || img.saved_log_blocks.contains(&d) {
                continue;
            }
            img.move_block(s, d, &mut rng);
            holds.remove(&s);
            holds.insert(d);
            dests.insert(d);
            sources.insert(s);
            for c in &img.saved_log_blocks {
                holds.insert(*c);
            }
        }
        let full = restore_fully(img.data.clone());
        let ops = full.ops.clone();
        let expect = full.data;
        let log = restore::validate(&mut Recorder {
            data: img.data.clone(),
            ops: vec![],
        })
        .unwrap()
        .unwrap();
        let plan = restore::plan(&log);
        fenced += plan
            .iter()
            .filter(|s| matches!(s, Step::Fence { .. }))
            .count();
        // Places of backups cleared by the full restore: after a cut that
        // lands once they are no longer needed, they may keep their copy.
        let bs = img.bs as usize;
        let spb = (img.bs / 512) as u64;
        let mut cleared = std::collections::BTreeSet::new();
        for st in &plan {
            if let Step::Clear { at, bytes, .. } = *st {
                cleared.extend(at / spb..(at + bytes / 512) / spb);
            }
        }
        let compared =
            |b: u64| (sources.contains(&b) || !dests.contains(&b)) && !cleared.contains(&b);
        for k in 0..ops.len() {
            for mode in 0..3 {
                let mut keep = |_: usize| match mode {
                    0 => false,
                    1 => true,
                    _ => rng.below(2) == 0,
                };
                let mut r = Recorder {
                    data: crash_state(&img.data, &ops, k, &mut keep),
                    ops: vec![],
                };
                if let Some(log) = restore::validate(&mut r)
                    .unwrap_or_else(|e| panic!("seed {seed} cut {k} mode {mode}: {e:?}"))
                {
                    restore::restore(&mut r, &log, &mut ()).unwrap();
                }
                for b in (0..img.blocks).filter(|b| compared(*b)) {
                    let rg = b as usize * bs..(b as usize + 1) * bs;
                    assert!(
                        r.data[rg.clone()] == expect[rg],
                        "seed {seed} cut {k} mode {mode} block {b}"
                    );
                }
            }
        }
    }
    assert!(
        fenced > 10,
        "only {fenced} fences: the logs do not exercise them"
    );
}
