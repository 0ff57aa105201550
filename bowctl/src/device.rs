//! Finding bow devices and talking to them: name, node or mountpoint to a dm
//! device; sysfs state; status; FITRIM; the checks that keep restore away
//! from a device in use.

use crate::dm::{Control, Dev, Target};
use crate::error::{Error, Result};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A bow device as the kernel reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BowDevice {
    /// Device-mapper name.
    pub name: String,
    /// `/dev/dm-N`.
    pub node: String,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// The table line's parameters (`<device> [<#opt> <opt>...]`).
    pub table: String,
    /// The state from sysfs: 0 trim, 1 checkpoint, 2 committed.
    pub state: u8,
    /// The state's name.
    pub state_name: &'static str,
    /// Recorded free space not yet used by backups, in bytes (sysfs `free`).
    pub free: u64,
    /// The `key=value` pairs of the INFO status line, in order.
    pub status: Vec<(String, String)>,
}

impl BowDevice {
    /// One `key` of the status line.
    pub fn status_value(&self, key: &str) -> Option<&str> {
        self.status
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits the major and minor number out of a `dev_t` as `stat` returns it.
pub fn split_dev(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

fn sysfs_dir(major: u32, minor: u32) -> PathBuf {
    PathBuf::from(format!("/sys/dev/block/{major}:{minor}"))
}

fn read_trimmed(p: &Path) -> Result<String> {
    fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))
}

/// `dm-N` for a device-mapper device.
fn kernel_name(major: u32, minor: u32) -> String {
    fs::read_link(sysfs_dir(major, minor))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("dm-{minor}"))
}

/// The name of each state number.
pub fn state_name(state: u8) -> &'static str {
    match state {
        0 => "trim",
        1 => "checkpoint",
        2 => "committed",
        _ => "unknown",
    }
}

fn is_bow(table: &[Target]) -> Option<&Target> {
    match table {
        [t] if t.target_type == "bow" => Some(t),
        _ => None,
    }
}

/// Reads everything about the dm device `major:minor`, or `None` if its live
/// table is not a single bow target.
pub fn probe(ctl: &Control, name: &str, major: u32, minor: u32) -> Result<Option<BowDevice>> {
    let table = ctl.table(Dev::Name(name))?;
    let Some(t) = is_bow(&table) else {
        return Ok(None);
    };
    let dir = sysfs_dir(major, minor).join("bow");
    let state: u8 = read_trimmed(&dir.join("state"))?
        .parse()
        .map_err(|_| Error::WrongState(format!("{name}: unreadable bow/state in sysfs")))?;
    let free = read_trimmed(&dir.join("free"))?.parse().unwrap_or(0);
    let status = ctl
        .status(Dev::Name(name))?
        .into_iter()
        .next()
        .map(|s| parse_status(&s.params))
        .unwrap_or_default();
    Ok(Some(BowDevice {
        name: name.to_owned(),
        node: format!("/dev/{}", kernel_name(major, minor)),
        major,
        minor,
        table: t.params.clone(),
        state,
        state_name: state_name(state),
        free,
        status,
    }))
}

/// Splits a `key=value key=value` status line.
pub fn parse_status(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every bow device on the system.
pub fn all(ctl: &Control) -> Result<Vec<BowDevice>> {
    let mut out = Vec::new();
    for (name, major, minor) in ctl.list()? {
        if let Some(d) = probe(ctl, &name, major, minor)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// Finds the bow device a user named: a dm name, a device node such as
/// `/dev/dm-3` or `/dev/mapper/x`, or a mountpoint of a filesystem on it.
pub fn resolve(ctl: &Control, target: &str) -> Result<BowDevice> {
    let path = Path::new(target);
    let (name, major, minor) = if let Ok(md) = fs::metadata(path).and_then(|m| {
        if m.file_type().is_block_device() || m.is_dir() {
            Ok(m)
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::InvalidInput))
        }
    }) {
        let (major, minor) = if md.is_dir() {
            mounted_device(path)?
        } else {
            split_dev(md.rdev())
        };
        let info = ctl.info(Dev::Number(major, minor)).map_err(|_| {
            Error::WrongState(format!(
                "{target}: device {major}:{minor} is not a device-mapper device, so not a bow device"
            ))
        })?;
        (info.name, major, minor)
    } else if target.contains('/') {
        return Err(Error::NotFound(format!(
            "{target}: no such device node or mountpoint"
        )));
    } else {
        let info = ctl.info(Dev::Name(target)).map_err(|_| {
            Error::NotFound(format!("{target}: no device-mapper device of that name"))
        })?;
        (info.name, info.major, info.minor)
    };
    probe(ctl, &name, major, minor)?
        .ok_or_else(|| Error::WrongState(format!("{target}: {name} is not a bow device")))
}

/// The device a mountpoint's filesystem lives on, from /proc/self/mountinfo.
pub fn mounted_device(dir: &Path) -> Result<(u32, u32)> {
    let canon = fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), e))?;
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read /proc/self/mountinfo", e))?;
    // The last mount on a point is the visible one.
    let mut found = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 4 && unescape(f[4]) == canon.to_string_lossy() {
            if let Some((ma, mi)) = f[2].split_once(':') {
                if let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) {
                    found = Some((ma, mi));
                }
            }
        }
    }
    found.ok_or_else(|| Error::NotFound(format!("{}: not a mountpoint", dir.display())))
}

/// Checks that `path` exists and is a directory (`what` names it in the
/// error), before anything else is opened.
pub fn need_dir(path: &Path, what: &str) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotFound(format!(
            "{}: not a directory ({what})",
            path.display()
        ))),
        Err(e) => Err(Error::NotFound(format!("{}: {e} ({what})", path.display()))),
    }
}

/// Checks that `path` exists and is a block device.
pub fn need_block_device(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => Ok(()),
        Ok(_) => Err(Error::NotFound(format!(
            "{}: not a block device",
            path.display()
        ))),
        Err(e) => Err(Error::NotFound(format!("{}: {e}", path.display()))),
    }
}

/// The mountpoint whose filesystem holds `path` (canonical), from the text
/// of /proc/self/mountinfo: the longest mountpoint that is a prefix of it.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<String> = None;
    for line in mountinfo.lines() {
        let Some(mp) = line.split(' ').nth(4).map(unescape) else {
            continue;
        };
        if path.starts_with(&mp) && best.as_ref().map_or(true, |b| mp.len() >= b.len()) {
            best = Some(mp);
        }
    }
    best
}

/// `major:minor` of a table's device word: a path to a block device, or
/// `major:minor` itself.
pub fn dev_of(word: &str) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if let Some((a, b)) = word.split_once(':') {
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    Some(split_dev(fs::metadata(word).ok()?.rdev()))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mountpoints of `major:minor`.
pub fn mountpoints(major: u32, minor: u32) -> Vec<String> {
    let want = format!("{major}:{minor}");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[2] == want).then(|| unescape(f[4]))
        })
        .collect()
}

/// Writes a new state to the device's sysfs `state` file.
pub fn set_state(dev: &BowDevice, state: u8) -> Result<()> {
    let p = sysfs_dir(dev.major, dev.minor).join("bow/state");
    fs::write(&p, format!("{state}\n")).map_err(|e| {
        Error::io(
            format!("{}: the target refused state {state} (see dmesg)", dev.name),
            e,
        )
    })
}

/// Runs FITRIM over the whole filesystem mounted at `dir`; returns the bytes
/// the filesystem reports as trimmed.
pub fn fitrim(dir: &Path) -> Result<u64> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct FstrimRange {
        start: u64,
        len: u64,
        minlen: u64,
    }
    // _IOWR('X', 121, struct fstrim_range)
    const FITRIM: u32 = (3 << 30) | (24 << 16) | ((b'X' as u32) << 8) | 121;
    let f =
        fs::File::open(dir).map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
    let mut r = FstrimRange {
        start: 0,
        len: u64::MAX,
        minlen: 0,
    };
    // SAFETY: `f` is an open descriptor and `r` a live fstrim_range the kernel
    // reads and updates in place.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), FITRIM as _, &mut r as *mut FstrimRange) };
    if rc < 0 {
        return Err(Error::io(
            format!("FITRIM on {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(r.len)
}

/// Size of a block device or file in bytes.
pub fn size_of(path: &Path) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| Error::io(format!("cannot size {}", path.display()), e))
}

/// Refuses a block device that is mounted, or that a device-mapper device
/// (a bow target above all) still holds. Image files pass.
pub fn check_not_in_use(path: &Path) -> Result<()> {
    let md =
        fs::metadata(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    if !md.file_type().is_block_device() {
        return Ok(());
    }
    let (major, minor) = split_dev(md.rdev());
    let shown = path.display();
    if let Ok(holders) = fs::read_dir(sysfs_dir(major, minor).join("holders")) {
        if let Some(h) = holders.flatten().next() {
            let holder = h.file_name().to_string_lossy().into_owned();
            let dm_name = fs::read_to_string(h.path().join("dm/name"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let is_bow_above = Control::open()
                .ok()
                .and_then(|c| c.table(Dev::Name(&dm_name)).ok())
                .is_some_and(|t| is_bow(&t).is_some());
            return Err(Error::Busy(if is_bow_above {
                format!(
                    "{shown}: a bow target is still loaded above it ({holder}, \"{dm_name}\"); remove it first (bowctl remove {dm_name})"
                )
            } else {
                format!("{shown}: held by {holder} {dm_name}; remove that first")
            }));
        }
    }
    let mounts = mountpoints(major, minor);
    if !mounts.is_empty() {
        return Err(Error::Busy(format!(
            "{shown}: mounted at {}; unmount it first",
            mounts.join(", ")
        )));
    }
    Ok(())
}

/// The filesystem type in a device's superblock, for the ones a data
/// partition is likely to hold.
pub fn fs_type(path: &Path) -> Result<Option<&'static str>> {
    use std::io::Read;
    let mut f = fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut b = vec![0u8; 0x10048];
    let mut n = 0;
    while n < b.len() {
        match f.read(&mut b[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }
    let b = &b[..n];
    let at = |o: usize, m: &[u8]| b.get(o..o + m.len()) == Some(m);
    Ok(if at(0, b"XFSB") {
        Some("xfs")
    } else if at(1080, &[0x53, 0xef]) {
        Some("ext4")
    } else if at(1024, &[0x10, 0x20, 0xf5, 0xf2]) {
        Some("f2fs")
    } else if at(0x10040, b"_BHRfS_M") {
        Some("btrfs")
    } else {
        None
    })
}

/// Mounts `dev` at `dir`. `fstype` defaults to what the superblock says;
/// `options` is mount(8)'s `-o` list: the generic flags (ro, noatime, nodev,
/// nosuid, noexec, sync, ...) become mount flags, the rest goes to the
/// filesystem.
pub fn mount(dev: &Path, dir: &Path, fstype: Option<&str>, options: &str) -> Result<()> {
    use std::ffi::CString;
    let ty = match fstype {
        Some(t) => t.to_owned(),
        None => fs_type(dev)?
            .ok_or_else(|| {
                Error::WrongState(format!(
                    "{}: no ext4, xfs, f2fs or btrfs superblock; give the type with --type",
                    dev.display()
                ))
            })?
            .to_owned(),
    };
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" | "defaults" => {}
            "noatime" => flags |= libc::MS_NOATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "nodev" => flags |= libc::MS_NODEV,
            "nosuid" => flags |= libc::MS_NOSUID,
            "noexec" => flags |= libc::MS_NOEXEC,
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            "dirsync" => flags |= libc::MS_DIRSYNC,
            other => data.push(other),
        }
    }
    let c = |s: &str, what: &str| {
        CString::new(s).map_err(|_| Error::WrongState(format!("{what} contains a NUL byte")))
    };
    let (src, tgt) = (
        c(&dev.to_string_lossy(), "device")?,
        c(&dir.to_string_lossy(), "mountpoint")?,
    );
    let (cty, cdata) = (c(&ty, "type")?, c(&data.join(","), "options")?);
    // SAFETY: every pointer is a live NUL-terminated string for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            cty.as_ptr(),
            flags,
            cdata.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(Error::io(
            format!("mounting {} ({ty}) at {}", dev.display(), dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Freezes the filesystem mounted at `dir` (FIFREEZE) until the returned
/// guard is dropped (FITHAW): the checkpoint then holds a clean filesystem,
/// with nothing half-written and the journal empty. `None` when the
/// filesystem cannot freeze (vfat, for one): the checkpoint is then a
/// crash-consistent image, as with Android. `None` too when it is frozen
/// already (EBUSY): whoever froze it thaws it.
pub fn freeze(dir: &Path) -> Result<Option<Frozen>> {
    use std::os::fd::AsRawFd;
    let f =
        fs::File::open(dir).map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
    // SAFETY: `f` is an open descriptor; FIFREEZE takes no argument.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), FIFREEZE as _, 0) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::EBUSY)
        ) {
            return Ok(None);
        }
        return Err(Error::io(format!("freezing {}", dir.display()), e));
    }
    Ok(Some(Frozen { f }))
}

// _IOWR('X', 119, int) and _IOWR('X', 120, int).
const FIFREEZE: u32 = (3 << 30) | (4 << 16) | ((b'X' as u32) << 8) | 119;
const FITHAW: u32 = (3 << 30) | (4 << 16) | ((b'X' as u32) << 8) | 120;

/// A frozen filesystem; thawed when dropped.
pub struct Frozen {
    f: fs::File,
}

impl Frozen {
    /// Thaws now and reports a failure (drop thaws too, silently).
    pub fn thaw(self) -> Result<()> {
        let r = self.thaw_inner();
        std::mem::forget(self);
        r
    }

    fn thaw_inner(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `self.f` is an open descriptor; FITHAW takes no argument.
        let rc = unsafe { libc::ioctl(self.f.as_raw_fd(), FITHAW as _, 0) };
        if rc < 0 {
            return Err(Error::io(
                "thawing the filesystem",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.thaw_inner();
    }
}
