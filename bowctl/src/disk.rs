//! A block device or image file as a [`Disk`].

use bow_core::restore::{Disk, IoError, IoOp};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A device or image opened for restore or inspection.
pub struct FileDisk {
    file: File,
    size: u64,
}

impl FileDisk {
    /// Opens `path`, read-only unless `write`.
    pub fn open(path: &Path, write: bool) -> std::io::Result<Self> {
        let mut file = OpenOptions::new().read(true).write(write).open(path)?;
        // Works for block devices and regular files alike.
        let size = file.seek(SeekFrom::End(0))?;
        drop_cache(&file);
        Ok(Self { file, size })
    }
}

/// Forgets cached pages of the device, which may be stale: the bow target
/// writes to the device below the page cache of its block device node.
fn drop_cache(file: &File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // BLKFLSBUF: write back and invalidate the block device's buffer cache.
    const BLKFLSBUF: libc::c_ulong = 0x1261;
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
        errno: e.raw_os_error().unwrap_or(0),
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
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| err(IoOp::Write, offset, &e))
    }

    fn sync(&mut self) -> Result<(), IoError> {
        self.file.sync_all().map_err(|e| err(IoOp::Sync, 0, &e))
    }
}
