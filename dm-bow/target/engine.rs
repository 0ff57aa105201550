// SPDX-License-Identifier: GPL-2.0

//! The workers: they finish held bios in process context, and for first
//! overwrites run the backup engine.
//!
//! For each block of a write that held data at checkpoint (or holds a
//! backup), a worker takes a free block, marks both busy, copies the data,
//! and queues a log entry. Entries completed together share one log write
//! with PREFLUSH|FUA (group commit); only then are the blocks marked changed
//! and the user's write released. No lock is held across any I/O: the map
//! lives under a spinlock, and the log block belongs to whichever worker is
//! writing it (`LogState::writing`).
//!
//! A write into free space that is not claimed yet first claims a window of
//! it (up to `CLAIM_BYTES`): a zero entry, logged like a copy, tells a
//! restore to zero those blocks. Without it a rollback would leave there
//! data written after the checkpoint, which a filesystem whose metadata was
//! allocated there (logged, not yet written in place) can take for its own:
//! XFS log recovery skips a buffer whose on-disk LSN is newer than the
//! record, so the restored filesystem would mix two points in time. Further
//! writes into the window need no log write. The same holds for each place of
//! the live block 0, which gets a zero entry when it is chosen.

use super::*;
use crate::bow_core::format::{entry_seed, log_write_len};
use crate::ffi::{kernel_crc32_le, vec_clear, IoBatch, IoReq, NoIo};
use kernel::sync::CondVarTimeoutResult;
use kernel::workqueue::{impl_has_work, Work, WorkItem};

/// Largest single copy (one log entry), in bytes.
pub(super) const COPY_MAX: usize = 64 * 1024;
/// Most copies one worker plans before executing them.
pub(super) const JOBS_MAX: usize = 64;
/// Most bios one worker handles at once.
const BATCH_MAX: usize = 16;
/// A worker's copy buffer, shared by the copies of one round.
const BATCH_BYTES: usize = 4 * COPY_MAX;
/// Longest time the log writer waits for copies in progress to join its write.
const LINGER_MS: u32 = 50;
/// Most free space one claim covers, in bytes: one log entry per this much
/// new data written sequentially, and at most this much zeroed needlessly
/// by a restore.
const CLAIM_BYTES: u64 = 1 << 20;

/// One planned copy: blocks `[src, src+n)` to `[dst, dst+n)`.
#[derive(Clone, Copy)]
pub(super) struct Job {
    src: u64,
    dst: u64,
    n: u64,
    was: Kind,
    /// This job moves the live copy of block 0 (alone): its entry has
    /// checksum 0, as its content keeps changing after the move, and a zero
    /// entry for its new place follows it.
    live0: bool,
    /// A claim of free space (`src == dst`): a zero entry, no copy.
    zero: bool,
    /// The worker's slot of the bio this job is for.
    owner: usize,
}

impl Job {
    /// Log entries this job adds.
    fn entries(&self) -> u64 {
        if self.live0 {
            2
        } else {
            1
        }
    }
}

/// A bio a worker holds, and how far its backup has got.
pub(super) struct Held {
    bio: HeldBio,
    /// Order of arrival: the oldest plan first, so none starves.
    age: u64,
    /// While backing up: the blocks `[cursor, last)` not yet safe to overwrite.
    backup: Option<(u64, u64)>,
    /// The backup failed: the bio ends with this error.
    err: Option<Error>,
}

/// A worker's private buffers, allocated once.
pub(super) struct WorkerBufs {
    /// Every copy of one round, side by side (`BATCH_BYTES`).
    pub(super) copy: KVVec<u8>,
    pub(super) jobs: KVec<Job>,
    pub(super) entries: KVec<LogEntry>,
    /// The round's reads, then its writes, each sent at once.
    pub(super) io: IoBatch,
    /// The bios this worker handles, up to `BATCH_MAX`.
    pub(super) held: [Option<Held>; BATCH_MAX],
    /// Bios in `held`.
    pub(super) count: usize,
    /// Bytes of `copy` the round's jobs use.
    pub(super) planned: usize,
    pub(super) next_age: u64,
}

impl WorkerBufs {
    pub(super) fn new() -> Result<Self> {
        Ok(Self {
            copy: KVVec::from_elem(0u8, BATCH_BYTES, GFP_KERNEL)?,
            jobs: KVec::with_capacity(JOBS_MAX, GFP_KERNEL)?,
            entries: KVec::with_capacity(2 * JOBS_MAX, GFP_KERNEL)?,
            io: IoBatch::new()?,
            held: core::array::from_fn(|_| None),
            count: 0,
            planned: 0,
            next_age: 0,
        })
    }
}

#[pin_data]
pub(crate) struct Worker {
    #[pin]
    pub(super) work: Work<Worker>,
    pub(super) shared: Arc<Shared>,
    /// Set while `run` executes, so kicks go to idle workers first.
    pub(super) running: AtomicBool,
    #[pin]
    pub(super) bufs: Mutex<WorkerBufs>,
}

impl_has_work! {
    impl HasWork<Self> for Worker { self.work }
}

impl WorkItem for Worker {
    type Pointer = Arc<Worker>;

    fn run(this: Arc<Worker>) {
        this.running.store(true, Ordering::SeqCst);
        // Allocations here may not recurse into I/O: GFP_KERNEL acts as GFP_NOIO.
        let _noio = NoIo::enter();
        let s = &this.shared;
        let mut bufs = this.bufs.lock();
        while s.take_queued(&mut bufs) {
            s.round(&mut bufs);
        }
        this.running.store(false, Ordering::SeqCst);
    }
}

impl Shared {
    /// Moves queued bios into the worker's free slots. Returns false, and
    /// ends this worker's turn (its count in `Inner::workers`), when it holds
    /// none: the check and the count change under one hold of the lock, so
    /// a bio queued meanwhile finds either this worker or a new one.
    fn take_queued(&self, w: &mut WorkerBufs) -> bool {
        let mut g = self.inner.lock();
        for slot in w.held.iter_mut().filter(|h| h.is_none()) {
            let Some(bio) = g.queue.pop() else {
                break;
            };
            *slot = Some(Held {
                bio,
                age: w.next_age,
                backup: None,
                err: None,
            });
            w.next_age += 1;
            w.count += 1;
        }
        if w.count == 0 {
            g.workers -= 1;
            return false;
        }
        true
    }

    /// `n` held bios are done (sent down, completed or deferred).
    fn finished(&self, w: &mut WorkerBufs, n: usize) {
        if n == 0 {
            return;
        }
        w.count -= n;
        self.inner.lock().inflight -= n;
        self.cond.notify_all();
        self.linger.notify_all();
    }

    /// One round over the worker's bios: maps those that need no backup,
    /// plans copies for the others (oldest first), runs all the copies at
    /// once and logs them in one go, then ends the bios that failed. Bios
    /// whose blocks are all safe now are mapped at the next round.
    fn round(&self, w: &mut WorkerBufs) {
        let mut done = 0;
        for i in 0..BATCH_MAX {
            let Some(h) = w.held[i].take() else {
                continue;
            };
            if h.backup.is_some() {
                w.held[i] = Some(h);
                continue;
            }
            // No busy block is held between rounds, so this may wait.
            w.held[i] = self.dispatch(h, w.count);
            if w.held[i].is_none() {
                done += 1;
            }
        }
        self.finished(w, done);

        vec_clear(&mut w.jobs);
        vec_clear(&mut w.entries);
        w.planned = 0;
        let mut order = [0usize; BATCH_MAX];
        let mut n = 0;
        for (i, h) in w.held.iter().enumerate() {
            if let Some(h) = h.as_ref().filter(|h| h.backup.is_some() && h.err.is_none()) {
                // Insertion by age.
                let mut k = n;
                while k > 0 && w.held[order[k - 1]].as_ref().is_some_and(|o| o.age > h.age) {
                    order[k] = order[k - 1];
                    k -= 1;
                }
                order[k] = i;
                n += 1;
            }
        }
        for &i in &order[..n] {
            if w.jobs.len() >= JOBS_MAX
                || w.planned >= BATCH_BYTES
                || w.jobs.last().is_some_and(|j| j.live0)
            {
                break;
            }
            let Some(mut h) = w.held[i].take() else {
                continue;
            };
            if let Some((mut cursor, last)) = h.backup {
                if let Err(e) = self.plan(&mut cursor, last, i, w) {
                    h.err = Some(e);
                }
                h.backup = Some((cursor, last));
            }
            w.held[i] = Some(h);
        }
        if !w.jobs.is_empty() {
            let r = self.copy_and_log(w);
            self.settle(w, r.is_ok());
            if let Err(e) = r {
                for j in w.jobs.iter() {
                    if let Some(h) = w.held[j.owner].as_mut() {
                        h.err.get_or_insert(e);
                    }
                }
            }
        }

        let mut done = 0;
        for slot in w.held.iter_mut() {
            let Some(h) = slot.as_mut() else {
                continue;
            };
            if let Some(e) = h.err {
                if e == code::ENOSPC {
                    self.inner.lock().counters.enospc += 1;
                }
                if let Some(h) = slot.take() {
                    h.bio.endio(Some(e));
                }
                done += 1;
            } else if h.backup.is_some_and(|(cursor, last)| cursor >= last) {
                // Every block is safe to overwrite now: the next round maps
                // it (or defers it, if a state change began meanwhile; the
                // change waits for this worker).
                h.backup = None;
            }
        }
        self.finished(w, done);
    }

    /// Routes a held bio again in the state now in force, this time free to
    /// sleep for tree nodes and block 0's move. Returns it if it needs
    /// backups first; `parked` is how many bios this worker holds, all
    /// stalled while it waits.
    fn dispatch(&self, mut h: Held, parked: usize) -> Option<Held> {
        let op = h.bio.op();
        let sector = h.bio.sector().saturating_sub(self.begin);
        let nsect = u64::from(h.bio.size() / 512);
        loop {
            let mut g = match self.lock_ready() {
                Ok(g) => g,
                Err(e) => {
                    h.bio.endio(Some(e));
                    return None;
                }
            };
            match self.route(&mut g, op, sector, nsect) {
                Route::Remap { sector, tag } => {
                    drop(g);
                    h.bio.set_tag(tag);
                    h.bio.submit_remapped(&self.dev, sector);
                    return None;
                }
                Route::Done => {
                    drop(g);
                    h.bio.endio(None);
                    return None;
                }
                Route::Defer => {
                    // A state change started after this bio was queued: it
                    // waits for the change like any bio arriving now.
                    g.deferred.push(h.bio);
                    return None;
                }
                Route::NeedNodes => continue,
                Route::Busy0 => self.wait_busy(&mut g, parked),
                Route::Backup => {
                    let first = sector / self.spb;
                    let last = (sector + nsect).div_ceil(self.spb).max(first + 1);
                    h.backup = Some((first, last));
                    return Some(h);
                }
            }
        }
    }

    /// Waits for busy blocks to settle, telling the log writer not to wait
    /// for this worker's `parked` bios meanwhile.
    fn wait_busy(&self, g: &mut InnerGuard<'_>, parked: usize) {
        g.busy_waiters += parked;
        self.linger.notify_all();
        self.cond.wait(g);
        g.busy_waiters -= parked;
    }

    /// Free blocks beyond what the log may need to chain for every entry
    /// not yet durable plus one more, and how many entries are not durable.
    fn room_for_entry(&self, g: &InnerGuard<'_>) -> (u64, u64) {
        let (count, unlogged) = g
            .log
            .as_ref()
            .map_or((0, 0), |l| (l.header.count, l.unlogged));
        (
            g.free_blocks
                .saturating_sub(chain_blocks(count, unlogged + 1, self.epb)),
            unlogged,
        )
    }

    /// Plans copies from `*cursor` on, until `last`, a busy block, or
    /// `JOBS_MAX` jobs. Waits for busy blocks only while holding none.
    fn plan(&self, cursor: &mut u64, last: u64, owner: usize, w: &mut WorkerBufs) -> Result {
        let max_blocks = (COPY_MAX / self.bs as usize) as u64;
        let parked = w.count;
        let mut g = self.lock_ready()?;
        while *cursor < last && w.jobs.len() < JOBS_MAX {
            if g.log.as_ref().map_or(true, |l| l.failed) || g.state != State::Checkpoint {
                return Err(code::EIO);
            }
            // Nodes for the two changes a job makes (its copy, then its
            // source), so the lock is not dropped between them: another
            // worker must never see the source unclaimed once its copy is.
            if g.map.spares_needed() > 0 {
                drop(g);
                g = self.lock_ready()?;
                continue;
            }
            let Some(e) = rangemap::Store::containing(&mut g.map, *cursor) else {
                return Err(code::EIO);
            };
            let end = e.end.min(last);
            match e.kind {
                Kind::Busy if w.jobs.is_empty() => self.wait_busy(&mut g, parked),
                Kind::Busy => return Ok(()),
                Kind::Changed | Kind::Used => *cursor = end,
                Kind::Free => {
                    // Free and not claimed: claim a window of it, from here
                    // to at least the end of the write, leaving the log what
                    // it may need to chain (this entry included).
                    let (avail, unlogged) = self.room_for_entry(&g);
                    if avail == 0 {
                        if !w.jobs.is_empty() {
                            return Ok(());
                        }
                        if unlogged == 0 {
                            return Err(code::ENOSPC);
                        }
                        self.wait_busy(&mut g, parked);
                        continue;
                    }
                    // The aligned window around the write (so random writes
                    // into a region claim each window once), within this
                    // free extent; as much as the reserve allows otherwise.
                    let bs = u64::from(self.bs);
                    let window = (CLAIM_BYTES / bs).max(1);
                    let base = *cursor - *cursor % window;
                    let cap = avail.min(u64::from(u32::MAX) / bs);
                    let mut start = e.start.max(base);
                    let mut stop = e.end.min((base + window).max(last));
                    if stop - start > cap {
                        start = *cursor;
                        stop = stop.min(*cursor + cap);
                    }
                    let n = stop - start;
                    self.assign(&mut g, start, stop, Kind::Busy)?;
                    let job = Job {
                        src: start,
                        dst: start,
                        n,
                        was: Kind::Free,
                        live0: false,
                        zero: true,
                        owner,
                    };
                    w.jobs.push(job, GFP_NOWAIT)?;
                    if let Some(l) = g.log.as_mut() {
                        l.unlogged += job.entries();
                    }
                    *cursor = stop;
                }
                Kind::Claimed => {
                    // Claimed: written without a backup or a log write, but
                    // never into the blocks the log keeps for its chain.
                    if g.free_blocks < (end - *cursor) + g.log_reserve(self.epb) {
                        if !w.jobs.is_empty() {
                            return Ok(());
                        }
                        self.wait_busy(&mut g, parked);
                        continue;
                    }
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
                    let end = if *cursor < live0 && live0 < end {
                        live0
                    } else {
                        end
                    };
                    let end = if is_live0 { *cursor + 1 } else { end };
                    // Keep back what the log may need to chain for every
                    // entry not yet durable, this one included.
                    let (avail, unlogged) = self.room_for_entry(&g);
                    if avail == 0 {
                        if !w.jobs.is_empty() {
                            // Log these first: that may shrink the reserve.
                            return Ok(());
                        }
                        if unlogged == 0 {
                            return Err(code::ENOSPC);
                        }
                        // Others' entries hold the reserve until they are durable.
                        self.wait_busy(&mut g, parked);
                        continue;
                    }
                    // Room left in the round's copy buffer (a whole copy
                    // for the first job).
                    let room = ((BATCH_BYTES - w.planned) / self.bs as usize) as u64;
                    if room == 0 {
                        return Ok(());
                    }
                    let want = (end - *cursor).min(max_blocks).min(avail).min(room);
                    let hint = g.free_hint;
                    let Some((dst, n)) = rangemap::find_free(&mut g.map, self.blocks, hint, want)
                    else {
                        return Err(code::ENOSPC);
                    };
                    // Both fit in the spares checked above.
                    self.assign(&mut g, dst, dst + n, Kind::Busy)?;
                    g.free_hint = dst + n;
                    self.assign(&mut g, *cursor, *cursor + n, Kind::Busy)?;
                    let job = Job {
                        src: *cursor,
                        dst,
                        n,
                        was: e.kind,
                        live0: is_live0,
                        zero: false,
                        owner,
                    };
                    w.jobs.push(job, GFP_NOWAIT)?;
                    w.planned += (n * u64::from(self.bs)) as usize;
                    if let Some(l) = g.log.as_mut() {
                        l.unlogged += job.entries();
                    }
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
        let new_live0 = self.copy_jobs(w)?;
        self.commit_log(&w.entries, new_live0.map(|b| b * self.spb), w.count)?;
        if let Some(b) = new_live0 {
            self.inner.lock().live0 = b;
        }
        Ok(())
    }

    /// Copies every planned job, all reads at once and then all writes at
    /// once; returns the new place of the live block 0 if it moved.
    fn copy_jobs(&self, w: &mut WorkerBufs) -> Result<Option<u64>> {
        let spb = self.spb;
        let bs = self.bs as usize;
        let WorkerBufs {
            copy,
            jobs,
            entries,
            io,
            ..
        } = w;
        // The copies lie side by side in the buffer, in job order.
        let reqs = |read: bool| {
            let mut offset = 0;
            jobs.iter().filter(|j| !j.zero).map(move |j| {
                let len = j.n as usize * bs;
                let r = IoReq {
                    sector: if read { j.src } else { j.dst } * spb,
                    offset,
                    len,
                };
                offset += len;
                r
            })
        };
        let copies = jobs.iter().any(|j| !j.zero);
        if copies {
            io.run(&self.io, &self.dev, copy, IoKind::Read, reqs(true))?;
        }
        let mut new_live0 = None;
        let mut offset = 0;
        for j in jobs.iter() {
            let bytes = j.n as usize * bs;
            if j.zero {
                entries.push(LogEntry::zero(j.src * spb, bytes as u32), GFP_NOWAIT)?;
                continue;
            }
            let data = copy.get(offset..offset + bytes).ok_or(code::EINVAL)?;
            offset += bytes;
            // The kernel's crc32_le (accelerated where the CPU can), the same
            // function as the shared `crc32` (KUnit checks that they agree).
            let checksum = if j.live0 {
                0
            } else {
                kernel_crc32_le(entry_seed(j.src * spb, self.bs), data)
            };
            entries.push(
                LogEntry {
                    source: j.src * spb,
                    dest: j.dst * spb,
                    size: bytes as u32,
                    checksum,
                },
                GFP_NOWAIT,
            )?;
            if j.live0 {
                // Its new place holds data newer than the checkpoint from now on.
                entries.push(LogEntry::zero(j.dst * spb, self.bs), GFP_NOWAIT)?;
                new_live0 = Some(j.dst);
            }
        }
        if copies {
            io.run(&self.io, &self.dev, copy, IoKind::Write, reqs(false))?;
        }
        Ok(new_live0)
    }

    /// Marks planned blocks changed (and their copies as backups) once the
    /// log is durable, or puts them back as they were on failure.
    fn settle(&self, w: &mut WorkerBufs, ok: bool) {
        let entries: u64 = w.jobs.iter().map(Job::entries).sum();
        if let Some(l) = self.inner.lock().log.as_mut() {
            l.unlogged = l.unlogged.saturating_sub(entries);
        }
        for j in w.jobs.iter() {
            if j.zero {
                // Claimed: still free for backups, written without a log write.
                if let Ok(mut g) = self.lock_ready() {
                    let _ = self.assign(
                        &mut g,
                        j.src,
                        j.src + j.n,
                        if ok { Kind::Claimed } else { Kind::Free },
                    );
                    if ok {
                        g.counters.claimed_bytes += j.n * u64::from(self.bs);
                    }
                }
                continue;
            }
            let (src_kind, dst_kind) = if ok {
                (Kind::Changed, Kind::Backup)
            } else {
                (j.was, Kind::Free)
            };
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
    /// progress to join; the others wait for it. `parked` is how many bios
    /// the caller holds: the writer does not linger for them meanwhile.
    fn commit_log(&self, entries: &[LogEntry], sector0: Option<u64>, parked: usize) -> Result {
        let mut g = self.inner.lock();
        let mine = loop {
            let Some(log) = g.log.as_mut() else {
                return Err(code::EIO);
            };
            if log.failed {
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
                let mine = log.enqueued;
                g.log_waiters += parked;
                self.linger.notify_all();
                break mine;
            }
            self.log_cond.wait(&mut g);
        };
        let r = self.await_log(g, mine);
        // One fewer waiting only lengthens a linger: no one to wake.
        self.inner.lock().log_waiters -= parked;
        r
    }

    /// Waits until entry number `mine` is durable, writing the log when no
    /// one else is.
    fn await_log<'a>(&'a self, mut g: InnerGuard<'a>, mine: u64) -> Result {
        loop {
            let Some(log) = g.log.as_mut() else {
                return Err(code::EIO);
            };
            if log.failed {
                return Err(code::EIO);
            }
            if log.durable >= mine {
                return Ok(());
            }
            if log.writing {
                self.log_cond.wait(&mut g);
                continue;
            }
            // Become the writer; first let the copies in progress join.
            log.writing = true;
            // Linger while entries are on their way: some bio a worker holds
            // is neither waiting for the log nor for busy blocks (its
            // worker is copying or mapping), or bios are queued and a worker
            // may yet start for them. Bios queued while every worker is
            // taken do not count (none can start before this write), so
            // batches form by themselves; the timer only bounds a stall.
            let mut left = kernel::time::msecs_to_jiffies(LINGER_MS);
            let copying = |g: &InnerGuard<'_>| {
                let queued = g.queue.len();
                let active = g.inflight.saturating_sub(queued);
                active > g.log_waiters + g.busy_waiters || (queued > 0 && g.workers < WORKERS)
            };
            while copying(&g) && left > 0 {
                match self.linger.wait_interruptible_timeout(&mut g, left) {
                    CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                    _ => break,
                }
            }
            let Some(log) = g.log.as_mut() else {
                return Err(code::EIO);
            };
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
            let Some(log) = g.log.as_mut() else {
                return Err(code::EIO);
            };
            log.block = Some(block);
            log.spare = Some(batch);
            log.writing = false;
            match r {
                Ok(bytes) => {
                    log.header = header;
                    log.durable = upto;
                    g.counters.log_writes += 1;
                    g.counters.log_bytes += bytes;
                }
                Err(e) => {
                    log.failed = true;
                    pr_err!(
                        "bow: log write failed ({:?}); no further backups can be logged\n",
                        e
                    );
                }
            }
            // Durable entries, room in the queue, and a smaller reserve for
            // the busy waiters; a state change waits for `writing` to clear.
            self.log_cond.notify_all();
            self.cond.notify_all();
        }
    }

    /// Appends `batch` to the log block, chaining to a new block whenever one
    /// fills, and writes block 0 with PREFLUSH|FUA: only its part in use, in
    /// the device's logical blocks (a batch of a few entries costs one
    /// sector, not a whole block). Returns the bytes written.
    fn write_log(
        &self,
        block: &mut KVec<u8>,
        h: &mut LogHeader,
        batch: &[LogEntry],
    ) -> Result<u64> {
        let epb = entries_per_block(self.bs);
        let mut bytes = 0u64;
        for e in batch {
            if h.count >= epb {
                // Save the full block in free space and start the next one,
                // whose entry 0 points at the saved copy.
                let c = {
                    let mut g = self.lock_ready()?;
                    self.take_free_block(&mut g)?
                };
                h.encode(block).map_err(|_| code::EINVAL)?;
                self.io.sync(
                    &self.dev,
                    c * self.spb,
                    block,
                    self.bs as usize,
                    IoKind::Write,
                )?;
                bytes += u64::from(self.bs);
                let checksum = kernel_crc32_le(0, block);
                block.iter_mut().for_each(|b| *b = 0);
                *h = LogHeader::new(self.bs, h.sequence + 1, h.sector0);
                LogEntry {
                    source: 0,
                    dest: c * self.spb,
                    size: self.bs,
                    checksum,
                }
                .encode_at(block, 0)
                .map_err(|_| code::EINVAL)?;
                h.count = 1;
            }
            e.encode_at(block, h.count).map_err(|_| code::EINVAL)?;
            h.count += 1;
        }
        h.encode(block).map_err(|_| code::EINVAL)?;
        let len = log_write_len(h.count, self.bs, self.dev.logical_block_size());
        self.io
            .sync(&self.dev, 0, block, len as usize, IoKind::WriteFlushFua)?;
        Ok(bytes + u64::from(len))
    }
}
