// SPDX-License-Identifier: GPL-2.0

//! The bow target's logic, above the FFI layer. No `unsafe` here.
//!
//! # The path of a write in state 1
//!
//! `map` looks the bio's blocks up in the range map. Writes that touch only
//! blocks already changed (or free at checkpoint) are remapped at once. Any
//! other write is held and handed to a worker, which for each block that held
//! data at checkpoint (or holds a backup): takes a free block, marks both
//! busy, copies the data, and queues a log entry. Entries completed together
//! share one log write with PREFLUSH|FUA (group commit); only then are the
//! blocks marked changed and the user's write released. No lock is held
//! across any I/O: the map lives under a spinlock, and the log block belongs
//! to whichever worker is writing it (`LogState::writing`).

use crate::bow_core::format::{entries_per_block, entry_checksum, holds_log, LogEntry, LogHeader};
use crate::bow_core::rangemap::{self, Kind};
use crate::bow_core::state::{self as st, Counters, Message, State, StatusIma, StatusInfo};
use crate::bow_core::table::{self, Geometry, TableError};
use crate::ffi::{
    Args, Bio, BioList, CtrError, Deferred, DmDev, InFlight, IoClient, IoKind, Mapped, NoIo, Op, PlugHook, StatusBuf,
    StatusKind, Sysfs, Target, TargetRef, TargetSetup, Unplug, WorkQueue,
};
use crate::ffi::vec_clear;
use crate::rangetree::{alloc_spares, RangeTree, SPARES};
use core::fmt::Write;
use kernel::error::code;
use kernel::prelude::*;
use kernel::sync::lock::{spinlock::SpinLockBackend, Guard};
use kernel::sync::{new_condvar, new_mutex, new_spinlock, Arc, CondVar, CondVarTimeoutResult, Mutex, SpinLock};
use kernel::workqueue::{impl_has_work, new_work, Work, WorkItem};

/// Version of the target type, as `dmsetup targets` shows it.
pub(crate) const VERSION: [u32; 3] = [1, 0, 0];

/// Workers copying first overwrites concurrently.
const WORKERS: usize = 16;
/// Largest single copy (one log entry), in bytes.
const COPY_MAX: usize = 64 * 1024;
/// Most copies one worker plans before executing them.
const JOBS_MAX: usize = 64;
/// Log entries that may wait for the log writer at once.
const PENDING_MAX: usize = WORKERS * JOBS_MAX;
/// Longest time the log writer waits for copies in progress to join its write.
const LINGER_MS: u32 = 50;
/// Free blocks kept back from backups so the log can always chain once more.
const LOG_RESERVE: u64 = 1;
/// Tag of bios remapped to the live copy of block 0, counted in `Shared::block0_writes`.
const TAG_BLOCK0: usize = 1;
/// Tag of writes remapped in state 0, counted in `Shared::writes0`.
const TAG_WRITE0: usize = 2;

fn table_error(e: TableError) -> CtrError {
    CtrError::inval(e.message())
}

/// The on-disk log as the target keeps it.
///
/// `block` is `None` while a worker writes it (`writing` is then true);
/// only that worker touches it.
struct LogState {
    header: LogHeader,
    block: Option<KVec<u8>>,
    /// Copies done whose entries are not in the log yet.
    pending: KVec<LogEntry>,
    /// The writer's batch vector, swapped with `pending`.
    spare: Option<KVec<LogEntry>>,
    /// `sector0` for the next log write.
    sector0_next: u64,
    /// Batches (one per worker phase) ever queued.
    batches: u64,
    /// Entries ever queued, and how many of those are durable.
    enqueued: u64,
    durable: u64,
    writing: bool,
    /// A log write failed: the on-disk log is the last durable one and no
    /// further backup can be logged.
    failed: bool,
}

/// State protected by [`Shared::inner`].
struct Inner {
    state: State,
    /// A state change is running: writes are requeued until it ends.
    changing: bool,
    map: RangeTree,
    free_blocks: u64,
    free_hint: u64,
    /// Block holding the live copy of block 0 (state 1).
    live0: u64,

    /// Bios waiting for a worker.
    queue: BioList,
    /// Bios queued or being handled by workers.
    inflight: usize,
    /// Workers copying data whose entries are not queued for the log yet.
    copying: usize,
    /// Workers whose entries are queued and who wait for the log write. While
    /// `inflight` exceeds this, more entries are on their way: the log writer
    /// lingers for them (bounded by `LINGER_MS`), so they share its write.
    log_waiters: usize,
    /// Workers waiting for busy blocks to settle: they cannot reach the log
    /// before it is written, so the log writer does not linger for them.
    busy_waiters: usize,
    counters: Counters,
    log: Option<LogState>,
    /// The free ranges (start, length in blocks) at the moment of checkpoint.
    free_at_checkpoint: Option<KVec<(u64, u64)>>,
    /// This target is in the registry of live checkpoints.
    live_registered: bool,
}

/// Everything the target's hooks, workers and sysfs files share.
#[pin_data]
pub(crate) struct Shared {
    dev: DmDev,
    io: IoClient,
    begin: u64,
    bs: u32,
    spb: u64,
    blocks: u64,
    #[pin]
    inner: SpinLock<Inner>,
    /// Signalled when busy blocks settle, the log advances or work drains.
    #[pin]
    cond: CondVar,
    /// Serialises state changes (sysfs and messages).
    #[pin]
    transition: Mutex<()>,
    #[pin]
    sysfs: Mutex<Option<Sysfs>>,
    /// Writes remapped to `live0` and not completed: the live copy only
    /// moves, and commit only copies it, once they are done. Incremented
    /// under `inner` after checking that `live0` is not busy.
    block0_writes: InFlight,
    /// `inner.state`, readable without the lock: the committed state maps
    /// bios without taking any lock. Written under `inner` after each change.
    state_now: core::sync::atomic::AtomicU8,
    /// Writes remapped in state 0 and not completed: the checkpoint waits for
    /// them, so none lands after it. Incremented under `inner` while not
    /// `changing`.
    writes0: InFlight,
}

type InnerGuard<'a> = Guard<'a, Inner, SpinLockBackend>;

/// One planned copy: blocks `[src, src+n)` to `[dst, dst+n)`.
#[derive(Clone, Copy)]
struct Job {
    src: u64,
    dst: u64,
    n: u64,
    was: Kind,
    /// This job moves the live copy of block 0 (alone): its entry has
    /// checksum 0, as its content keeps changing after the move.
    live0: bool,
}

/// A worker's private buffers, allocated once.
struct WorkerBufs {
    copy: KVec<u8>,
    jobs: KVec<Job>,
    entries: KVec<LogEntry>,
}

#[pin_data]
struct Worker {
    #[pin]
    work: Work<Worker>,
    shared: Arc<Shared>,
    /// Set while `run` executes, so bios go to idle workers first.
    running: core::sync::atomic::AtomicBool,
    #[pin]
    bufs: Mutex<WorkerBufs>,
}

impl_has_work! {
    impl HasWork<Self> for Worker { self.work }
}

impl WorkItem for Worker {
    type Pointer = Arc<Worker>;

    fn run(this: Arc<Worker>) {
        use core::sync::atomic::Ordering;
        this.running.store(true, Ordering::SeqCst);
        let _noio = NoIo::enter();
        let s = &this.shared;
        let mut bufs = this.bufs.lock();
        loop {
            let Some(bio) = s.inner.lock().queue.pop() else { break };
            s.process(bio, &mut bufs);
            s.inner.lock().inflight -= 1;
            s.cond.notify_all();
        }
        this.running.store(false, Ordering::SeqCst);
    }
}

/// The workers and their queue.
struct Pool {
    wq: WorkQueue,
    workers: KVec<Arc<Worker>>,
    /// Bios held while the kick was deferred to the submitter's plug flush.
    deferred: core::sync::atomic::AtomicUsize,
}

impl Pool {
    /// Hands held bios to a worker: an idle one if there is one, so first
    /// overwrites of different blocks proceed concurrently.
    fn kick(&self) {
        use core::sync::atomic::Ordering;
        for w in self.workers.iter() {
            if !w.running.load(Ordering::SeqCst) && self.wq.queue().enqueue(w.clone()).is_ok() {
                return;
            }
        }
        for w in self.workers.iter() {
            if self.wq.queue().enqueue(w.clone()).is_ok() {
                return;
            }
        }
        // Every worker is queued already and will find the bio.
    }
}

impl Unplug for Pool {
    /// The submitter's batch is in: start a worker per held bio (up to all
    /// of them), so the copies run side by side and their log entries share
    /// one log write.
    fn unplugged(&self) {
        let n = self.deferred.swap(0, core::sync::atomic::Ordering::SeqCst);
        for _ in 0..n.min(WORKERS) {
            self.kick();
        }
    }
}

/// One bow target instance. Field order is drop order: the sysfs directory
/// goes first (in `drop`), then pending plug flushes are waited for and the
/// queue is drained, then the workers and the shared state go.
pub(crate) struct Bow {
    pool: PlugHook<Pool>,
    shared: Arc<Shared>,
    geometry: Geometry,
    /// The table words as given, joined by single spaces, for `dmsetup table`.
    table_line: KVec<u8>,
}

impl Drop for Bow {
    fn drop(&mut self) {
        let sysfs = self.shared.sysfs.lock().take();
        drop(sysfs);
        if core::mem::take(&mut self.shared.inner.lock().live_registered) {
            let _ = self.shared.dev.set_live(false);
        }
    }
}

impl Shared {
    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Recorded free space not used by backups, in bytes.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.inner.lock().free_blocks * u64::from(self.bs)
    }

    fn publish_state(&self, s: State) {
        self.state_now.store(s as u8, core::sync::atomic::Ordering::Release);
    }

    /// A write to the sysfs `state` file.
    pub(crate) fn state_write(&self, text: &[u8]) -> Result {
        let want = match st::state_write(text, self.state()) {
            Ok(w) => w,
            Err(e) => {
                pr_warn!("bow: state write refused: {}\n", e);
                return Err(code::EINVAL);
            }
        };
        self.change_state(want)
    }

    fn change_state(&self, want: State) -> Result {
        let _t = self.transition.lock();
        let cur = self.state();
        if let Err(e) = st::transition(cur, want) {
            pr_warn!("bow: {}\n", e);
            return Err(code::EINVAL);
        }
        match want {
            State::Checkpoint => self.checkpoint(),
            State::Committed => self.commit(),
            State::Trim => Err(code::EINVAL),
        }
    }

    /// Locks the map with enough spare nodes for one more change, allocating
    /// them outside the lock when short (may sleep).
    fn lock_ready(&self) -> Result<InnerGuard<'_>> {
        loop {
            let g = self.inner.lock();
            if g.map.ready() && g.map.spares_needed() == 0 {
                return Ok(g);
            }
            let need = g.map.spares_needed().max(1);
            drop(g);
            let mut nodes = alloc_spares(need, GFP_KERNEL)?;
            self.inner.lock().map.add_spares(&mut nodes);
        }
    }

    /// Makes `[start, end)` of `kind`, keeping the free count exact.
    fn assign(&self, g: &mut InnerGuard<'_>, start: u64, end: u64, kind: Kind) -> Result {
        let mut was_free = 0;
        rangemap::for_each_in(&mut g.map, start, end, |e| {
            if e.kind == Kind::Free {
                was_free += e.len();
            }
        });
        rangemap::assign(&mut g.map, start, end, kind).map_err(|_| code::ENOMEM)?;
        g.free_blocks -= was_free;
        if kind == Kind::Free {
            g.free_blocks += end - start;
        }
        Ok(())
    }

    /// `assign` with spares made ready first; takes and drops the lock.
    fn assign_now(&self, start: u64, end: u64, kind: Kind) -> Result {
        let mut g = self.lock_ready()?;
        self.assign(&mut g, start, end, kind)
    }

    fn block_buf(&self) -> Result<KVec<u8>> {
        Ok(KVec::from_elem(0u8, self.bs as usize, GFP_KERNEL)?)
    }

    /// Takes one free block for the target's own use (a backup of block 0, its
    /// live copy, or a saved log block).
    fn take_free_block(&self, g: &mut InnerGuard<'_>) -> Result<u64> {
        let hint = g.free_hint;
        let (b, _) = rangemap::find_free(&mut g.map, self.blocks, hint, 1).ok_or(code::ENOSPC)?;
        self.assign(g, b, b + 1, Kind::Backup)?;
        g.free_hint = b + 1;
        Ok(b)
    }

    /// 0 -> 1: back up block 0, relocate its live copy, write the first log
    /// block, all durably, and only then report state 1. On failure the map
    /// is put back and the target stays in state 0.
    fn checkpoint(&self) -> Result {
        // From here on, state-0 writes and discards are requeued, so the map
        // holds still.
        self.inner.lock().changing = true;
        let r = self.checkpoint_locked();
        if r.is_err() {
            self.inner.lock().changing = false;
        }
        r
    }

    fn checkpoint_locked(&self) -> Result {
        let spb = self.spb;
        self.writes0.wait_zero();
        let mut free_map = {
            let n = self.inner.lock().map.extents();
            KVec::with_capacity(n, GFP_KERNEL)?
        };
        let pending = KVec::with_capacity(PENDING_MAX, GFP_KERNEL)?;
        let spare = KVec::with_capacity(PENDING_MAX, GFP_KERNEL)?;
        let mut g = self.lock_ready()?;
        if g.free_blocks < 2 + LOG_RESERVE + 1 {
            pr_warn!("bow: checkpoint needs free space: trim the device first\n");
            return Err(code::ENOSPC);
        }
        g.map.for_each(|e| {
            if e.kind == Kind::Free {
                // Capacity was reserved for every extent: no allocation.
                let _ = free_map.push((e.start, e.len()), GFP_NOWAIT);
            }
        });
        g.map.rekind(rangemap::at_checkpoint);
        let block0_was = rangemap::Store::containing(&mut g.map, 0).map_or(Kind::Unchanged, |e| e.kind);
        self.assign(&mut g, 0, 1, Kind::Changed)?;
        let a = self.take_free_block(&mut g)?;
        drop(g);
        let mut g = self.lock_ready()?;
        let l = self.take_free_block(&mut g)?;
        drop(g);

        let r = (|| -> Result<(KVec<u8>, LogHeader)> {
            let mut data = self.block_buf()?;
            self.io.sync(&self.dev, 0, &mut data, IoKind::Read)?;
            let crc = entry_checksum(0, self.bs, &data);
            self.io.sync(&self.dev, a * spb, &mut data, IoKind::Write)?;
            self.io.sync(&self.dev, l * spb, &mut data, IoKind::Write)?;
            let mut block = self.block_buf()?;
            let mut h = LogHeader::new(self.bs, 0, l * spb);
            LogEntry { source: 0, dest: a * spb, size: self.bs, checksum: crc }
                .encode_at(&mut block, 0)
                .map_err(|_| code::EINVAL)?;
            h.count = 1;
            h.encode(&mut block).map_err(|_| code::EINVAL)?;
            self.io.sync(&self.dev, 0, &mut block, IoKind::WriteFlushFua)?;
            Ok((block, h))
        })();
        let (block, header) = match r {
            Ok(v) => v,
            Err(e) => {
                // Put the map back as it was in state 0.
                let mut g = self.lock_ready()?;
                g.map.rekind(|k| if k == Kind::Unchanged { Kind::Used } else { k });
                let _ = self.assign(&mut g, a, a + 1, Kind::Free);
                drop(g);
                let _ = self.assign_now(l, l + 1, Kind::Free);
                let _ = self.assign_now(0, 1, if block0_was == Kind::Free { Kind::Free } else { Kind::Used });
                pr_err!("bow: checkpoint failed ({:?}); staying in state 0\n", e);
                return Err(e);
            }
        };
        let mut g = self.inner.lock();
        g.log = Some(LogState {
            header,
            block: Some(block),
            pending,
            spare: Some(spare),
            sector0_next: l * spb,
            batches: 0,
            enqueued: 0,
            durable: 0,
            writing: false,
            failed: false,
        });
        g.live0 = l;
        g.free_at_checkpoint = Some(free_map);
        g.state = State::Checkpoint;
        self.publish_state(State::Checkpoint);
        g.live_registered = self.dev.set_live(true).is_ok();
        g.changing = false;
        let free = g.free_blocks;
        drop(g);
        pr_info!("bow: checkpoint taken: {} free blocks of {} bytes\n", free, self.bs);
        Ok(())
    }

    /// 1 -> 2: drain, then put the live block 0 back durably, then report 2.
    fn commit(&self) -> Result {
        let mut g = self.inner.lock();
        g.changing = true;
        while g.inflight > 0 || g.log.as_ref().is_some_and(|l| l.writing) {
            self.cond.wait(&mut g);
        }
        let l = g.live0;
        drop(g);
        self.block0_writes.wait_zero();
        let r = (|| -> Result {
            let mut data = self.block_buf()?;
            self.io.sync(&self.dev, l * self.spb, &mut data, IoKind::Read)?;
            self.io.sync(&self.dev, 0, &mut data, IoKind::WriteFlushFua)
        })();
        let mut g = self.inner.lock();
        g.changing = false;
        if let Err(e) = r {
            pr_err!("bow: commit failed ({:?}); staying in state 1\n", e);
            return Err(e);
        }
        g.state = State::Committed;
        self.publish_state(State::Committed);
        if core::mem::take(&mut g.live_registered) {
            self.dev.set_live(false)?;
        }
        drop(g);
        pr_info!("bow: committed\n");
        Ok(())
    }

    /// Handles a held bio in a worker: a redirected block-0 bio, or a write
    /// that needs backups first.
    fn process(&self, mut bio: Bio, w: &mut WorkerBufs) {
        let sector = bio.sector().saturating_sub(self.begin);
        let nsect = u64::from(bio.size() / 512);
        let first = sector / self.spb;
        let last = (sector + nsect).div_ceil(self.spb).max(first + 1);
        if first == 0 {
            // Block 0 lives at `live0`; wait while that copy is being moved.
            let mut g = self.inner.lock();
            loop {
                let l = g.live0;
                match rangemap::Store::containing(&mut g.map, l) {
                    Some(e) if e.kind == Kind::Busy => self.wait_busy(&mut g),
                    _ => break,
                }
            }
            let l = g.live0;
            if bio.op() == Op::Write {
                self.block0_writes.inc();
                bio.set_tag(TAG_BLOCK0);
            }
            drop(g);
            bio.submit_remapped(&self.dev, l * self.spb + sector % self.spb);
            return;
        }
        match self.back_up(first, last, w) {
            Ok(()) => bio.submit_remapped(&self.dev, sector),
            Err(e) => {
                if e == code::ENOSPC {
                    self.inner.lock().counters.enospc += 1;
                }
                let _ = bio.endio(Some(e));
            }
        }
    }

    /// Makes every block of `[first, last)` safe to overwrite: backs up those
    /// that held data at checkpoint, moves backups out of the way, and waits
    /// until the log covering them is durable.
    fn back_up(&self, first: u64, last: u64, w: &mut WorkerBufs) -> Result {
        let mut cursor = first;
        while cursor < last {
            vec_clear(&mut w.jobs);
            vec_clear(&mut w.entries);
            let r = self.plan(&mut cursor, last, w);
            if !w.jobs.is_empty() {
                let done = self.copy_and_log(w);
                self.settle(w, done.is_ok());
                done?;
            }
            r?;
        }
        Ok(())
    }

    /// Waits for busy blocks to settle, telling the log writer not to wait
    /// for this worker meanwhile.
    fn wait_busy(&self, g: &mut InnerGuard<'_>) {
        g.busy_waiters += 1;
        self.cond.notify_all();
        self.cond.wait(g);
        g.busy_waiters -= 1;
    }

    /// Plans copies from `*cursor` on, until `last`, a busy block, or
    /// `JOBS_MAX` jobs. Waits for busy blocks only while holding none.
    fn plan(&self, cursor: &mut u64, last: u64, w: &mut WorkerBufs) -> Result {
        let max_blocks = (COPY_MAX / self.bs as usize) as u64;
        let mut g = self.lock_ready()?;
        while *cursor < last && w.jobs.len() < JOBS_MAX {
            if g.log.as_ref().map_or(true, |l| l.failed) || g.state != State::Checkpoint {
                return Err(code::EIO);
            }
            if !g.map.ready() {
                drop(g);
                g = self.lock_ready()?;
                continue;
            }
            let Some(e) = rangemap::Store::containing(&mut g.map, *cursor) else {
                return Err(code::EIO);
            };
            let end = e.end.min(last);
            match e.kind {
                Kind::Busy if w.jobs.is_empty() => self.wait_busy(&mut g),
                Kind::Busy => return Ok(()),
                Kind::Changed | Kind::Used => *cursor = end,
                Kind::Free => {
                    self.assign(&mut g, *cursor, end, Kind::Changed)?;
                    *cursor = end;
                }
                Kind::Unchanged | Kind::Backup => {
                    let live0 = g.live0;
                    let is_live0 = *cursor == live0;
                    if is_live0 && !w.jobs.is_empty() {
                        // The live copy moves alone, in a phase of its own.
                        return Ok(());
                    }
                    // Keep the live copy out of other jobs.
                    let end = if *cursor < live0 && live0 < end { live0 } else { end };
                    let end = if is_live0 { *cursor + 1 } else { end };
                    let avail = g.free_blocks.saturating_sub(LOG_RESERVE);
                    let want = (end - *cursor).min(max_blocks).min(avail);
                    let hint = g.free_hint;
                    let Some((dst, n)) = rangemap::find_free(&mut g.map, self.blocks, hint, want) else {
                        return Err(code::ENOSPC);
                    };
                    self.assign(&mut g, dst, dst + n, Kind::Busy)?;
                    g.free_hint = dst + n;
                    if !g.map.ready() {
                        drop(g);
                        g = self.lock_ready()?;
                    }
                    self.assign(&mut g, *cursor, *cursor + n, Kind::Busy)?;
                    w.jobs.push(Job { src: *cursor, dst, n, was: e.kind, live0: is_live0 }, GFP_NOWAIT)?;
                    *cursor += n;
                    if is_live0 {
                        // Busy now, so no new write goes to the live copy; let
                        // those already sent there finish before copying it.
                        drop(g);
                        self.block0_writes.wait_zero();
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies every planned job and waits until its log entry is durable.
    fn copy_and_log(&self, w: &mut WorkerBufs) -> Result {
        self.inner.lock().copying += 1;
        let r = self.copy_jobs(w);
        match r {
            Ok(new_live0) => {
                self.commit_log(&w.entries, new_live0.map(|b| b * self.spb))?;
                if let Some(b) = new_live0 {
                    self.inner.lock().live0 = b;
                }
                Ok(())
            }
            Err(e) => {
                self.inner.lock().copying -= 1;
                self.cond.notify_all();
                Err(e)
            }
        }
    }

    /// Copies every planned job; returns the new place of the live block 0
    /// if it moved.
    fn copy_jobs(&self, w: &mut WorkerBufs) -> Result<Option<u64>> {
        let spb = self.spb;
        let mut new_live0 = None;
        for j in w.jobs.iter() {
            let bytes = (j.n * u64::from(self.bs)) as usize;
            let buf = w.copy.get_mut(..bytes).ok_or(code::EINVAL)?;
            self.io.sync(&self.dev, j.src * spb, buf, IoKind::Read)?;
            let checksum = if j.live0 { 0 } else { entry_checksum(j.src * spb, self.bs, buf) };
            self.io.sync(&self.dev, j.dst * spb, buf, IoKind::Write)?;
            w.entries.push(
                LogEntry { source: j.src * spb, dest: j.dst * spb, size: bytes as u32, checksum },
                GFP_NOWAIT,
            )?;
            if j.live0 {
                new_live0 = Some(j.dst);
            }
        }
        Ok(new_live0)
    }

    /// Marks planned blocks changed (and their copies as backups) once the
    /// log is durable, or puts them back as they were on failure.
    fn settle(&self, w: &mut WorkerBufs, ok: bool) {
        for j in w.jobs.iter() {
            let (src_kind, dst_kind) = if ok { (Kind::Changed, Kind::Backup) } else { (j.was, Kind::Free) };
            // If nodes cannot be had the map keeps the blocks busy, which is safe: writers wait.
            if let Ok(mut g) = self.lock_ready() {
                let _ = self.assign(&mut g, j.src, j.src + j.n, src_kind);
                drop(g);
            }
            if let Ok(mut g) = self.lock_ready() {
                let _ = self.assign(&mut g, j.dst, j.dst + j.n, dst_kind);
                if ok {
                    g.counters.copies += 1;
                    g.counters.backed_up_bytes += j.n * u64::from(self.bs);
                }
            }
        }
        self.cond.notify_all();
    }

    /// Adds `entries` to the log and returns once a log write containing them
    /// is durable. Whoever finds no write in progress writes everything queued
    /// so far (group commit), after waiting briefly for the copies already in
    /// progress to join; the others wait for it. The caller counted itself in
    /// `copying`; this uncounts it.
    fn commit_log(&self, entries: &[LogEntry], sector0: Option<u64>) -> Result {
        let mut g = self.inner.lock();
        let mine = loop {
            let Some(log) = g.log.as_mut() else {
                g.copying -= 1;
                return Err(code::EIO);
            };
            if log.failed {
                g.copying -= 1;
                return Err(code::EIO);
            }
            if log.pending.len() + entries.len() <= log.pending.capacity() {
                for e in entries {
                    log.pending.push(*e, GFP_NOWAIT)?;
                }
                if let Some(s0) = sector0 {
                    log.sector0_next = s0;
                }
                log.enqueued += entries.len() as u64;
                log.batches += 1;
                let mine = log.enqueued;
                g.copying -= 1;
                g.log_waiters += 1;
                self.cond.notify_all();
                break mine;
            }
            self.cond.wait(&mut g);
        };
        let r = self.await_log(g, mine);
        let mut g = self.inner.lock();
        g.log_waiters -= 1;
        drop(g);
        self.cond.notify_all();
        r
    }

    /// Waits until entry number `mine` is durable, writing the log when no
    /// one else is.
    fn await_log<'a>(&'a self, mut g: InnerGuard<'a>, mine: u64) -> Result {
        loop {
            let Some(log) = g.log.as_mut() else { return Err(code::EIO) };
            if log.failed {
                return Err(code::EIO);
            }
            if log.durable >= mine {
                return Ok(());
            }
            if log.writing {
                self.cond.wait(&mut g);
                continue;
            }
            // Become the writer; first let the copies in progress join.
            log.writing = true;
            // The wait restarts whenever another batch arrives, and ends as
            // soon as every held bio has reached the log, or when none
            // arrived for LINGER_MS.
            let linger = kernel::time::msecs_to_jiffies(LINGER_MS);
            let mut left = linger;
            let batches = |g: &InnerGuard<'_>| g.log.as_ref().map_or(0, |l| l.batches);
            while g.inflight > g.log_waiters + g.busy_waiters && left > 0 {
                let before = batches(&g);
                match self.cond.wait_interruptible_timeout(&mut g, left) {
                    CondVarTimeoutResult::Woken { .. } if batches(&g) > before => left = linger,
                    CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                    _ => break,
                }
            }
            let Some(log) = g.log.as_mut() else { return Err(code::EIO) };
            let (Some(mut block), Some(mut batch)) = (log.block.take(), log.spare.take()) else {
                log.failed = true;
                return Err(code::EIO);
            };
            core::mem::swap(&mut batch, &mut log.pending);
            let upto = log.enqueued;
            let mut header = log.header;
            header.sector0 = log.sector0_next;
            drop(g);
            let r = self.write_log(&mut block, &mut header, &batch);
            vec_clear(&mut batch);
            g = self.inner.lock();
            let Some(log) = g.log.as_mut() else { return Err(code::EIO) };
            log.block = Some(block);
            log.spare = Some(batch);
            log.writing = false;
            match r {
                Ok(()) => {
                    log.header = header;
                    log.durable = upto;
                    g.counters.log_writes += 1;
                }
                Err(e) => {
                    log.failed = true;
                    pr_err!("bow: log write failed ({:?}); no further backups can be logged\n", e);
                }
            }
            self.cond.notify_all();
        }
    }

    /// Appends `batch` to the log block, chaining to a new block whenever one
    /// fills, and writes block 0 with PREFLUSH|FUA.
    fn write_log(&self, block: &mut KVec<u8>, h: &mut LogHeader, batch: &[LogEntry]) -> Result {
        let epb = entries_per_block(self.bs);
        for e in batch {
            if h.count >= epb {
                // Save the full block in free space and start the next one,
                // whose entry 0 points at the saved copy.
                let c = {
                    let mut g = self.lock_ready()?;
                    self.take_free_block(&mut g)?
                };
                h.encode(block).map_err(|_| code::EINVAL)?;
                self.io.sync(&self.dev, c * self.spb, block, IoKind::Write)?;
                let checksum = entry_checksum(0, self.bs, block);
                block.iter_mut().for_each(|b| *b = 0);
                *h = LogHeader::new(self.bs, h.sequence + 1, h.sector0);
                LogEntry { source: 0, dest: c * self.spb, size: self.bs, checksum }
                    .encode_at(block, 0)
                    .map_err(|_| code::EINVAL)?;
                h.count = 1;
            }
            e.encode_at(block, h.count).map_err(|_| code::EINVAL)?;
            h.count += 1;
        }
        h.encode(block).map_err(|_| code::EINVAL)?;
        self.io.sync(&self.dev, 0, block, IoKind::WriteFlushFua)
    }
}

impl Bow {
    /// Holds `bio` for a worker. Called with the lock held. When the
    /// submitter has a block plug (a batch on its way), the worker starts at
    /// the plug's flush, with the whole batch held: the log writer then
    /// waits for all of it and logs it in one write.
    fn hold(&self, mut g: InnerGuard<'_>, bio: Bio) -> Mapped {
        g.inflight += 1;
        let m = bio.hold(&mut g.queue);
        let pool = self.pool.get();
        let deferred = self.pool.defer();
        if deferred == Deferred::Yes {
            pool.deferred.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        }
        drop(g);
        if deferred == Deferred::No {
            pool.kick();
        }
        m
    }

    /// Makes sure the map has its spare nodes without sleeping; `None` when
    /// memory is short (the bio is then requeued).
    fn lock_atomic(&self) -> Option<InnerGuard<'_>> {
        let s = &self.shared;
        let g = s.inner.lock();
        if g.map.spares_needed() == 0 {
            return Some(g);
        }
        let need = g.map.spares_needed();
        drop(g);
        let mut nodes = alloc_spares(need, GFP_NOWAIT).ok()?;
        let mut g = s.inner.lock();
        g.map.add_spares(&mut nodes);
        g.map.ready().then_some(g)
    }

    fn map_trim(&self, mut bio: Bio, op: Op, sector: u64, nsect: u64) -> Mapped {
        let s = &*self.shared;
        let Some(mut g) = self.lock_atomic() else { return bio.requeue() };
        if g.changing {
            return bio.delay_requeue();
        }
        if g.state != State::Trim {
            // The state moved on since `map` looked: map it again.
            return bio.requeue();
        }
        match op {
            Op::Discard => {
                // Only whole blocks become free.
                let start = sector.div_ceil(s.spb);
                let end = (sector + nsect) / s.spb;
                if start < end && s.assign(&mut g, start, end, Kind::Free).is_err() {
                    drop(g);
                    return bio.requeue();
                }
                drop(g);
                bio.endio(None)
            }
            _ => {
                let start = sector / s.spb;
                let end = (sector + nsect).div_ceil(s.spb);
                let mut has_free = false;
                rangemap::for_each_in(&mut g.map, start, end, |e| has_free |= e.kind == Kind::Free);
                if has_free && s.assign(&mut g, start, end, Kind::Used).is_err() {
                    drop(g);
                    return bio.requeue();
                }
                if op != Op::Read {
                    s.writes0.inc();
                    bio.set_tag(TAG_WRITE0);
                }
                drop(g);
                bio.remap(&s.dev, sector)
            }
        }
    }

    fn map_checkpoint(&self, mut bio: Bio, op: Op, sector: u64, nsect: u64) -> Mapped {
        let s = &*self.shared;
        let first = sector / s.spb;
        if op == Op::Discard {
            // Discards in state 1 would destroy data needed for rollback or
            // free space holding backups: they are accepted and dropped.
            return bio.endio(None);
        }
        if first == 0 {
            // Block 0 is served from its live copy; keep such bios to block 0.
            let in0 = s.spb - sector;
            if nsect > in0 {
                bio.accept_partial(in0 as u32);
            }
            let mut g = s.inner.lock();
            if op == Op::Write && g.changing {
                return bio.delay_requeue();
            }
            if g.state != State::Checkpoint {
                return bio.requeue();
            }
            let l = g.live0;
            let busy = matches!(rangemap::Store::containing(&mut g.map, l), Some(e) if e.kind == Kind::Busy);
            if busy {
                return self.hold(g, bio);
            }
            if op == Op::Write {
                s.block0_writes.inc();
                bio.set_tag(TAG_BLOCK0);
            }
            drop(g);
            return bio.remap(&s.dev, l * s.spb + sector);
        }
        if op != Op::Write && op != Op::WriteZeroes {
            return bio.remap(&s.dev, sector);
        }
        let Some(mut g) = self.lock_atomic() else { return bio.requeue() };
        if g.changing {
            return bio.delay_requeue();
        }
        if g.state != State::Checkpoint {
            return bio.requeue();
        }
        let start = first;
        let end = (sector + nsect).div_ceil(s.spb);
        let (mut needs_backup, mut has_free) = (false, false);
        rangemap::for_each_in(&mut g.map, start, end, |e| match e.kind {
            Kind::Changed | Kind::Used => {}
            Kind::Free => has_free = true,
            _ => needs_backup = true,
        });
        if needs_backup {
            return self.hold(g, bio);
        }
        if has_free {
            // Free at checkpoint: no backup, but no longer free for backups.
            let mut cur = start;
            while cur < end {
                let Some(e) = rangemap::Store::containing(&mut g.map, cur) else { break };
                let e_end = e.end.min(end);
                if e.kind == Kind::Free && s.assign(&mut g, cur, e_end, Kind::Changed).is_err() {
                    drop(g);
                    return bio.requeue();
                }
                cur = e_end;
                if !g.map.ready() {
                    // Finish in a worker, which may sleep for nodes.
                    return self.hold(g, bio);
                }
            }
        }
        drop(g);
        bio.remap(&s.dev, sector)
    }
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
        if dev.is_live() {
            return Err(CtrError {
                errno: code::EBUSY,
                msg: c"Device has a live bow target in checkpoint state: a new table would lose the checkpoint; commit or remove it first",
            });
        }
        let ioerr = |errno| CtrError { errno, msg: c"Cannot read block 0 of the device" };
        let io = IoClient::new().map_err(|_| nomem)?;

        // Refuse to hide an unrestored log (spec 1): the filesystem would see
        // the log instead of its block 0, and a new checkpoint would destroy
        // the only record of the old one.
        let mut b0 = KVec::from_elem(0u8, geometry.block_size as usize, GFP_KERNEL).map_err(|_| nomem)?;
        io.sync(&dev, 0, &mut b0, IoKind::Read).map_err(ioerr)?;
        if holds_log(&b0) && !parsed.ignore_log {
            return Err(table_error(TableError::UnrestoredLog));
        }
        if holds_log(&b0) {
            pr_warn!("bow: ignoring an unrestored log in block 0 (ignore_log); it will be lost\n");
        }

        let mut table_line = KVec::new();
        for (i, w) in args.bytes().enumerate() {
            if i > 0 {
                table_line.push(b' ', GFP_KERNEL).map_err(|_| nomem)?;
            }
            table_line.extend_from_slice(w, GFP_KERNEL).map_err(|_| nomem)?;
        }

        let spb = u64::from(geometry.block_size / 512);
        let mut map = RangeTree::new().map_err(|_| nomem)?;
        let mut nodes = alloc_spares(SPARES, GFP_KERNEL).map_err(|_| nomem)?;
        map.add_spares(&mut nodes);
        rangemap::init(&mut map, geometry.blocks).map_err(|_| nomem)?;
        map.add_spares(&mut alloc_spares(1, GFP_KERNEL).map_err(|_| nomem)?);

        let begin = ti.begin();
        let shared = Arc::pin_init(
            pin_init!(Shared {
                dev,
                io,
                begin,
                bs: geometry.block_size,
                spb,
                blocks: geometry.blocks,
                inner <- new_spinlock!(Inner {
                    state: State::Trim,
                    changing: false,
                    map,
                    free_blocks: 0,
                    free_hint: 0,
                    live0: 0,

                    queue: BioList::new(),
                    inflight: 0,
                    copying: 0,
                    log_waiters: 0,
                    busy_waiters: 0,
                    counters: Counters::default(),
                    log: None,
                    free_at_checkpoint: None,
                    live_registered: false,
                }, "bow::inner"),
                cond <- new_condvar!("bow::cond"),
                transition <- new_mutex!((), "bow::transition"),
                sysfs <- new_mutex!(None, "bow::sysfs"),
                block0_writes: InFlight::new(),
                state_now: core::sync::atomic::AtomicU8::new(State::Trim as u8),
                writes0: InFlight::new(),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| nomem)?;

        let wq = WorkQueue::new(c"dm-bow", WORKERS as i32).map_err(|_| nomem)?;
        let mut workers = KVec::with_capacity(WORKERS, GFP_KERNEL).map_err(|_| nomem)?;
        for _ in 0..WORKERS {
            let shared_ref = shared.clone();
            let bufs = WorkerBufs {
                copy: KVec::from_elem(0u8, COPY_MAX, GFP_KERNEL).map_err(|_| nomem)?,
                jobs: KVec::with_capacity(JOBS_MAX, GFP_KERNEL).map_err(|_| nomem)?,
                entries: KVec::with_capacity(JOBS_MAX, GFP_KERNEL).map_err(|_| nomem)?,
            };
            let w = Arc::pin_init(
                pin_init!(Worker {
                    work <- new_work!("bow::Worker::work"),
                    shared: shared_ref,
                    running: core::sync::atomic::AtomicBool::new(false),
                    bufs <- new_mutex!(bufs, "bow::Worker::bufs"),
                }),
                GFP_KERNEL,
            )
            .map_err(|_| nomem)?;
            workers.push(w, GFP_KERNEL).map_err(|_| nomem)?;
        }
        ti.set_discards(true);
        let deferred = core::sync::atomic::AtomicUsize::new(0);
        let pool = PlugHook::new(Pool { wq, workers, deferred }).map_err(|_| nomem)?;
        KBox::new(Self { pool, shared, geometry, table_line }, GFP_KERNEL).map_err(|_| nomem)
    }

    fn map(&self, bio: Bio) -> Mapped {
        let s = &*self.shared;
        let op = bio.op();
        let sector = bio.sector().saturating_sub(s.begin);
        let nsect = u64::from(bio.size() / 512);
        if op == Op::Flush || op == Op::Other || nsect == 0 {
            return bio.remap(&s.dev, sector);
        }
        let state = match s.state_now.load(core::sync::atomic::Ordering::Acquire) {
            0 => State::Trim,
            1 => State::Checkpoint,
            _ => State::Committed,
        };
        match state {
            State::Trim => self.map_trim(bio, op, sector, nsect),
            State::Checkpoint => self.map_checkpoint(bio, op, sector, nsect),
            // A bare remap; discards go down when the device takes them.
            State::Committed if op == Op::Discard && !s.dev.discard_supported() => bio.endio(None),
            State::Committed => bio.remap(&s.dev, sector),
        }
    }

    fn status(&self, kind: StatusKind, out: &mut StatusBuf<'_>) {
        let s = &*self.shared;
        let g = s.inner.lock();
        let mut counters = g.counters;
        counters.free_bytes = g.free_blocks * u64::from(s.bs);
        if let Some(l) = g.log.as_ref() {
            counters.log_sequence = l.header.sequence;
            counters.log_entries = l.header.count;
        }
        let info = StatusInfo { state: g.state, block_size: s.bs, counters };
        let extents = g.map.extents();
        drop(g);
        // A status that does not fit is cut short; device-mapper shows what fits.
        let _ = match kind {
            StatusKind::Info => write!(out, "{info} extents={extents}"),
            StatusKind::Ima => write!(out, "{}", StatusIma(&info)),
            StatusKind::Table => match core::str::from_utf8(&self.table_line) {
                Ok(t) => out.write_str(t),
                Err(_) => out.write_str("?"),
            },
        };
    }

    fn message(&self, args: Args<'_>, out: &mut StatusBuf<'_>) -> Result<bool, Error> {
        match Message::parse(args.bytes()) {
            None => {
                pr_warn!("bow: unknown message (expected checkpoint, commit or free_map)\n");
                Err(code::EINVAL)
            }
            Some(Message::FreeMap) => {
                let s = &*self.shared;
                let g = s.inner.lock();
                // A reply that does not fit makes dmsetup retry with a bigger buffer.
                let _ = match (g.state, g.free_at_checkpoint.as_ref()) {
                    (State::Trim, _) => {
                        let mut r = Ok(());
                        g.map.for_each(|e| {
                            if e.kind == Kind::Free && r.is_ok() {
                                r = write!(out, "{}+{} ", e.start, e.len());
                            }
                        });
                        r
                    }
                    (_, Some(ranges)) => {
                        let mut r = Ok(());
                        for &(start, len) in ranges.iter() {
                            r = r.and_then(|()| write!(out, "{}+{} ", start, len));
                        }
                        r
                    }
                    (_, None) => Ok(()),
                };
                Ok(true)
            }
            Some(m) => self.shared.change_state(m.target().ok_or(code::EINVAL)?).map(|()| false),
        }
    }

    fn device(&self) -> &DmDev {
        &self.shared.dev
    }

    fn block_size(&self) -> u32 {
        self.geometry.block_size
    }

    /// May run in hard-irq context: touches only atomics.
    fn end_io(&self, tag: usize) {
        match tag {
            TAG_BLOCK0 => self.shared.block0_writes.dec(),
            TAG_WRITE0 => self.shared.writes0.dec(),
            _ => {}
        }
    }

    fn resume(&self, ti: &TargetRef) {
        let mut g = self.shared.sysfs.lock();
        if g.is_none() {
            match Sysfs::new(ti, &self.shared) {
                Ok(s) => *g = Some(s),
                Err(e) => pr_err!("bow: cannot create the sysfs directory ({:?})\n", e),
            }
        }
    }
}
