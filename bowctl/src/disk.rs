//! A block device or image file as a [`Disk`].

use crate::error::{Error, Result};
use bow_core::restore::{Disk, IoError, IoOp};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Environment variable of the test hook that cuts the device off: after
/// this many writes every further write and sync fails with EIO, as if the
/// device had gone away. Used by the interrupted-restore tests.
pub const CUT_AFTER_WRITES: &str = "BOWCTL_TEST_CUT_AFTER_WRITES";

/// A device or image opened for restore or inspection.
pub struct FileDisk {
    file: File,
    size: u64,
    writes: u64,
    cut_after: Option<u64>,
    is_blk: bool,
}

impl FileDisk {
    /// Opens `path`, read-only unless `write`. A block device opened for
    /// writing is opened exclusively (`O_EXCL`), so it cannot be mounted or
    /// claimed while a restore runs, and a device someone else holds is
    /// refused as busy.
    pub fn open(path: &Path, write: bool) -> Result<Self> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(format!("{shown}: no such device or image"))
            } else {
                Error::io(format!("cannot open {shown}"), e)
            }
        })?;
        let is_blk = meta.file_type().is_block_device();
        if !is_blk && !meta.is_file() {
            let errno = if meta.is_dir() {
                libc::EISDIR
            } else {
                libc::ENODEV
            };
            return Err(Error::io(
                format!("cannot open {shown}: not a block device or an image file"),
                std::io::Error::from_raw_os_error(errno),
            ));
        }
        let mut o = OpenOptions::new();
        o.read(true).write(write);
        if write && is_blk {
            o.custom_flags(libc::O_EXCL);
        }
        let mut file = o.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                Error::Busy(format!(
                    "{shown}: held open exclusively by someone else (mounted, or claimed by a driver)"
                ))
            } else {
                Error::io(format!("cannot open {shown}"), e)
            }
        })?;
        // Works for block devices and regular files alike.
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(format!("cannot size {shown}"), e))?;
        drop_cache(&file);
        let cut_after = std::env::var(CUT_AFTER_WRITES)
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(Self {
            file,
            size,
            writes: 0,
            cut_after,
            is_blk,
        })
    }

    /// EIO once the test hook has cut the device off.
    fn check_cut(&self, op: IoOp, offset: u64) -> Result<(), IoError> {
        if self.cut_after.is_some_and(|n| self.writes >= n) {
            return Err(err(
                op,
                offset,
                &std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        Ok(())
    }

    /// Counts one write for the test hook, failing once it has cut the device off.
    fn count_write(&mut self, offset: u64) -> Result<(), IoError> {
        self.check_cut(IoOp::Write, offset)?;
        self.writes += 1;
        Ok(())
    }
}

/// Forgets cached pages of the device, which may be stale: the bow target
/// writes to the device below the page cache of its block device node.
fn drop_cache(file: &File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // BLKFLSBUF: write back and invalidate the block device's buffer cache.
    const BLKFLSBUF: u32 = 0x1261;
    // SAFETY: `fd` is an open descriptor; both calls only take integers. Failure (e.g. on a
    // regular file, where BLKFLSBUF does not apply) is harmless.
    unsafe {
        libc::ioctl(fd, BLKFLSBUF as _);
        libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

fn err(op: IoOp, offset: u64, e: &std::io::Error) -> IoError {
    IoError {
        op,
        offset,
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    }
}

impl Disk for FileDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| err(IoOp::Read, offset, &e))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), IoError> {
        self.count_write(offset)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| err(IoOp::Write, offset, &e))
    }

    /// On a block device a punched hole (zeros by unmapping, where the
    /// device can) or else `BLKZEROOUT`; `FALLOC_FL_ZERO_RANGE` on a file;
    /// writes of zeros where none of those works.
    fn zero_at(&mut self, offset: u64, len: u64) -> Result<(), IoError> {
        use std::os::fd::AsRawFd;
        self.count_write(offset)?;
        let fd = self.file.as_raw_fd();
        let done = if self.is_blk {
            // A hole punched in a block device reads as zeros; the kernel
            // does it only where the device zeroes without writing data
            // (write-zeroes with unmap), and refuses otherwise.
            // SAFETY: `fd` is open; only integers are passed.
            let punched = unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                ) == 0
            };
            // _IO(0x12, 127); the argument is {start, length} in bytes.
            const BLKZEROOUT: u32 = 0x127f;
            let range = [offset, len];
            // SAFETY: `fd` is open; the kernel reads two u64 from `range`,
            // which lives across the call.
            punched || unsafe { libc::ioctl(fd, BLKZEROOUT as _, range.as_ptr()) == 0 }
        } else {
            // SAFETY: `fd` is open; only integers are passed.
            unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_ZERO_RANGE,
                    offset as libc::off_t,
                    len as libc::off_t,
                ) == 0
            }
        };
        if done {
            return Ok(());
        }
        let zeros = vec![0u8; len.min(4 << 20) as usize];
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], offset + at)
                .map_err(|e| err(IoOp::Write, offset + at, &e))?;
            at += n as u64;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), IoError> {
        self.check_cut(IoOp::Sync, 0)?;
        self.file.sync_all().map_err(|e| err(IoOp::Sync, 0, &e))
    }
}
