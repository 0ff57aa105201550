//! A minimal, hand-written client for the Linux device-mapper ioctl interface
//! (`/dev/mapper/control`, `include/uapi/linux/dm-ioctl.h`).
//!
//! Why not the `devicemapper` crate? It links against libdevmapper and runs
//! bindgen at build time, which rules out the fully static musl binaries
//! (x86_64 and aarch64) that `bowctl` must be for the recovery environment.
//! The interface we need is small, so it is implemented here directly on top
//! of `libc::ioctl`.
//!
//! Design notes:
//! * Requests and replies are encoded/decoded field by field at explicit byte
//!   offsets into an 8-byte aligned buffer (backed by a `Vec<u64>`); no Rust
//!   struct is ever transmuted to or from kernel memory.
//! * Every read from a kernel reply is bounds-checked; a malformed reply gives
//!   [`DmError::Reply`], never a panic.
//! * Requests use interface version 4.0.0, which every 4.x kernel accepts (the
//!   kernel only rejects a *minor* newer than its own).
//! * We run without udev, so [`Control::create`] makes `/dev/mapper/<name>`
//!   itself and [`Control::remove`] deletes it ([`ensure_node`],
//!   [`remove_node`]). `/dev/dm-N` is made by devtmpfs.
//!
//! Layout facts (Linux 6.12 uapi; unchanged since interface 4.0):
//! * `struct dm_ioctl` is 312 bytes; the reply's data area starts at
//!   `data_start` (the kernel always sets it to 312 when it returns data).
//! * `struct dm_target_spec.next`: in `DM_TABLE_LOAD` *requests* it is the
//!   offset from the start of the *current* spec to the next one; in
//!   `DM_TABLE_STATUS` *replies* it is the offset from the start of the data
//!   area (= the first spec) to the next spec (`retrieve_status()` in
//!   `drivers/md/dm-ioctl.c`: `spec->next = outptr - outbuf`, where `outbuf`
//!   is `param + data_start`). Both conventions are handled by
//!   `parse_targets`.
//! * `struct dm_name_list.next` is relative to the start of the current entry;
//!   `0` ends the list.

use std::ffi::CString;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

// The generic _IOC encoding below is shared by x86, arm, arm64, riscv, s390,
// loongarch; a few architectures use different direction bits / size widths.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
compile_error!(
    "dm.rs: this architecture uses a non-generic _IOC encoding; add it to dm_ioctl_nr()"
);

/// Errors from the DM interface.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("cannot open /dev/mapper/control or /dev/device-mapper: {0} (is the dm-mod driver loaded? are you root?)")]
    Control(std::io::Error),
    #[error("{op} on {name}: {source}")]
    Ioctl {
        op: &'static str,
        name: String,
        source: std::io::Error,
    },
    #[error("device-mapper name {0:?} is too long or contains a NUL byte")]
    BadName(String),
    #[error("unexpected reply from the kernel to {0}")]
    Reply(&'static str),
}

/// Status of one device-mapper device (the `struct dm_ioctl` header of a reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    pub uuid: String,
    pub major: u32,
    pub minor: u32,
    pub open_count: i32,
    /// Number of targets in the live table (0 without a live table).
    pub target_count: u32,
    pub suspended: bool,
    pub read_only: bool,
    /// A live ("active") table is present.
    pub live_table: bool,
}

/// One line of a device-mapper table (or of its status). Sectors are 512 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    pub params: String,
}

/// How a device is named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dev<'a> {
    Name(&'a str),
    /// Block device number: (major, minor).
    Number(u32, u32),
}

impl fmt::Display for Dev<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dev::Name(n) => f.write_str(n),
            Dev::Number(ma, mi) => write!(f, "{ma}:{mi}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Interface constants (include/uapi/linux/dm-ioctl.h)
// ---------------------------------------------------------------------------

/// The control node: where udev and Linux distributions put it, then where
/// Android's ueventd does (`/dev/device-mapper`, used by Android's libdm).
const CONTROL_PATHS: [&str; 2] = ["/dev/mapper/control", "/dev/device-mapper"];
const MAPPER_DIR: &str = "/dev/mapper";

/// `DM_IOCTL`, the ioctl "type" byte.
const DM_IOCTL: u32 = 0xfd;

/// Command numbers (`DM_*_CMD`).
#[allow(dead_code)]
mod cmd {
    pub const VERSION: u8 = 0;
    pub const REMOVE_ALL: u8 = 1;
    pub const LIST_DEVICES: u8 = 2;
    pub const DEV_CREATE: u8 = 3;
    pub const DEV_REMOVE: u8 = 4;
    pub const DEV_RENAME: u8 = 5;
    pub const DEV_SUSPEND: u8 = 6;
    pub const DEV_STATUS: u8 = 7;
    pub const DEV_WAIT: u8 = 8;
    pub const TABLE_LOAD: u8 = 9;
    pub const TABLE_CLEAR: u8 = 10;
    pub const TABLE_DEPS: u8 = 11;
    pub const TABLE_STATUS: u8 = 12;
    pub const LIST_VERSIONS: u8 = 13;
    pub const TARGET_MSG: u8 = 14;
    pub const DEV_SET_GEOMETRY: u8 = 15;
}

/// `struct dm_ioctl` flag bits.
#[allow(dead_code)]
mod flag {
    pub const READONLY: u32 = 1 << 0;
    pub const SUSPEND: u32 = 1 << 1;
    pub const PERSISTENT_DEV: u32 = 1 << 3;
    pub const STATUS_TABLE: u32 = 1 << 4;
    pub const ACTIVE_PRESENT: u32 = 1 << 5;
    pub const INACTIVE_PRESENT: u32 = 1 << 6;
    pub const BUFFER_FULL: u32 = 1 << 8;
    pub const UEVENT_GENERATED: u32 = 1 << 13;
    pub const DATA_OUT: u32 = 1 << 16;
    pub const DEFERRED_REMOVE: u32 = 1 << 17;
}

/// Interface version we claim to speak.
const VERSION: [u32; 3] = [4, 0, 0];

/// `sizeof(struct dm_ioctl)`.
const HEADER_SIZE: usize = 312;
/// `offsetof(struct dm_ioctl, data)`: the smallest `data_size` the kernel accepts.
const HEADER_MIN: usize = 305;
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_MAX_TYPE_NAME: usize = 16;

// Byte offsets inside struct dm_ioctl.
const OFF_VERSION: usize = 0;
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_OPEN_COUNT: usize = 24;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + DM_NAME_LEN; // 176

/// `sizeof(struct dm_target_spec)`: `sector_start: u64, length: u64, status: i32,
/// next: u32, target_type: [u8; 16]`.
const SPEC_SIZE: usize = 40;
const SPEC_OFF_START: usize = 0;
const SPEC_OFF_LENGTH: usize = 8;
const SPEC_OFF_NEXT: usize = 20;
const SPEC_OFF_TYPE: usize = 24;

/// `offsetof(struct dm_name_list, name)`: dev u64, next u32.
const NAME_LIST_OFF_NAME: usize = 12;

/// Initial size of buffers for replies of unknown length.
const INITIAL_BUF: usize = 16 * 1024;
/// Give up growing reply buffers beyond this.
const MAX_BUF: usize = 16 * 1024 * 1024;

/// `_IOWR(0xfd, nr, struct dm_ioctl)` with the generic Linux _IOC layout:
/// `dir << 30 | size << 16 | type << 8 | nr`, dir = read|write = 3.
const fn dm_ioctl_nr(nr: u8) -> u32 {
    const IOC_READ_WRITE: u32 = 3;
    (IOC_READ_WRITE << 30) | ((HEADER_SIZE as u32) << 16) | (DM_IOCTL << 8) | nr as u32
}

/// The kernel's `huge_encode_dev` (= `new_encode_dev`) of a device number.
pub fn encode_dev(major: u32, minor: u32) -> u64 {
    u64::from((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// Inverse of [`encode_dev`]: `(major, minor)`.
pub fn decode_dev(dev: u64) -> (u32, u32) {
    // Only the low 32 bits are used by the encoding.
    let dev = dev as u32;
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (major, minor)
}

/// User-space `dev_t` as used by glibc and musl on Linux (`makedev()`).
fn user_dev_t(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

// ---------------------------------------------------------------------------
// Byte buffer
// ---------------------------------------------------------------------------

/// A zeroed, 8-byte aligned byte buffer whose length is a multiple of 8.
struct Buf {
    words: Vec<u64>,
}

impl Buf {
    /// A buffer of at least `len` (and at least `HEADER_SIZE`) bytes.
    fn zeroed(len: usize) -> Self {
        let len = len.max(HEADER_SIZE);
        Buf {
            words: vec![0u64; len.div_ceil(8)],
        }
    }

    fn len(&self) -> usize {
        self.words.len() * 8
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the pointer comes from a live Vec<u64> of `words.len()`
        // elements, i.e. `len()` initialised bytes; u8 has no alignment or
        // validity requirements, and the returned slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len()) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in `bytes`; additionally every bit pattern is a valid
        // u64, so arbitrary byte writes cannot break the Vec's invariants, and
        // the slice mutably borrows `self` so there is no aliasing.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), len) }
    }
}

// Writers: only used on buffers we sized ourselves, so indexing cannot fail.
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

// Readers: bounds-checked, for kernel replies.
fn get_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(s.try_into().ok()?))
}

fn get_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_ne_bytes(s.try_into().ok()?))
}

/// The NUL-terminated string starting at `start`, which must end before `end`.
fn get_cstr(b: &[u8], start: usize, end: usize) -> Option<&[u8]> {
    let s = b.get(start..end)?;
    let nul = s.iter().position(|&c| c == 0)?;
    Some(&s[..nul])
}

/// A fixed-size char array: up to the first NUL, or the whole field.
fn get_fixed_str(b: &[u8], start: usize, len: usize) -> Option<String> {
    let s = b.get(start..start.checked_add(len)?)?;
    let n = s.iter().position(|&c| c == 0).unwrap_or(len);
    Some(String::from_utf8_lossy(&s[..n]).into_owned())
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Rejects names the kernel cannot hold in `char name[128]`.
fn check_name(name: &str) -> Result<(), DmError> {
    if name.len() >= DM_NAME_LEN || name.contains('\0') {
        return Err(DmError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Writes a request header into `b` (which must be zeroed).
fn write_header(
    b: &mut [u8],
    data_size: usize,
    flags: u32,
    dev: Option<Dev>,
) -> Result<(), DmError> {
    debug_assert!(data_size >= HEADER_SIZE && data_size <= b.len());
    let data_size =
        u32::try_from(data_size).map_err(|_| DmError::Reply("request: buffer too large"))?;
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(b, OFF_VERSION + 4 * i, *v);
    }
    put_u32(b, OFF_DATA_SIZE, data_size);
    put_u32(b, OFF_DATA_START, HEADER_SIZE as u32);
    put_u32(b, OFF_FLAGS, flags);
    match dev {
        None => {}
        Some(Dev::Name(name)) => {
            check_name(name)?;
            b[OFF_NAME..OFF_NAME + name.len()].copy_from_slice(name.as_bytes());
        }
        Some(Dev::Number(major, minor)) => put_u64(b, OFF_DEV, encode_dev(major, minor)),
    }
    Ok(())
}

/// A header-only request in a zeroed buffer of at least `size` bytes
/// (`data_size` = the whole buffer, so the kernel may reply into it).
fn simple_request(dev: Option<Dev>, flags: u32, size: usize) -> Result<Buf, DmError> {
    let mut buf = Buf::zeroed(size);
    let len = buf.len();
    write_header(buf.bytes_mut(), len, flags, dev)?;
    Ok(buf)
}

/// Builds a `DM_TABLE_LOAD` request: the header, then per target one
/// `dm_target_spec` plus its NUL-terminated params, each spec 8-byte aligned
/// and its `next` relative to the current spec.
fn table_load_request(dev: Dev, targets: &[Target]) -> Result<Buf, DmError> {
    let mut size = HEADER_SIZE;
    for t in targets {
        if t.target_type.len() >= DM_MAX_TYPE_NAME || t.target_type.contains('\0') {
            return Err(DmError::BadName(t.target_type.clone()));
        }
        if t.params.contains('\0') {
            return Err(DmError::BadName(t.params.clone()));
        }
        size = size
            .checked_add(align8(SPEC_SIZE + t.params.len() + 1))
            .filter(|&s| s <= u32::MAX as usize)
            .ok_or(DmError::Reply("DM_TABLE_LOAD: table too large"))?;
    }
    let count = u32::try_from(targets.len())
        .map_err(|_| DmError::Reply("DM_TABLE_LOAD: too many targets"))?;
    let mut buf = Buf::zeroed(size);
    let b = buf.bytes_mut();
    // data_size is the exact, 8-aligned payload end (<= buffer length).
    write_header(b, size, 0, Some(dev))?;
    put_u32(b, OFF_TARGET_COUNT, count);
    let mut off = HEADER_SIZE;
    for t in targets {
        let rec = align8(SPEC_SIZE + t.params.len() + 1);
        put_u64(b, off + SPEC_OFF_START, t.start);
        put_u64(b, off + SPEC_OFF_LENGTH, t.length);
        put_u32(b, off + SPEC_OFF_NEXT, rec as u32);
        let ty = t.target_type.as_bytes();
        b[off + SPEC_OFF_TYPE..off + SPEC_OFF_TYPE + ty.len()].copy_from_slice(ty);
        let p = off + SPEC_SIZE;
        b[p..p + t.params.len()].copy_from_slice(t.params.as_bytes());
        // NUL terminator and padding are already zero.
        off += rec;
    }
    debug_assert_eq!(off, size);
    Ok(buf)
}

/// Builds a `DM_TARGET_MSG` request of `size` bytes for sector 0. The message
/// sits at the start of the data area, like libdevmapper does; the kernel
/// writes any reply string to the same place.
fn message_request(dev: Dev, msg: &str, size: usize) -> Result<Buf, DmError> {
    if msg.contains('\0') {
        return Err(DmError::BadName(msg.to_owned()));
    }
    let mut buf = Buf::zeroed(size.max(HEADER_SIZE + 8 + msg.len() + 1));
    let len = buf.len();
    let b = buf.bytes_mut();
    write_header(b, len, 0, Some(dev))?;
    put_u64(b, HEADER_SIZE, 0); // dm_target_msg.sector
    let m = HEADER_SIZE + 8;
    b[m..m + msg.len()].copy_from_slice(msg.as_bytes());
    Ok(buf)
}

// ---------------------------------------------------------------------------
// Reply decoding
// ---------------------------------------------------------------------------

/// The fixed part of a reply.
#[derive(Debug)]
struct Header {
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    dev: u64,
    name: String,
    uuid: String,
}

impl Header {
    fn parse(b: &[u8]) -> Option<Header> {
        Some(Header {
            data_size: get_u32(b, OFF_DATA_SIZE)?,
            data_start: get_u32(b, OFF_DATA_START)?,
            target_count: get_u32(b, OFF_TARGET_COUNT)?,
            open_count: get_u32(b, OFF_OPEN_COUNT)? as i32,
            flags: get_u32(b, OFF_FLAGS)?,
            dev: get_u64(b, OFF_DEV)?,
            name: get_fixed_str(b, OFF_NAME, DM_NAME_LEN)?,
            uuid: get_fixed_str(b, OFF_UUID, DM_UUID_LEN)?,
        })
    }

    /// `(data_start, data_size)` as a checked range within a buffer of `len` bytes.
    fn payload(&self, len: usize) -> Option<(usize, usize)> {
        let start = self.data_start as usize;
        let end = self.data_size as usize;
        (HEADER_MIN <= start && start <= end && end <= len).then_some((start, end))
    }

    fn info(&self) -> DeviceInfo {
        let (major, minor) = decode_dev(self.dev);
        DeviceInfo {
            name: self.name.clone(),
            uuid: self.uuid.clone(),
            major,
            minor,
            open_count: self.open_count,
            target_count: self.target_count,
            suspended: self.flags & flag::SUSPEND != 0,
            read_only: self.flags & flag::READONLY != 0,
            live_table: self.flags & flag::ACTIVE_PRESENT != 0,
        }
    }
}

/// How `dm_target_spec.next` is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextFrom {
    /// `DM_TABLE_LOAD` requests: relative to the current spec. (We only
    /// build such requests; parsing them is used by the tests.)
    #[cfg_attr(not(test), allow(dead_code))]
    CurrentSpec,
    /// `DM_TABLE_STATUS` replies: relative to the start of the data area.
    DataStart,
}

/// Parses `count` target specs from `b[start..end]`.
fn parse_targets(
    b: &[u8],
    start: usize,
    end: usize,
    count: u32,
    from: NextFrom,
) -> Option<Vec<Target>> {
    let b = b.get(..end)?;
    let mut out = Vec::with_capacity((count as usize).min(1024));
    let mut off = start;
    for i in 0..count {
        if off.checked_add(SPEC_SIZE)? > end {
            return None;
        }
        let params = get_cstr(b, off + SPEC_SIZE, end)?;
        out.push(Target {
            start: get_u64(b, off + SPEC_OFF_START)?,
            length: get_u64(b, off + SPEC_OFF_LENGTH)?,
            target_type: get_fixed_str(b, off + SPEC_OFF_TYPE, DM_MAX_TYPE_NAME)?,
            params: String::from_utf8_lossy(params).into_owned(),
        });
        if i + 1 == count {
            break;
        }
        let next = get_u32(b, off + SPEC_OFF_NEXT)? as usize;
        let next_off = match from {
            NextFrom::CurrentSpec => off.checked_add(next)?,
            NextFrom::DataStart => start.checked_add(next)?,
        };
        // The next spec must lie beyond this one's params string.
        if next_off < off + SPEC_SIZE + params.len() + 1 {
            return None;
        }
        off = next_off;
    }
    Some(out)
}

/// Parses a `DM_LIST_DEVICES` reply area `b[start..end]`.
fn parse_name_list(b: &[u8], start: usize, end: usize) -> Option<Vec<(String, u32, u32)>> {
    let b = b.get(..end)?;
    let mut out = Vec::new();
    // No devices: the kernel returns an empty data area (or one whose first
    // entry has dev == 0).
    if end.checked_sub(start)? < NAME_LIST_OFF_NAME || get_u64(b, start)? == 0 {
        return Some(out);
    }
    let mut off = start;
    loop {
        let dev = get_u64(b, off)?;
        let next = get_u32(b, off + 8)? as usize;
        let name = get_cstr(b, off + NAME_LIST_OFF_NAME, end)?;
        let (major, minor) = decode_dev(dev);
        out.push((String::from_utf8_lossy(name).into_owned(), major, minor));
        if next == 0 {
            return Some(out);
        }
        if next < NAME_LIST_OFF_NAME + name.len() + 1 {
            return None;
        }
        off = off.checked_add(next)?;
    }
}

// ---------------------------------------------------------------------------
// Control
// ---------------------------------------------------------------------------

/// Opens the first of `paths` that exists, read-write. When none exists,
/// the error is the first path's; any other error stops the search.
fn open_first(paths: &[&Path]) -> io::Result<std::fs::File> {
    let mut first = None;
    for p in paths {
        match OpenOptions::new().read(true).write(true).open(p) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                first.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
}

/// An open device-mapper control node.
pub struct Control {
    fd: OwnedFd,
}

impl Control {
    /// Opens the control node (`/dev/mapper/control`, or Android's
    /// `/dev/device-mapper`) and checks that it speaks interface 4.
    pub fn open() -> Result<Self, DmError> {
        let file = open_first(&CONTROL_PATHS.map(Path::new)).map_err(DmError::Control)?;
        let ctl = Control { fd: file.into() };
        match ctl.version() {
            Ok(_) => Ok(ctl),
            Err(DmError::Ioctl { source, .. }) => Err(DmError::Control(source)),
            Err(e) => Err(e),
        }
    }

    /// The kernel's ioctl interface version (DM_VERSION), e.g. `[4, 48, 0]`.
    pub fn version(&self) -> Result<[u32; 3], DmError> {
        let mut buf = simple_request(None, 0, HEADER_SIZE)?;
        self.ioctl(cmd::VERSION, "DM_VERSION", "the control node", &mut buf)?;
        let b = buf.bytes();
        let get = |i: usize| get_u32(b, OFF_VERSION + 4 * i).ok_or(DmError::Reply("DM_VERSION"));
        let v = [get(0)?, get(1)?, get(2)?];
        if v[0] != VERSION[0] {
            return Err(DmError::Reply("DM_VERSION"));
        }
        Ok(v)
    }

    /// Issues one ioctl on `buf` (whose header must already be written).
    fn ioctl(&self, nr: u8, op: &'static str, who: &str, buf: &mut Buf) -> Result<Header, DmError> {
        let req = dm_ioctl_nr(nr);
        // The kernel reads and writes back at most `data_size` bytes, and for
        // header-only commands always writes sizeof(struct dm_ioctl).
        let declared = get_u32(buf.bytes(), OFF_DATA_SIZE).unwrap_or(u32::MAX) as usize;
        assert!(
            declared <= buf.len() && buf.len() >= HEADER_SIZE,
            "dm request buffer too small"
        );
        loop {
            let ptr = buf.bytes_mut().as_mut_ptr();
            // SAFETY: `ptr` points to `buf.len()` writable bytes that stay
            // borrowed for the duration of the call; the header's data_size
            // (checked above) tells the kernel not to access more than that,
            // and the buffer is at least sizeof(struct dm_ioctl). The request
            // code is a DM ioctl that takes a `struct dm_ioctl *` argument.
            let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, ptr) };
            if r >= 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(DmError::Ioctl {
                op,
                name: who.to_owned(),
                source: err,
            });
        }
        Header::parse(buf.bytes()).ok_or(DmError::Reply(op))
    }

    /// Runs a command whose reply size is unknown, growing the buffer while
    /// the kernel reports DM_BUFFER_FULL_FLAG.
    fn ioctl_growing(
        &self,
        nr: u8,
        op: &'static str,
        who: &str,
        build: impl Fn(usize) -> Result<Buf, DmError>,
    ) -> Result<(Buf, Header), DmError> {
        let mut size = INITIAL_BUF;
        loop {
            let mut buf = build(size)?;
            let hdr = self.ioctl(nr, op, who, &mut buf)?;
            if hdr.flags & flag::BUFFER_FULL == 0 {
                return Ok((buf, hdr));
            }
            if size >= MAX_BUF {
                return Err(DmError::Reply(op));
            }
            size *= 2;
        }
    }

    /// All dm devices: (name, major, minor). DM_LIST_DEVICES.
    pub fn list(&self) -> Result<Vec<(String, u32, u32)>, DmError> {
        const OP: &str = "DM_LIST_DEVICES";
        let (buf, hdr) = self.ioctl_growing(cmd::LIST_DEVICES, OP, "the control node", |size| {
            simple_request(None, 0, size)
        })?;
        let b = buf.bytes();
        let (start, end) = hdr.payload(b.len()).ok_or(DmError::Reply(OP))?;
        parse_name_list(b, start, end).ok_or(DmError::Reply(OP))
    }

    /// DM_DEV_STATUS.
    pub fn info(&self, dev: Dev) -> Result<DeviceInfo, DmError> {
        let mut buf = simple_request(Some(dev), 0, HEADER_SIZE)?;
        let hdr = self.ioctl(cmd::DEV_STATUS, "DM_DEV_STATUS", &dev.to_string(), &mut buf)?;
        Ok(hdr.info())
    }

    /// DM_TABLE_STATUS without flags: STATUSTYPE_INFO lines of the live table.
    pub fn status(&self, dev: Dev) -> Result<Vec<Target>, DmError> {
        self.table_status(dev, 0, "DM_TABLE_STATUS")
    }

    /// DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG: the live table lines.
    pub fn table(&self, dev: Dev) -> Result<Vec<Target>, DmError> {
        self.table_status(dev, flag::STATUS_TABLE, "DM_TABLE_STATUS(table)")
    }

    fn table_status(&self, dev: Dev, flags: u32, op: &'static str) -> Result<Vec<Target>, DmError> {
        let (buf, hdr) = self.ioctl_growing(cmd::TABLE_STATUS, op, &dev.to_string(), |size| {
            simple_request(Some(dev), flags, size)
        })?;
        if hdr.target_count == 0 {
            return Ok(Vec::new());
        }
        let b = buf.bytes();
        let (start, end) = hdr.payload(b.len()).ok_or(DmError::Reply(op))?;
        parse_targets(b, start, end, hdr.target_count, NextFrom::DataStart)
            .ok_or(DmError::Reply(op))
    }

    /// DM_DEV_CREATE (with `uuid`, if given) + DM_TABLE_LOAD +
    /// DM_DEV_SUSPEND(resume); on failure after create, removes the device
    /// again. Also makes sure `/dev/mapper/<name>` exists (we run without
    /// udev). Returns the new device's info.
    pub fn create(
        &self,
        name: &str,
        uuid: Option<&str>,
        targets: &[Target],
    ) -> Result<DeviceInfo, DmError> {
        check_name(name)?;
        if let Some(u) = uuid {
            if u.len() >= DM_UUID_LEN || u.contains('\0') {
                return Err(DmError::BadName(u.to_owned()));
            }
        }
        // Encode the table first so that bad input fails before anything exists.
        let mut load = table_load_request(Dev::Name(name), targets)?;

        let mut buf = simple_request(Some(Dev::Name(name)), 0, HEADER_SIZE)?;
        if let Some(u) = uuid {
            buf.bytes_mut()[OFF_UUID..OFF_UUID + u.len()].copy_from_slice(u.as_bytes());
        }
        self.ioctl(cmd::DEV_CREATE, "DM_DEV_CREATE", name, &mut buf)?;

        let result = (|| {
            self.ioctl(cmd::TABLE_LOAD, "DM_TABLE_LOAD", name, &mut load)?;
            // Resume: DM_DEV_SUSPEND without DM_SUSPEND_FLAG swaps in the table.
            let mut buf = simple_request(Some(Dev::Name(name)), 0, HEADER_SIZE)?;
            let hdr = self.ioctl(cmd::DEV_SUSPEND, "DM_DEV_SUSPEND(resume)", name, &mut buf)?;
            let info = hdr.info();
            ensure_node(name, info.major, info.minor).map_err(|source| DmError::Ioctl {
                op: "mknod /dev/mapper node",
                name: name.to_owned(),
                source,
            })?;
            Ok(info)
        })();

        if result.is_err() {
            self.rollback_create(name);
        }
        result
    }

    /// Best-effort removal of a half-created device.
    fn rollback_create(&self, name: &str) {
        for attempt in 0..5 {
            let Ok(mut buf) = simple_request(Some(Dev::Name(name)), 0, HEADER_SIZE) else {
                return;
            };
            match self.ioctl(cmd::DEV_REMOVE, "DM_DEV_REMOVE", name, &mut buf) {
                Err(DmError::Ioctl { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY) && attempt < 4 =>
                {
                    // Something (e.g. a udev probe) briefly holds it open.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => break,
            }
        }
        let _ = remove_node(name);
    }

    /// DM_DEV_REMOVE. Also unlinks `/dev/mapper/<name>` if it is a block
    /// device node.
    pub fn remove(&self, dev: Dev) -> Result<(), DmError> {
        let who = dev.to_string();
        let mut buf = simple_request(Some(dev), 0, HEADER_SIZE)?;
        let hdr = self.ioctl(cmd::DEV_REMOVE, "DM_DEV_REMOVE", &who, &mut buf)?;
        // The kernel fills in the name in the reply, also for Dev::Number.
        let name = match dev {
            Dev::Name(n) => n.to_owned(),
            Dev::Number(..) => hdr.name,
        };
        if !name.is_empty() {
            remove_node(&name).map_err(|source| DmError::Ioctl {
                op: "unlink /dev/mapper node",
                name: name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// DM_TARGET_MSG to the target at sector 0; returns the reply string if
    /// the kernel set DM_DATA_OUT_FLAG, else None.
    ///
    /// If the reply does not fit, the message is sent again with a bigger
    /// buffer (as libdevmapper does), so it may be delivered more than once;
    /// this only happens for messages that produce output.
    pub fn message(&self, dev: Dev, msg: &str) -> Result<Option<String>, DmError> {
        const OP: &str = "DM_TARGET_MSG";
        let (buf, hdr) = self.ioctl_growing(cmd::TARGET_MSG, OP, &dev.to_string(), |size| {
            message_request(dev, msg, size)
        })?;
        parse_message_reply(buf.bytes(), &hdr).ok_or(DmError::Reply(OP))
    }
}

fn parse_message_reply(b: &[u8], hdr: &Header) -> Option<Option<String>> {
    if hdr.flags & flag::DATA_OUT == 0 {
        return Some(None);
    }
    let (start, end) = hdr.payload(b.len())?;
    let s = get_cstr(b, start, end)?;
    Some(Some(String::from_utf8_lossy(s).into_owned()))
}

// ---------------------------------------------------------------------------
// /dev/mapper nodes
// ---------------------------------------------------------------------------

/// A name usable as a single path component under /dev/mapper.
fn node_path(dir: &Path, name: &str) -> io::Result<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid /dev/mapper node name"),
        ));
    }
    Ok(dir.join(name))
}

fn is_node_for(path: &Path, major: u32, minor: u32) -> bool {
    // Follows symlinks: udev (when present) makes /dev/mapper/<name> a link to ../dm-N.
    std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device() && m.rdev() == user_dev_t(major, minor))
        .unwrap_or(false)
}

/// Makes sure `/dev/mapper/<name>` is a block device node (or a symlink to
/// one) for `major:minor`, creating it with mode 0600 if needed and replacing
/// a stale node or dangling/mismatched symlink. `/dev/dm-N` itself is created
/// by devtmpfs.
pub fn ensure_node(name: &str, major: u32, minor: u32) -> io::Result<()> {
    ensure_node_in(Path::new(MAPPER_DIR), name, major, minor)
}

fn ensure_node_in(dir: &Path, name: &str, major: u32, minor: u32) -> io::Result<()> {
    let path = node_path(dir, name)?;
    if is_node_for(&path, major, minor) {
        return Ok(());
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_block_device() || m.file_type().is_symlink() => {
            std::fs::remove_file(&path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a block device", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let cpath = CString::new(path.as_os_str().as_bytes())?;
    let dev: libc::dev_t = user_dev_t(major, minor);
    // SAFETY: `cpath` is a valid NUL-terminated string that outlives the call;
    // mknod only reads it.
    let r = unsafe { libc::mknod(cpath.as_ptr(), libc::S_IFBLK | 0o600, dev) };
    if r != 0 {
        let err = io::Error::last_os_error();
        // Lost a race with someone (udev) creating the same node: fine if it is right.
        if err.raw_os_error() == Some(libc::EEXIST) && is_node_for(&path, major, minor) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// Removes `/dev/mapper/<name>` if it is a block device node (symlinks and
/// other files are left alone); a missing node is not an error.
pub fn remove_node(name: &str) -> io::Result<()> {
    remove_node_in(Path::new(MAPPER_DIR), name)
}

fn remove_node_in(dir: &Path, name: &str) -> io::Result<()> {
    let path = node_path(dir, name)?;
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_block_device() => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_node_falls_back_to_android_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("mapper-control");
        let android = dir.path().join("device-mapper");
        std::fs::write(&android, b"x").unwrap();
        // The first path is missing: the second (Android's) is opened.
        assert!(super::open_first(&[&missing, &android]).is_ok());
        // Neither exists: the first one's error.
        let err = super::open_first(&[&missing, &dir.path().join("nope")]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    use super::*;

    #[test]
    fn ioctl_numbers() {
        assert_eq!(dm_ioctl_nr(cmd::VERSION), 0xc138_fd00);
        assert_eq!(dm_ioctl_nr(cmd::LIST_DEVICES), 0xc138_fd02);
        assert_eq!(dm_ioctl_nr(cmd::TABLE_STATUS), 0xc138_fd0c);
        assert_eq!(dm_ioctl_nr(cmd::TARGET_MSG), 0xc138_fd0e);
    }

    /// Cross-checks the hand-written offsets against a repr(C) mirror of
    /// `struct dm_ioctl` / `struct dm_target_spec`.
    #[test]
    fn layout_matches_c() {
        #[allow(dead_code)]
        #[repr(C)]
        struct DmIoctl {
            version: [u32; 3],
            data_size: u32,
            data_start: u32,
            target_count: u32,
            open_count: i32,
            flags: u32,
            event_nr: u32,
            padding: u32,
            dev: u64,
            name: [u8; 128],
            uuid: [u8; 129],
            data: [u8; 7],
        }
        #[allow(dead_code)]
        #[repr(C)]
        struct DmTargetSpec {
            sector_start: u64,
            length: u64,
            status: i32,
            next: u32,
            target_type: [u8; 16],
        }
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<DmIoctl>(), HEADER_SIZE);
        assert_eq!(offset_of!(DmIoctl, version), OFF_VERSION);
        assert_eq!(offset_of!(DmIoctl, data_size), OFF_DATA_SIZE);
        assert_eq!(offset_of!(DmIoctl, data_start), OFF_DATA_START);
        assert_eq!(offset_of!(DmIoctl, target_count), OFF_TARGET_COUNT);
        assert_eq!(offset_of!(DmIoctl, open_count), OFF_OPEN_COUNT);
        assert_eq!(offset_of!(DmIoctl, flags), OFF_FLAGS);
        assert_eq!(offset_of!(DmIoctl, dev), OFF_DEV);
        assert_eq!(offset_of!(DmIoctl, name), OFF_NAME);
        assert_eq!(offset_of!(DmIoctl, uuid), OFF_UUID);
        assert_eq!(offset_of!(DmIoctl, data), HEADER_MIN);
        assert_eq!(size_of::<DmTargetSpec>(), SPEC_SIZE);
        assert_eq!(offset_of!(DmTargetSpec, next), SPEC_OFF_NEXT);
        assert_eq!(offset_of!(DmTargetSpec, target_type), SPEC_OFF_TYPE);
    }

    #[test]
    fn dev_t_round_trip() {
        for &(ma, mi) in &[
            (253, 0),
            (253, 255),
            (253, 256),
            (259, 1_048_575),
            (4095, 12345),
            (8, 17),
        ] {
            let enc = encode_dev(ma, mi);
            assert_eq!(decode_dev(enc), (ma, mi), "{ma}:{mi}");
        }
        assert_eq!(encode_dev(253, 3), 0xfd03);
        assert_eq!(
            encode_dev(253, 0x123),
            (0x23 | (253 << 8) | (0x100 << 12)) as u64
        );
        // glibc/musl makedev for small numbers matches the old encoding.
        assert_eq!(user_dev_t(253, 3), 0xfd03);
        assert_eq!(
            user_dev_t(0x1234, 0x567),
            (0x1000u64 << 32) | (0x234 << 8) | (0x500 << 12) | 0x67
        );
    }

    fn sample_targets() -> Vec<Target> {
        vec![
            Target {
                start: 0,
                length: 2048,
                target_type: "linear".into(),
                params: "/dev/vda 0".into(),
            },
            Target {
                start: 2048,
                length: 4096,
                target_type: "bow".into(),
                params: "/dev/vdb 4096 extra args".into(),
            },
            Target {
                start: 6144,
                length: 1,
                target_type: "zero".into(),
                params: String::new(),
            },
        ]
    }

    #[test]
    fn table_load_round_trip() {
        let targets = sample_targets();
        let buf = table_load_request(Dev::Name("bow0"), &targets).unwrap();
        let b = buf.bytes();
        let hdr = Header::parse(b).unwrap();
        assert_eq!(get_u32(b, 0), Some(4));
        assert_eq!(hdr.data_start as usize, HEADER_SIZE);
        assert_eq!(hdr.data_size as usize % 8, 0);
        assert!(hdr.data_size as usize <= b.len());
        assert_eq!(hdr.target_count, 3);
        assert_eq!(hdr.name, "bow0");
        assert_eq!(hdr.dev, 0);
        // Every spec is 8-byte aligned and `next` is relative to the current spec.
        assert_eq!(get_u32(b, HEADER_SIZE + SPEC_OFF_NEXT), Some(56)); // 40 + 11 -> 56
        let (start, end) = hdr.payload(b.len()).unwrap();
        let parsed = parse_targets(b, start, end, hdr.target_count, NextFrom::CurrentSpec).unwrap();
        assert_eq!(parsed, targets);
        // Reading with the wrong convention does not panic.
        let _ = parse_targets(b, start, end, hdr.target_count, NextFrom::DataStart);
    }

    #[test]
    fn request_by_number_and_bad_names() {
        let buf =
            simple_request(Some(Dev::Number(253, 7)), flag::STATUS_TABLE, INITIAL_BUF).unwrap();
        let hdr = Header::parse(buf.bytes()).unwrap();
        assert_eq!(decode_dev(hdr.dev), (253, 7));
        assert_eq!(hdr.name, "");
        assert_eq!(hdr.flags, flag::STATUS_TABLE);
        assert_eq!(hdr.data_size as usize, INITIAL_BUF);

        let long = "x".repeat(128);
        assert!(matches!(
            simple_request(Some(Dev::Name(&long)), 0, 0),
            Err(DmError::BadName(_))
        ));
        assert!(simple_request(Some(Dev::Name(&long[..127])), 0, 0).is_ok());
        assert!(matches!(
            simple_request(Some(Dev::Name("a\0b")), 0, 0),
            Err(DmError::BadName(_))
        ));
        let mut t = sample_targets();
        t[0].target_type = "sixteen-chars-xx".into();
        assert!(matches!(
            table_load_request(Dev::Name("x"), &t),
            Err(DmError::BadName(_))
        ));
        assert!(matches!(
            message_request(Dev::Name("x"), "a\0", 0),
            Err(DmError::BadName(_))
        ));
    }

    /// Builds a reply buffer the way retrieve_status() does.
    fn status_reply(targets: &[Target]) -> Buf {
        let mut buf = Buf::zeroed(4096);
        let b = buf.bytes_mut();
        let mut off = HEADER_SIZE;
        let mut used = 0;
        for t in targets {
            put_u64(b, off, t.start);
            put_u64(b, off + 8, t.length);
            b[off + 24..off + 24 + t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
            let p = off + SPEC_SIZE;
            b[p..p + t.params.len()].copy_from_slice(t.params.as_bytes());
            used = p + t.params.len() + 1;
            let next = align8(used);
            put_u32(b, off + SPEC_OFF_NEXT, (next - HEADER_SIZE) as u32);
            off = next;
        }
        put_u32(b, OFF_DATA_SIZE, used as u32);
        put_u32(b, OFF_DATA_START, HEADER_SIZE as u32);
        put_u32(b, OFF_TARGET_COUNT, targets.len() as u32);
        buf
    }

    #[test]
    fn status_reply_parse() {
        let targets = sample_targets();
        let buf = status_reply(&targets);
        let b = buf.bytes();
        let hdr = Header::parse(b).unwrap();
        let (start, end) = hdr.payload(b.len()).unwrap();
        assert_eq!(
            parse_targets(b, start, end, 3, NextFrom::DataStart).unwrap(),
            targets
        );
        // Truncated replies / too many targets are errors, not panics.
        for cut in [start, start + 10, start + 40, end - 1] {
            assert!(
                parse_targets(b, start, cut, 3, NextFrom::DataStart).is_none(),
                "cut {cut}"
            );
        }
        assert!(parse_targets(b, start, end, 4, NextFrom::DataStart).is_none());
        assert!(parse_targets(b, start, b.len() + 100, 3, NextFrom::DataStart).is_none());
    }

    #[test]
    fn status_reply_malformed_next() {
        let targets = sample_targets();
        let mut buf = status_reply(&targets);
        // Point the first spec's `next` back at itself: must not loop or panic.
        put_u32(buf.bytes_mut(), HEADER_SIZE + SPEC_OFF_NEXT, 0);
        let b = buf.bytes();
        let hdr = Header::parse(b).unwrap();
        let (start, end) = hdr.payload(b.len()).unwrap();
        assert!(parse_targets(b, start, end, 3, NextFrom::DataStart).is_none());
        put_u32(buf.bytes_mut(), HEADER_SIZE + SPEC_OFF_NEXT, u32::MAX);
        let b = buf.bytes();
        assert!(parse_targets(b, start, end, 3, NextFrom::DataStart).is_none());
    }

    /// Builds a DM_LIST_DEVICES reply the way kernel 6.x list_devices() does
    /// (including the event_nr/flags words after each name).
    fn name_list_reply(devs: &[(&str, u32, u32)]) -> Buf {
        let mut buf = Buf::zeroed(4096);
        let b = buf.bytes_mut();
        let mut off = HEADER_SIZE;
        let mut prev: Option<usize> = None;
        for (name, ma, mi) in devs {
            if let Some(p) = prev {
                put_u32(b, p + 8, (off - p) as u32);
            }
            put_u64(b, off, encode_dev(*ma, *mi));
            b[off + 12..off + 12 + name.len()].copy_from_slice(name.as_bytes());
            let ev = align8(off + 12 + name.len() + 1);
            put_u32(b, ev, 42); // event_nr
            put_u32(b, ev + 4, 0); // flags
            prev = Some(off);
            off = ev + 8;
        }
        put_u32(b, OFF_DATA_SIZE, off as u32);
        put_u32(b, OFF_DATA_START, HEADER_SIZE as u32);
        buf
    }

    #[test]
    fn name_list_parse() {
        let devs = [
            ("bow0", 253, 0),
            ("a-much-longer-device-name", 253, 1),
            ("x", 253, 300),
        ];
        let buf = name_list_reply(&devs);
        let b = buf.bytes();
        let hdr = Header::parse(b).unwrap();
        let (start, end) = hdr.payload(b.len()).unwrap();
        let got = parse_name_list(b, start, end).unwrap();
        let want: Vec<_> = devs
            .iter()
            .map(|(n, a, i)| (n.to_string(), *a, *i))
            .collect();
        assert_eq!(got, want);

        // Empty list: data_size == data_start.
        let empty = name_list_reply(&[]);
        let hdr = Header::parse(empty.bytes()).unwrap();
        let (s, e) = hdr.payload(empty.bytes().len()).unwrap();
        assert_eq!((s, e), (HEADER_SIZE, HEADER_SIZE));
        assert_eq!(parse_name_list(empty.bytes(), s, e).unwrap(), vec![]);

        // Truncated: the name's NUL is cut off.
        assert!(parse_name_list(b, start, start + 14).is_none());
        // A `next` that points into the current entry.
        let mut bad = name_list_reply(&devs);
        put_u32(bad.bytes_mut(), HEADER_SIZE + 8, 4);
        assert!(parse_name_list(bad.bytes(), start, end).is_none());
        // A `next` past the end.
        put_u32(bad.bytes_mut(), HEADER_SIZE + 8, 100_000);
        assert!(parse_name_list(bad.bytes(), start, end).is_none());
    }

    #[test]
    fn header_info_and_payload_checks() {
        let mut buf = Buf::zeroed(HEADER_SIZE);
        let b = buf.bytes_mut();
        put_u32(b, OFF_DATA_SIZE, HEADER_SIZE as u32);
        put_u32(b, OFF_DATA_START, HEADER_SIZE as u32);
        put_u32(b, OFF_TARGET_COUNT, 1);
        put_u32(b, OFF_OPEN_COUNT, 2);
        put_u32(
            b,
            OFF_FLAGS,
            flag::SUSPEND | flag::ACTIVE_PRESENT | flag::INACTIVE_PRESENT,
        );
        put_u64(b, OFF_DEV, encode_dev(253, 4));
        b[OFF_NAME..OFF_NAME + 4].copy_from_slice(b"bow0");
        // A uuid that fills the whole field without a NUL must not over-read.
        b[OFF_UUID..OFF_UUID + DM_UUID_LEN].fill(b'u');
        let hdr = Header::parse(buf.bytes()).unwrap();
        let info = hdr.info();
        assert_eq!(
            info,
            DeviceInfo {
                name: "bow0".into(),
                uuid: "u".repeat(DM_UUID_LEN),
                major: 253,
                minor: 4,
                open_count: 2,
                target_count: 1,
                suspended: true,
                read_only: false,
                live_table: true,
            }
        );
        assert!(Header::parse(&buf.bytes()[..HEADER_SIZE - 8]).is_none());
        let mut h = hdr;
        h.data_size = HEADER_SIZE as u32 + 8;
        assert!(h.payload(HEADER_SIZE).is_none());
        h.data_size = 100;
        assert!(h.payload(HEADER_SIZE).is_none());
    }

    #[test]
    fn message_request_and_reply() {
        let buf = message_request(Dev::Name("bow0"), "state 2", INITIAL_BUF).unwrap();
        let b = buf.bytes();
        let hdr = Header::parse(b).unwrap();
        assert_eq!(hdr.data_size as usize, INITIAL_BUF);
        assert_eq!(get_u64(b, HEADER_SIZE), Some(0));
        assert_eq!(get_cstr(b, HEADER_SIZE + 8, b.len()), Some(&b"state 2"[..]));
        // No DM_DATA_OUT_FLAG: no reply string.
        assert_eq!(parse_message_reply(b, &hdr), Some(None));

        let mut reply = Buf::zeroed(1024);
        let r = reply.bytes_mut();
        put_u32(r, OFF_FLAGS, flag::DATA_OUT);
        put_u32(r, OFF_DATA_START, HEADER_SIZE as u32);
        put_u32(r, OFF_DATA_SIZE, (HEADER_SIZE + 6) as u32);
        r[HEADER_SIZE..HEADER_SIZE + 5].copy_from_slice(b"hello");
        let hdr = Header::parse(reply.bytes()).unwrap();
        assert_eq!(
            parse_message_reply(reply.bytes(), &hdr),
            Some(Some("hello".into()))
        );
        // Missing NUL within data_size.
        let mut hdr = hdr;
        hdr.data_size = (HEADER_SIZE + 5) as u32;
        assert_eq!(parse_message_reply(reply.bytes(), &hdr), None);
    }

    #[test]
    fn node_names_are_single_components() {
        let dir = Path::new("/nonexistent-dm-test");
        for bad in ["", ".", "..", "a/b", "../etc/passwd"] {
            assert!(node_path(dir, bad).is_err(), "{bad:?}");
            assert!(remove_node_in(dir, bad).is_err(), "{bad:?}");
        }
        // Missing node: not an error.
        assert!(remove_node_in(dir, "bow0").is_ok());
    }

    #[test]
    fn remove_node_leaves_non_devices_alone() {
        let dir = std::env::temp_dir().join(format!("dm-rs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("plain");
        std::fs::write(&f, b"x").unwrap();
        remove_node_in(&dir, "plain").unwrap();
        assert!(f.exists());
        // ensure_node refuses to replace a regular file.
        assert!(ensure_node_in(&dir, "plain", 253, 0).is_err());
        assert!(f.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Needs CAP_MKNOD (root outside a restrictive container).
    #[test]
    #[ignore]
    fn node_create_and_remove() {
        let dir = std::env::temp_dir().join(format!("dm-rs-node-{}", std::process::id()));
        ensure_node_in(&dir, "bow-test", 253, 300).unwrap();
        assert!(is_node_for(&dir.join("bow-test"), 253, 300));
        // Idempotent, and replaces a stale node.
        ensure_node_in(&dir, "bow-test", 253, 300).unwrap();
        ensure_node_in(&dir, "bow-test", 253, 301).unwrap();
        assert!(is_node_for(&dir.join("bow-test"), 253, 301));
        remove_node_in(&dir, "bow-test").unwrap();
        assert!(!dir.join("bow-test").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Needs root and device-mapper: `cargo test -- --ignored dm_live`.
    #[test]
    #[ignore]
    fn dm_live_list() {
        let ctl = Control::open().unwrap();
        let v = ctl.version().unwrap();
        assert_eq!(v[0], 4);
        for (name, ma, mi) in ctl.list().unwrap() {
            let info = ctl.info(Dev::Name(&name)).unwrap();
            assert_eq!((info.major, info.minor), (ma, mi));
            let by_number = ctl.info(Dev::Number(ma, mi)).unwrap();
            assert_eq!(by_number.name, name);
            eprintln!("{name} {ma}:{mi} {info:?}");
            for t in ctl.table(Dev::Name(&name)).unwrap() {
                eprintln!(
                    "  table:  {} {} {} {}",
                    t.start, t.length, t.target_type, t.params
                );
            }
            for t in ctl.status(Dev::Name(&name)).unwrap() {
                eprintln!(
                    "  status: {} {} {} {}",
                    t.start, t.length, t.target_type, t.params
                );
            }
        }
    }

    /// Creates, inspects and removes a scratch device built from `error`
    /// targets (always built into dm-mod), plus a `linear` one onto the block
    /// device named by $DM_TEST_DEV if set. Needs root and device-mapper.
    #[test]
    #[ignore]
    fn dm_live_create_remove() {
        let ctl = Control::open().unwrap();
        let name = format!("bowctl-dmtest-{}", std::process::id());
        let mut targets = vec![
            Target {
                start: 0,
                length: 1024,
                target_type: "error".into(),
                params: String::new(),
            },
            Target {
                start: 1024,
                length: 1024,
                target_type: "error".into(),
                params: String::new(),
            },
        ];
        if let Ok(dev) = std::env::var("DM_TEST_DEV") {
            let md = std::fs::metadata(&dev).unwrap();
            let rdev = md.rdev();
            let (ma, mi) = (
                ((rdev >> 8) & 0xfff) as u32,
                ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32,
            );
            targets.push(Target {
                start: 2048,
                length: 8,
                target_type: "linear".into(),
                params: format!("{ma}:{mi} 16"),
            });
        }
        let info = ctl.create(&name, None, &targets).unwrap();
        assert_eq!(info.name, name);
        assert!(info.live_table && !info.suspended);
        assert_eq!(info.target_count as usize, targets.len());
        assert!(is_node_for(
            &Path::new(MAPPER_DIR).join(&name),
            info.major,
            info.minor
        ));
        assert!(ctl.list().unwrap().iter().any(|(n, ..)| *n == name));
        assert_eq!(ctl.table(Dev::Name(&name)).unwrap(), targets);
        let status = ctl.status(Dev::Number(info.major, info.minor)).unwrap();
        assert_eq!(status.len(), targets.len());
        assert_eq!(status[0].target_type, "error");
        // DM core stats messages produce output.
        let out = ctl.message(Dev::Name(&name), "@stats_list").unwrap();
        assert!(out.is_some());
        // Creating the same name again fails and must not remove the original.
        assert!(ctl.create(&name, None, &targets).is_err());
        assert!(ctl.info(Dev::Name(&name)).is_ok());
        ctl.remove(Dev::Number(info.major, info.minor)).unwrap();
        assert!(!Path::new(MAPPER_DIR).join(&name).exists());
        assert!(ctl.info(Dev::Name(&name)).is_err());
        // A bad table rolls back the created device.
        let bad = vec![Target {
            start: 0,
            length: 8,
            target_type: "no-such-target".into(),
            params: String::new(),
        }];
        assert!(ctl.create(&name, None, &bad).is_err());
        assert!(ctl.info(Dev::Name(&name)).is_err());
    }
}
