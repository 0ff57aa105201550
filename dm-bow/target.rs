// SPDX-License-Identifier: GPL-2.0

//! The bow target's logic, above the FFI layer. No `unsafe` here.
//!
//! # How a bio is mapped
//!
//! `map` never sleeps and never asks device-mapper to requeue (for a
//! bio-based target a requeue is an I/O error, and a delayed requeue a BUG).
//! Reads of any block but 0 are the same remap in every state and take no
//! lock. Every other bio is routed by [`Shared::route`] under the lock that
//! guards the map, in the state that lock shows:
//!
//! - finished at once (a remap, or a discard recorded or dropped);
//! - held on `Inner::deferred` while a state change runs, and handed to the
//!   workers, in the new state, when it ends ([`transition`]);
//! - held for a worker, which finishes it in process context: a first
//!   overwrite that needs backups, block 0 while its live copy moves, or a
//!   map change whose tree nodes only a sleeping allocation gives
//!   ([`engine`]).
//!
//! The committed state is a bare remap with no lock: nothing leaves it.

mod engine;
mod live;
mod transition;

use crate::bow_core::format::{chain_blocks, entries_per_block, holds_log, LogEntry, LogHeader};
use crate::bow_core::rangemap::{self, Extent, Kind};
use crate::bow_core::state::{Counters, Message, State, StatusIma, StatusInfo};
use crate::bow_core::table::{self, Geometry, TableError};
use crate::ffi::{
    Args, Bio, BioList, CtrError, Deferred, DmDev, HeldBio, InFlight, IoClient, IoKind, Mapped, Op,
    PlugHook, StatusBuf, StatusKind, Sysfs, SysfsFiles, Target, TargetRef, TargetSetup, Unplug,
    WorkQueue,
};
use crate::rangetree::{alloc_spares, RangeTree, SPARES};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use engine::{Worker, WorkerBufs, JOBS_MAX};
use kernel::error::code;
use kernel::prelude::*;
use kernel::sync::lock::{spinlock::SpinLockBackend, Guard};
use kernel::sync::{new_condvar, new_mutex, new_spinlock, Arc, CondVar, Mutex, SpinLock};
use kernel::workqueue::new_work;

/// Version of the target type, as `dmsetup targets` shows it.
pub(crate) const VERSION: [u32; 3] = [1, 0, 0];

/// Workers copying first overwrites concurrently. Each takes every bio
/// queued (up to `engine::BATCH_MAX`) and copies for all of them at once, so
/// a few suffice; a new one starts only while fewer than this run.
const WORKERS: usize = 2;
/// Extents a walk of the whole map visits per hold of the map's lock.
const WALK_CHUNK: usize = 1024;
/// Log entries that may wait for the log writer at once.
const PENDING_MAX: usize = WORKERS * JOBS_MAX;
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
    /// Entries ever queued, and how many of those are durable.
    enqueued: u64,
    durable: u64,
    /// Entries planned (copies in flight, queued or being written) and not
    /// durable yet: the log may have to chain for all of them.
    unlogged: u64,
    writing: bool,
    /// A log write failed: the on-disk log is the last durable one and no
    /// further backup can be logged.
    failed: bool,
}

/// State protected by [`Shared::inner`].
struct Inner {
    state: State,
    /// A state change is running: bios that need the map wait on `deferred`.
    changing: bool,
    map: RangeTree,
    free_blocks: u64,
    free_hint: u64,
    /// Block holding the live copy of block 0 (state 1).
    live0: u64,

    /// Bios waiting for a worker.
    queue: BioList,
    /// Bios that arrived during a state change, released when it ends.
    deferred: BioList,
    /// Bios queued or being handled by workers.
    inflight: usize,
    /// Workers running or started (up to `WORKERS`): each of these turns
    /// takes queued bios until the queue is empty.
    workers: usize,
    /// Bios held by workers whose entries are queued and who wait for the
    /// log write. While the bios workers hold exceed this (and
    /// `busy_waiters`), more entries are on their way: the log writer lingers
    /// for them (bounded by `LINGER_MS`), so they share its write.
    log_waiters: usize,
    /// Bios held by workers waiting for busy blocks to settle (or for the log
    /// to free its reserve): they cannot reach the log before it is written,
    /// so the log writer does not linger for them.
    busy_waiters: usize,
    counters: Counters,
    log: Option<LogState>,
    /// The free ranges (start, length in blocks) at the moment of checkpoint.
    /// Its size grows with the extent count, so it may come from vmalloc.
    free_at_checkpoint: Option<Arc<KVVec<(u64, u64)>>>,
    /// This target is in the registry of live checkpoints.
    live_registered: bool,
}

impl Inner {
    /// Free blocks the log must keep for chaining: enough for every entry
    /// planned and not yet durable, so a log write never fails for want of
    /// space.
    fn log_reserve(&self, epb: u32) -> u64 {
        self.log
            .as_ref()
            .map_or(0, |l| chain_blocks(l.header.count, l.unlogged, epb))
    }
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
    /// Log entries per log block.
    epb: u32,
    #[pin]
    inner: SpinLock<Inner>,
    /// Signalled when busy blocks settle, the log advances or work drains:
    /// waited on by workers waiting for busy blocks and by state changes.
    #[pin]
    cond: CondVar,
    /// Signalled after each log write: waited on by workers whose entries
    /// are queued, and by those waiting for room in the queue.
    #[pin]
    log_cond: CondVar,
    /// Signalled when the log writer's linger may end (an entry queued, a
    /// worker done or waiting for busy blocks): only the writer waits on it.
    /// Waking the log waiters on every such event cost each first overwrite
    /// a dozen context switches.
    #[pin]
    linger: CondVar,
    /// Serialises state changes (sysfs and messages).
    #[pin]
    transition: Mutex<()>,
    /// Writes remapped to `live0` and not completed: the live copy only
    /// moves, and commit only copies it, once they are done. Incremented
    /// under `inner` after checking that `live0` is not busy.
    block0_writes: InFlight,
    /// `inner.state`, readable without the lock, only to let the committed
    /// state (which nothing leaves) map bios without taking any lock. Written
    /// under `inner` after each change.
    state_now: AtomicU8,
    /// Writes remapped in state 0 and not completed: the checkpoint waits for
    /// them, so none lands after it. Incremented under `inner` while not
    /// `changing`.
    writes0: InFlight,
}

type InnerGuard<'a> = Guard<'a, Inner, SpinLockBackend>;

/// What to do with a bio, decided under the map's lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    /// Remap to `sector` of the device below; `tag` goes to `end_io` (the
    /// counter it names was incremented under the lock).
    Remap { sector: u64, tag: usize },
    /// Complete now: a discard recorded (state 0) or dropped.
    Done,
    /// A state change is running: hold it until it ends.
    Defer,
    /// A map change needs tree nodes that only a sleeping allocation gives.
    NeedNodes,
    /// A write that first needs backups, or free space the log reserve keeps.
    Backup,
    /// Block 0 while its live copy is being moved.
    Busy0,
}

/// The workers and their queue.
pub(crate) struct Pool {
    wq: WorkQueue,
    workers: KVec<Arc<Worker>>,
    /// Bios held while the kick was deferred to the submitter's plug flush.
    deferred: AtomicUsize,
}

impl Pool {
    /// Hands held bios to a worker: an idle one if there is one, so first
    /// overwrites of different blocks proceed concurrently.
    fn kick(&self) {
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
        // Not reached: at most `WORKERS` turns are started, and each worker
        // queued and not yet running holds one of them, so one is free.
    }

    /// Starts `n` workers (counted in `Inner::workers` by the caller).
    fn kick_n(&self, n: usize) {
        for _ in 0..n.min(WORKERS) {
            self.kick();
        }
    }
}

impl Unplug for Pool {
    /// The submitter's batch is in: start the workers its bios reserved, so
    /// they find the whole batch queued, copy for it at once and log it in
    /// one write.
    fn unplugged(&self) {
        self.kick_n(self.deferred.swap(0, Ordering::SeqCst));
    }
}

/// What the sysfs files and messages drive: the shared state and the
/// workers that finish the bios a state change held.
pub(crate) struct Control {
    shared: Arc<Shared>,
    pool: Arc<PlugHook<Pool>>,
}

impl Control {
    /// Moves to `want`, then hands the bios held meanwhile to the workers.
    fn change_state(&self, want: State) -> Result {
        let (r, released) = self.shared.change_state(want);
        self.pool.get().kick_n(released);
        r
    }
}

impl SysfsFiles for Control {
    fn show(&self, attr: &[u8], out: &mut StatusBuf<'_>) {
        let _ = match attr {
            b"state" => writeln!(out, "{}", self.shared.state().number()),
            b"free" => writeln!(out, "{}", self.shared.free_bytes()),
            _ => Ok(()),
        };
    }

    fn store(&self, attr: &[u8], text: &[u8]) -> Result {
        if attr != b"state" {
            return Err(code::EINVAL);
        }
        let want = match crate::bow_core::state::state_write(text, self.shared.state()) {
            Ok(w) => w,
            Err(e) => {
                pr_warn!("bow: state write refused: {}\n", e);
                return Err(code::EINVAL);
            }
        };
        self.change_state(want)
    }
}

/// One bow target instance. The sysfs directory goes first (in `drop`), then
/// pending plug flushes are waited for and the queue is drained, then the
/// workers and the shared state go.
pub(crate) struct Bow {
    ctl: Arc<Control>,
    sysfs: Pin<KBox<Mutex<Option<Sysfs<Control>>>>>,
    geometry: Geometry,
    /// The table words as given, joined by single spaces, for `dmsetup table`.
    table_line: KVec<u8>,
}

impl Drop for Bow {
    fn drop(&mut self) {
        drop(self.sysfs.lock().take());
        if core::mem::take(&mut self.ctl.shared.inner.lock().live_registered) {
            live::remove(self.ctl.shared.dev.devt());
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
        self.state_now.store(s as u8, Ordering::Release);
    }

    fn committed(&self) -> bool {
        self.state_now.load(Ordering::Acquire) == State::Committed as u8
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

    /// Locks the map and tops its spare nodes up without sleeping, if memory
    /// allows; the map may then not be [`RangeTree::ready`].
    fn lock_atomic(&self) -> InnerGuard<'_> {
        let g = self.inner.lock();
        let need = g.map.spares_needed();
        if need == 0 {
            return g;
        }
        drop(g);
        let nodes = alloc_spares(need, GFP_NOWAIT);
        let mut g = self.inner.lock();
        if let Ok(mut nodes) = nodes {
            g.map.add_spares(&mut nodes);
        }
        g
    }

    /// Makes `[start, end)` of `kind`, keeping the free count exact.
    fn assign(&self, g: &mut InnerGuard<'_>, start: u64, end: u64, kind: Kind) -> Result {
        let was_free = free_in(g, start, end);
        rangemap::assign(&mut g.map, start, end, kind).map_err(|_| code::ENOMEM)?;
        g.free_blocks -= was_free;
        if kind.is_free() {
            g.free_blocks += end - start;
        }
        Ok(())
    }

    /// Walks the whole map, giving each extent the kind `f` returns (`None`
    /// ends the walk), [`WALK_CHUNK`] extents per hold of the map's lock, so
    /// that no hold grows with the map (a million extents took 2 s in one
    /// hold under TCG). During a state change (`changing`) nothing else
    /// changes the map meanwhile; otherwise changes between chunks show or
    /// not, as in any list of a changing map.
    fn walk_map(&self, mut f: impl FnMut(Extent) -> Option<Kind>) {
        let mut from = Some(0);
        while let Some(b) = from {
            from = self.inner.lock().map.visit(b, WALK_CHUNK, &mut f);
        }
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

    /// Decides what to do with a bio of `op` on `[sector, sector + nsect)`
    /// (target-relative; a bio that starts in block 0 ends there), in the
    /// state the lock shows. Map changes it makes are complete: a bio it
    /// routes elsewhere may have had some of its blocks changed already,
    /// which whoever finishes it finds done.
    fn route(&self, g: &mut InnerGuard<'_>, op: Op, sector: u64, nsect: u64) -> Route {
        if g.changing {
            return Route::Defer;
        }
        let first = sector / self.spb;
        let end = (sector + nsect).div_ceil(self.spb).max(first + 1);
        let plain = Route::Remap { sector, tag: 0 };
        match g.state {
            State::Trim => match op {
                Op::Discard => {
                    // Only whole blocks become free.
                    let (start, end) = (sector.div_ceil(self.spb), (sector + nsect) / self.spb);
                    if start >= end {
                        return Route::Done;
                    }
                    if !g.map.ready() {
                        return Route::NeedNodes;
                    }
                    match self.assign(g, start, end, Kind::Free) {
                        Ok(()) => Route::Done,
                        Err(_) => Route::NeedNodes,
                    }
                }
                // Reads pass through and never change the map.
                Op::Read => plain,
                _ => {
                    if free_in(g, first, end) > 0 {
                        if !g.map.ready() || self.assign(g, first, end, Kind::Used).is_err() {
                            return Route::NeedNodes;
                        }
                    }
                    self.writes0.inc();
                    Route::Remap {
                        sector,
                        tag: TAG_WRITE0,
                    }
                }
            },
            State::Checkpoint => {
                if op == Op::Discard {
                    // Discards in state 1 would destroy data needed for
                    // rollback or free space holding backups: accepted and
                    // dropped.
                    return Route::Done;
                }
                if first == 0 {
                    // Block 0 is served from its live copy.
                    let l = g.live0;
                    if kind_at(g, l) == Some(Kind::Busy) {
                        return Route::Busy0;
                    }
                    let to = l * self.spb + sector;
                    if op == Op::Read {
                        return Route::Remap { sector: to, tag: 0 };
                    }
                    self.block0_writes.inc();
                    return Route::Remap {
                        sector: to,
                        tag: TAG_BLOCK0,
                    };
                }
                if op == Op::Read {
                    return plain;
                }
                // Blocks that held data at checkpoint need a backup, and
                // free ones a claim (see `engine`): a worker does both.
                let (mut needs_worker, mut claimed) = (false, 0);
                rangemap::for_each_in(&mut g.map, first, end, |e| match e.kind {
                    Kind::Changed | Kind::Used => {}
                    Kind::Claimed => claimed += e.len(),
                    _ => needs_worker = true,
                });
                if needs_worker {
                    return Route::Backup;
                }
                if claimed > 0 {
                    // Claimed free space: no backup, no log write, but no
                    // longer free for backups, and never at the cost of the
                    // log's reserve.
                    if g.free_blocks < claimed + g.log_reserve(self.epb) {
                        return Route::Backup;
                    }
                    let mut cur = first;
                    while cur < end {
                        let Some(e) = rangemap::Store::containing(&mut g.map, cur) else {
                            break;
                        };
                        let e_end = e.end.min(end);
                        if e.kind == Kind::Claimed {
                            if !g.map.ready() || self.assign(g, cur, e_end, Kind::Changed).is_err()
                            {
                                return Route::NeedNodes;
                            }
                        }
                        cur = e_end;
                    }
                }
                plain
            }
            State::Committed => self.route_committed(op, sector),
        }
    }

    /// The committed state: a bare remap; discards go down when the device
    /// takes them.
    fn route_committed(&self, op: Op, sector: u64) -> Route {
        if op == Op::Discard && !self.dev.discard_supported() {
            Route::Done
        } else {
            Route::Remap { sector, tag: 0 }
        }
    }

    /// Puts the bios held during a state change on the workers' queue, to be
    /// mapped in the state now in force. Returns how many workers to start
    /// for them (counted in `workers`); the caller kicks them.
    fn release_deferred(&self, g: &mut InnerGuard<'_>) -> usize {
        let n = g.deferred.len();
        let mut held = core::mem::replace(&mut g.deferred, BioList::new());
        g.queue.append(&mut held);
        g.inflight += n;
        let start = n.min(WORKERS - g.workers);
        g.workers += start;
        start
    }
}

/// Blocks of `[start, end)` that are free.
fn free_in(g: &mut InnerGuard<'_>, start: u64, end: u64) -> u64 {
    let mut n = 0;
    rangemap::for_each_in(&mut g.map, start, end, |e| {
        if e.kind.is_free() {
            n += e.len();
        }
    });
    n
}

/// The kind of `block`.
fn kind_at(g: &mut InnerGuard<'_>, block: u64) -> Option<Kind> {
    rangemap::Store::containing(&mut g.map, block).map(|e| e.kind)
}

impl Bow {
    fn shared(&self) -> &Shared {
        &self.ctl.shared
    }

    /// Holds `bio` for a worker. Called with the lock held. When the
    /// submitter has a block plug (a batch on its way), the worker starts at
    /// the plug's flush, with the whole batch held: the log writer then
    /// waits for all of it and logs it in one write.
    fn hold(&self, mut g: InnerGuard<'_>, bio: Bio) -> Mapped {
        g.inflight += 1;
        g.counters.held += 1;
        let m = bio.hold(&mut g.queue);
        // A worker running will take it at its next round; start another
        // only while fewer than `WORKERS` run (decided under the lock the
        // workers end their turn under, so none is missed).
        let start = g.workers < WORKERS;
        if start {
            g.workers += 1;
        }
        drop(g);
        if start {
            let pool = self.ctl.pool.get();
            if self.ctl.pool.defer() == Deferred::Yes {
                pool.deferred.fetch_add(1, Ordering::SeqCst);
            } else {
                pool.kick();
            }
        }
        m
    }
}

impl Target for Bow {
    fn new(ti: &mut TargetSetup, args: Args<'_>) -> Result<KBox<Self>, CtrError> {
        let parsed = table::parse_args(args.bytes()).map_err(table_error)?;
        let path = args.get(0).ok_or(table_error(TableError::ArgCount))?;
        let dev = ti.get_device(path).map_err(|errno| CtrError {
            errno,
            msg: TableError::DeviceLookup.message(),
        })?;
        let writable = ti.table_writable() && !dev.read_only();
        let geometry = table::check_geometry(&parsed, dev.logical_block_size(), ti.len(), writable)
            .map_err(table_error)?;
        let nomem = CtrError {
            errno: code::ENOMEM,
            msg: c"Cannot allocate memory",
        };
        if live::has(dev.devt()) {
            return Err(CtrError {
                errno: code::EBUSY,
                msg: c"Device has a live bow target in checkpoint state: a new table would lose the checkpoint; commit or remove it first",
            });
        }
        let ioerr = |errno| CtrError {
            errno,
            msg: c"Cannot read block 0 of the device",
        };
        let io = IoClient::new().map_err(|_| nomem)?;

        // Refuse to hide an unrestored log (spec 1): the filesystem would see
        // the log instead of its block 0, and a new checkpoint would destroy
        // the only record of the old one.
        let mut b0 =
            KVec::from_elem(0u8, geometry.block_size as usize, GFP_KERNEL).map_err(|_| nomem)?;
        let n = b0.len();
        io.sync(&dev, 0, &mut b0, n, IoKind::Read).map_err(ioerr)?;
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
            table_line
                .extend_from_slice(w, GFP_KERNEL)
                .map_err(|_| nomem)?;
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
                epb: entries_per_block(geometry.block_size),
                inner <- new_spinlock!(Inner {
                    state: State::Trim,
                    changing: false,
                    map,
                    free_blocks: 0,
                    free_hint: 0,
                    live0: 0,

                    queue: BioList::new(),
                    deferred: BioList::new(),
                    inflight: 0,
                    workers: 0,
                    log_waiters: 0,
                    busy_waiters: 0,
                    counters: Counters::default(),
                    log: None,
                    free_at_checkpoint: None,
                    live_registered: false,
                }, "bow::inner"),
                cond <- new_condvar!("bow::cond"),
                log_cond <- new_condvar!("bow::log_cond"),
                linger <- new_condvar!("bow::linger"),
                transition <- new_mutex!((), "bow::transition"),
                block0_writes: InFlight::new(),
                state_now: AtomicU8::new(State::Trim as u8),
                writes0: InFlight::new(),
            }),
            GFP_KERNEL,
        )
        .map_err(|_| nomem)?;

        let wq = WorkQueue::new(c"dm-bow", WORKERS as i32).map_err(|_| nomem)?;
        let mut workers = KVec::with_capacity(WORKERS, GFP_KERNEL).map_err(|_| nomem)?;
        for _ in 0..WORKERS {
            let shared_ref = shared.clone();
            let bufs = WorkerBufs::new().map_err(|_| nomem)?;
            let w = Arc::pin_init(
                pin_init!(Worker {
                    work <- new_work!("bow::Worker::work"),
                    shared: shared_ref,
                    running: AtomicBool::new(false),
                    bufs <- new_mutex!(bufs, "bow::Worker::bufs"),
                }),
                GFP_KERNEL,
            )
            .map_err(|_| nomem)?;
            workers.push(w, GFP_KERNEL).map_err(|_| nomem)?;
        }
        ti.set_discards(true);
        let deferred = AtomicUsize::new(0);
        let pool = PlugHook::new(Pool {
            wq,
            workers,
            deferred,
        })
        .map_err(|_| nomem)?;
        let pool = Arc::new(pool, GFP_KERNEL).map_err(|_| nomem)?;
        let ctl = Arc::new(Control { shared, pool }, GFP_KERNEL).map_err(|_| nomem)?;
        let sysfs =
            KBox::pin_init(new_mutex!(None, "bow::sysfs"), GFP_KERNEL).map_err(|_| nomem)?;
        KBox::new(
            Self {
                ctl,
                sysfs,
                geometry,
                table_line,
            },
            GFP_KERNEL,
        )
        .map_err(|_| nomem)
    }

    fn map(&self, mut bio: Bio) -> Mapped {
        let s = self.shared();
        let op = bio.op();
        let sector = bio.sector().saturating_sub(s.begin);
        let mut nsect = u64::from(bio.size() / 512);
        if op == Op::Flush || op == Op::Other || nsect == 0 {
            return bio.remap(&s.dev, sector);
        }
        if s.committed() {
            return match s.route_committed(op, sector) {
                Route::Done => bio.endio(None),
                _ => bio.remap(&s.dev, sector),
            };
        }
        // Reads outside block 0 go to the same place in every state.
        if op == Op::Read && sector >= s.spb {
            return bio.remap(&s.dev, sector);
        }
        // Block 0 may be served from elsewhere: keep bios that start there
        // to that block.
        if sector < s.spb && sector + nsect > s.spb && op != Op::Discard {
            bio.accept_partial((s.spb - sector) as u32);
            nsect = s.spb - sector;
        }
        let mut g = s.lock_atomic();
        match s.route(&mut g, op, sector, nsect) {
            Route::Remap { sector, tag } => {
                drop(g);
                bio.set_tag(tag);
                bio.remap(&s.dev, sector)
            }
            Route::Done => {
                drop(g);
                bio.endio(None)
            }
            Route::Defer => {
                g.counters.held += 1;
                bio.hold(&mut g.deferred)
            }
            Route::NeedNodes | Route::Backup | Route::Busy0 => self.hold(g, bio),
        }
    }

    fn status(&self, kind: StatusKind, out: &mut StatusBuf<'_>) {
        let s = self.shared();
        let g = s.inner.lock();
        let mut counters = g.counters;
        counters.free_bytes = g.free_blocks * u64::from(s.bs);
        if let Some(l) = g.log.as_ref() {
            counters.log_sequence = l.header.sequence;
            counters.log_entries = l.header.count;
        }
        let info = StatusInfo {
            state: g.state,
            block_size: s.bs,
            counters,
        };
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
                let s = self.shared();
                // After the checkpoint the list never changes: it is formatted
                // without the lock (a million extents take seconds under TCG).
                // A reply that does not fit makes dmsetup retry with a bigger
                // buffer: writing stops at the first that does not fit.
                let write_list = |out: &mut StatusBuf<'_>, ranges: &[(u64, u64)]| {
                    let _ = ranges
                        .iter()
                        .try_for_each(|&(start, len)| write!(out, "{}+{} ", start, len));
                };
                let taken = s.inner.lock().free_at_checkpoint.clone();
                if let Some(ranges) = taken {
                    write_list(out, &ranges);
                    return Ok(true);
                }
                // State 0: the live map, which every discard changes. State
                // changes are kept out (one may have just ended: then its
                // list), and the map is read a chunk per hold of its lock;
                // discards made meanwhile show or not, as with any list of a
                // changing map.
                let _t = s.transition.lock();
                let taken = s.inner.lock().free_at_checkpoint.clone();
                if let Some(ranges) = taken {
                    write_list(out, &ranges);
                    return Ok(true);
                }
                // No list while `transition` is held: the state is 0 (the
                // checkpoint makes the list before it changes the state).
                s.walk_map(|e| {
                    if e.kind == Kind::Free && write!(out, "{}+{} ", e.start, e.len()).is_err() {
                        return None;
                    }
                    Some(e.kind)
                });
                Ok(true)
            }
            Some(m) => self
                .ctl
                .change_state(m.target().ok_or(code::EINVAL)?)
                .map(|()| false),
        }
    }

    fn device(&self) -> &DmDev {
        &self.shared().dev
    }

    fn block_size(&self) -> u32 {
        self.geometry.block_size
    }

    /// May run in hard-irq context: touches only atomics.
    fn end_io(&self, tag: usize) {
        match tag {
            TAG_BLOCK0 => self.shared().block0_writes.dec(),
            TAG_WRITE0 => self.shared().writes0.dec(),
            _ => {}
        }
    }

    fn resume(&self, ti: &TargetRef) {
        let mut g = self.sysfs.lock();
        if g.is_none() {
            match Sysfs::new(ti, self.ctl.clone()) {
                Ok(s) => *g = Some(s),
                Err(e) => pr_err!("bow: cannot create the sysfs directory ({:?})\n", e),
            }
        }
    }
}
