//! bowctl's errors and the exit status each one maps to.

use crate::dm::DmError;
use bow_core::restore;

/// Exit statuses, documented in `docs/bowctl.md` and `bowctl --help`.
pub mod exit {
    /// Done.
    pub const SUCCESS: u8 = 0;
    /// Any failure without a code of its own.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The device is already where the command would take it.
    pub const NOTHING_TO_DO: u8 = 3;
    /// The on-disk log is invalid; nothing was written.
    pub const INVALID_LOG: u8 = 4;
    /// An I/O error on the device or image.
    pub const IO: u8 = 5;
    /// The device is mounted, held open exclusively, or has a target above it.
    pub const BUSY: u8 = 6;
    /// Not a bow device, or a bow device in a state the command cannot act on.
    pub const WRONG_STATE: u8 = 7;

    /// Every code and what it means, as the man pages give them.
    pub const ALL: [(u8, &str); 8] = [
        (SUCCESS, "success, including \"nothing to restore\""),
        (FAILURE, "other failure: no such device, image or mountpoint; a record the next boot would not find; the kernel refused a table"),
        (USAGE, "bad usage"),
        (NOTHING_TO_DO, "nothing to do: the device is already where the command would take it"),
        (INVALID_LOG, "the checkpoint log is invalid; nothing was written"),
        (IO, "an I/O error on the device or image"),
        (BUSY, "the device is mounted, held open, has a target above it, or the name is in use"),
        (WRONG_STATE, "not a bow device, or a state the command cannot act on"),
    ];
}

/// Everything that can go wrong in bowctl.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed validation.
    #[error("{path}: {err}; nothing was written")]
    InvalidLog { path: String, err: restore::Error },
    /// Reading or writing the device failed during validation or restore.
    #[error("{path}: {err}")]
    Restore { path: String, err: restore::Error },
    /// A system call failed.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// The device is in use.
    #[error("{0}")]
    Busy(String),
    /// Not a bow device, or the wrong state for the command.
    #[error("{0}")]
    WrongState(String),
    /// Nothing needed doing.
    #[error("{0}")]
    NothingToDo(String),
    /// A named device or mountpoint does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused: doing it would defeat its purpose (a record the next boot
    /// would not find).
    #[error("{0}")]
    Refused(String),
    /// The device-mapper interface failed.
    #[error(transparent)]
    Dm(#[from] DmError),
}

impl Error {
    /// Wraps an OS error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            err: source,
        }
    }

    /// Maps a restore-library error on `path` to the right kind: an invalid
    /// log, or an I/O error with its errno named (`Is a directory`).
    pub fn from_restore(path: &str, e: restore::Error) -> Self {
        let path = path.to_owned();
        if e.is_invalid_log() {
            return Self::InvalidLog { path, err: e };
        }
        match e {
            restore::Error::Io(io) if io.errno != 0 => Self::Io {
                what: format!("{path}: {} failed at byte {}", io.op.as_str(), io.offset),
                err: std::io::Error::from_raw_os_error(io.errno),
            },
            _ => Self::Restore { path, err: e },
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidLog { .. } => exit::INVALID_LOG,
            Self::Restore { .. } | Self::Io { .. } => exit::IO,
            Self::Busy(_) => exit::BUSY,
            Self::WrongState(_) => exit::WRONG_STATE,
            Self::NothingToDo(_) => exit::NOTHING_TO_DO,
            Self::NotFound(_) | Self::Refused(_) => exit::FAILURE,
            Self::Dm(DmError::Ioctl { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) =>
            {
                exit::BUSY
            }
            Self::Dm(_) => exit::FAILURE,
        }
    }
}

/// bowctl's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
