//! The target's states, the inputs that move between them, and the status line.
//!
//! | value | name       | meaning                                              |
//! |-------|------------|------------------------------------------------------|
//! | 0     | trim       | discards are recorded as free space                  |
//! | 1     | checkpoint | first overwrites are backed up into free space       |
//! | 2     | committed  | block 0 is back in place; the target is a bare remap |
//!
//! The state only moves forward by one step. Anything else is refused with
//! EINVAL and changes nothing.

use core::fmt;

/// The state of a bow target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    /// 0: recording free space.
    Trim = 0,
    /// 1: backing up first overwrites.
    Checkpoint = 1,
    /// 2: pass-through.
    Committed = 2,
}

impl State {
    /// The number shown in sysfs.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The name shown in `dmsetup status`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Trim => "trim",
            Self::Checkpoint => "checkpoint",
            Self::Committed => "committed",
        }
    }

    /// The only state this one may move to.
    pub const fn next(self) -> Option<Self> {
        match self {
            Self::Trim => Some(Self::Checkpoint),
            Self::Checkpoint => Some(Self::Committed),
            Self::Committed => None,
        }
    }
}

/// Why a state change was refused. All of them mean EINVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// The text is not `0`, `1` or `2` (optionally followed by a newline).
    Malformed,
    /// The requested state is the current one.
    AlreadyThere,
    /// The requested state is not the next one.
    NotNext,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "state must be written as 1 or 2",
            Self::AlreadyThere => "the target is already in that state",
            Self::NotNext => "the state can only move forward by one (0 to 1, then 1 to 2)",
        })
    }
}

fn parse_number(text: &[u8]) -> Option<State> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    match text {
        b"0" => Some(State::Trim),
        b"1" => Some(State::Checkpoint),
        b"2" => Some(State::Committed),
        _ => None,
    }
}

/// Decides a write to the sysfs `state` file while in `current`.
pub fn state_write(text: &[u8], current: State) -> Result<State, StateError> {
    let want = parse_number(text).ok_or(StateError::Malformed)?;
    transition(current, want)
}

/// Decides a move from `current` to `want`.
pub fn transition(current: State, want: State) -> Result<State, StateError> {
    if want == current {
        Err(StateError::AlreadyThere)
    } else if current.next() == Some(want) {
        Ok(want)
    } else {
        Err(StateError::NotNext)
    }
}

/// A `dmsetup message` the target understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `checkpoint`: the same as writing 1 to `state`.
    Checkpoint,
    /// `commit`: the same as writing 2 to `state`.
    Commit,
    /// `free_map`: prints the ranges that were free at checkpoint (or are free
    /// now, in state 0) as `start+length` pairs in blocks, so tests can
    /// compare exactly the blocks a restore must bring back.
    FreeMap,
}

impl Message {
    /// Parses the message words.
    pub fn parse<'a, I: IntoIterator<Item = &'a [u8]>>(words: I) -> Option<Self> {
        let mut it = words.into_iter();
        let m = match it.next()? {
            b"checkpoint" => Self::Checkpoint,
            b"commit" => Self::Commit,
            b"free_map" => Self::FreeMap,
            _ => return None,
        };
        it.next().is_none().then_some(m)
    }

    /// The state the message asks for, if it is a state change.
    pub const fn target(self) -> Option<State> {
        match self {
            Self::Checkpoint => Some(State::Checkpoint),
            Self::Commit => Some(State::Committed),
            Self::FreeMap => None,
        }
    }
}

/// The counters shown by `dmsetup status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Recorded free space not yet used for backups, in bytes.
    pub free_bytes: u64,
    /// Bytes saved as backups.
    pub backed_up_bytes: u64,
    /// Sequence number of the current log block.
    pub log_sequence: u32,
    /// Entries in the current log block.
    pub log_entries: u32,
    /// First-overwrite copies made.
    pub copies: u64,
    /// Bios failed with ENOSPC.
    pub enospc: u64,
    /// Log block writes issued.
    pub log_writes: u64,
    /// Bytes the log wrote in state 1: each log write (only the part of
    /// the block in use, see [`crate::format::log_write_len`]) and each full
    /// log block saved when the next one starts.
    pub log_bytes: u64,
    /// Bios `map` could not finish at once and held for later: during a
    /// state change, for a backup, or for memory only a sleeping
    /// allocation gives. None of them fails for it.
    pub held: u64,
    /// Free-at-checkpoint bytes claimed (logged to be zeroed by a restore)
    /// before being written.
    pub claimed_bytes: u64,
}

/// The INFO status line: space-separated `key=value` pairs.
pub struct StatusInfo {
    /// Current state.
    pub state: State,
    /// Block size in bytes.
    pub block_size: u32,
    /// The counters.
    pub counters: Counters,
}

impl fmt::Display for StatusInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "state={} block_size={} free={} backed_up={} log_seq={} log_entries={} copies={} enospc={} log_writes={} log_bytes={} held={} claimed={}",
            self.state.name(),
            self.block_size,
            c.free_bytes,
            c.backed_up_bytes,
            c.log_sequence,
            c.log_entries,
            c.copies,
            c.enospc,
            c.log_writes,
            c.log_bytes,
            c.held,
            c.claimed_bytes
        )
    }
}

/// The IMA status, in dm-ima's grammar: `key=value` pairs separated by `,`,
/// the target's entry ended by `;`.
pub struct StatusIma<'a>(pub &'a StatusInfo);

impl fmt::Display for StatusIma<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "target_name=bow,target_version=1.0.0,state={},block_size={};",
            s.state.number(),
            s.block_size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_by_one() {
        use State::*;
        assert_eq!(state_write(b"1", Trim), Ok(Checkpoint));
        assert_eq!(state_write(b"1\n", Trim), Ok(Checkpoint));
        assert_eq!(state_write(b"2\n", Checkpoint), Ok(Committed));
        assert_eq!(state_write(b"2", Trim), Err(StateError::NotNext));
        assert_eq!(state_write(b"0", Checkpoint), Err(StateError::NotNext));
        assert_eq!(state_write(b"1", Checkpoint), Err(StateError::AlreadyThere));
        assert_eq!(state_write(b"0", Trim), Err(StateError::AlreadyThere));
        assert_eq!(state_write(b"2", Committed), Err(StateError::AlreadyThere));
        for bad in [
            &b""[..],
            b"\n",
            b"3",
            b"01",
            b" 1",
            b"1 ",
            b"1\n\n",
            b"one",
            b"-1",
            b"1\0",
        ] {
            assert_eq!(
                state_write(bad, Trim),
                Err(StateError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages() {
        let w = |s: &'static str| Message::parse(s.split(' ').map(str::as_bytes));
        assert_eq!(w("checkpoint"), Some(Message::Checkpoint));
        assert_eq!(w("commit"), Some(Message::Commit));
        assert_eq!(w("commit now"), None);
        assert_eq!(w("free_map"), Some(Message::FreeMap));
        assert_eq!(Message::Commit.target(), Some(State::Committed));
        assert_eq!(Message::FreeMap.target(), None);
        assert_eq!(w("rollback"), None);
        assert_eq!(Message::parse(core::iter::empty()), None);
    }

    #[test]
    fn status_line() {
        extern crate std;
        use std::string::ToString;
        let s = StatusInfo {
            state: State::Checkpoint,
            block_size: 4096,
            counters: Counters {
                free_bytes: 8192,
                copies: 2,
                ..Default::default()
            },
        };
        assert_eq!(
            s.to_string(),
            "state=checkpoint block_size=4096 free=8192 backed_up=0 log_seq=0 log_entries=0 copies=2 enospc=0 log_writes=0 log_bytes=0 held=0 claimed=0"
        );
        assert_eq!(
            StatusIma(&s).to_string(),
            "target_name=bow,target_version=1.0.0,state=1,block_size=4096;"
        );
    }
}
