//! Who holds an outbox lease, in a form another process can check for liveness.
//!
//! A relay that dies (SIGKILL, power loss of a container) leaves its leases behind; waiting for
//! them to expire delays delivery by a whole lease. A lease owner that names its host, pid and the
//! pid's start time lets a claimer on the same host see at once that the owner is gone: the pid no
//! longer exists, or now belongs to a process that started at another time.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The longest owner string an outbox row stores.
const MAX_OWNER_LEN: usize = 256;

/// The longest host name kept (Linux allows 64 bytes).
const MAX_HOST_LEN: usize = 64;

/// A process that holds outbox leases: host name, pid, the pid's start time and an optional label.
///
/// Its string form is `host:pid:start[:label]` (at most 256 bytes), stored in the outbox's
/// `lease_owner` column. `start` is the process's start time in clock ticks since boot (field 22
/// of `/proc/<pid>/stat` on Linux), `0` where it is unknown.
///
/// ```
/// use chatvault_core::LeaseOwner;
///
/// let me = LeaseOwner::current().with_label("relay");
/// let parsed: LeaseOwner = me.to_string().parse()?;
/// assert_eq!(parsed, me);
/// assert!(!me.is_gone(), "this process is alive");
/// # Ok::<(), chatvault_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner {
    host: String,
    pid: u32,
    start_time: u64,
    label: Option<String>,
}

impl LeaseOwner {
    /// An owner with these parts. A `:` or whitespace in `host` becomes `-` (the string form uses
    /// `:` as its separator) and `host` is cut to 64 bytes.
    pub fn new(host: impl AsRef<str>, pid: u32, start_time: u64) -> LeaseOwner {
        LeaseOwner {
            host: clean_host(host.as_ref()),
            pid,
            start_time,
            label: None,
        }
    }

    /// This process (computed once, then cloned).
    pub fn current() -> LeaseOwner {
        static CURRENT: OnceLock<LeaseOwner> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let pid = std::process::id();
                LeaseOwner::new(host_name(), pid, start_time_of(pid).unwrap_or(0))
            })
            .clone()
    }

    /// The same owner with a label (for diagnostics, e.g. `"relay"`). The label is cut so that
    /// the string form fits in 256 bytes; an empty label means none.
    pub fn with_label(mut self, label: impl Into<String>) -> LeaseOwner {
        let label = label.into();
        let room = MAX_OWNER_LEN.saturating_sub(self.prefix_len() + 1);
        let label = truncate(&label, room);
        self.label = (!label.is_empty()).then(|| label.to_string());
        self
    }

    /// The host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process's start time in clock ticks since boot; `0` when unknown.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The label, if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Whether this owner is known to be dead: it ran on this host, and its pid no longer exists
    /// or belongs to a process with another start time.
    ///
    /// Never `true` for another host, for an owner whose start time is unknown (`0`), or where
    /// processes cannot be inspected (no `/proc`): a live owner must never lose its leases.
    /// Processes in another pid namespace that share this host name (containers on the host's
    /// network) are indistinguishable from dead ones; give such containers their own host names.
    pub fn is_gone(&self) -> bool {
        if self.start_time == 0 || self.host != LeaseOwner::current().host {
            return false;
        }
        if !std::path::Path::new("/proc/self/stat").exists() {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => parse_start_time(&stat).is_some_and(|t| t != self.start_time),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Whether the owner string `owner` names an owner that [`is_gone`](Self::is_gone); `false`
    /// for a string that is not a `LeaseOwner` (an older relay's free-form owner).
    pub fn is_gone_str(owner: &str) -> bool {
        owner.parse::<LeaseOwner>().is_ok_and(|o| o.is_gone())
    }

    fn prefix_len(&self) -> usize {
        self.host.len() + 1 + decimal_len(u64::from(self.pid)) + 1 + decimal_len(self.start_time)
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.start_time)?;
        if let Some(label) = &self.label {
            write!(f, ":{label}")?;
        }
        Ok(())
    }
}

impl FromStr for LeaseOwner {
    type Err = Error;

    /// Parses `host:pid:start[:label]` (the label may contain `:`).
    fn from_str(s: &str) -> Result<LeaseOwner> {
        let bad =
            || Error::invalid_input(format!("not a lease owner (host:pid:start[:label]): {s:?}"));
        let mut parts = s.splitn(4, ':');
        let host = parts.next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let pid = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let start = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if host != clean_host(host) {
            return Err(bad());
        }
        let owner = LeaseOwner::new(host, pid, start);
        Ok(match parts.next() {
            Some(label) => owner.with_label(label),
            None => owner,
        })
    }
}

/// `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `"unknown"`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.trim().is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn clean_host(host: &str) -> String {
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c == ':' || c.is_whitespace() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let host = truncate(&host, MAX_HOST_LEN);
    if host.is_empty() {
        "unknown".to_string()
    } else {
        host.to_string()
    }
}

/// A process's start time (clock ticks since boot) on Linux.
fn start_time_of(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts with field 3 (the state).
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_string_form() {
        let o = LeaseOwner::new("db-1", 42, 12345);
        assert_eq!(o.to_string(), "db-1:42:12345");
        assert_eq!("db-1:42:12345".parse::<LeaseOwner>().unwrap(), o);
        let l = o.clone().with_label("relay:main");
        assert_eq!(l.to_string(), "db-1:42:12345:relay:main");
        assert_eq!(l.to_string().parse::<LeaseOwner>().unwrap(), l);
        assert_eq!(l.label(), Some("relay:main"));
    }

    #[test]
    fn rejects_other_strings() {
        for s in ["relay", "", "h:x:1", "h:1", ":1:2", "h:1:-2", "h h:1:2"] {
            assert!(s.parse::<LeaseOwner>().is_err(), "{s:?}");
            assert!(!LeaseOwner::is_gone_str(s), "{s:?}");
        }
    }

    #[test]
    fn fits_the_column() {
        let o = LeaseOwner::new("h".repeat(300), u32::MAX, u64::MAX).with_label("é".repeat(300));
        assert!(o.host().len() <= MAX_HOST_LEN);
        assert!(
            o.to_string().len() <= MAX_OWNER_LEN,
            "{}",
            o.to_string().len()
        );
        assert_eq!(o.to_string().parse::<LeaseOwner>().unwrap(), o);
        assert_eq!(LeaseOwner::new("a:b c", 1, 2).host(), "a-b-c");
    }

    #[test]
    fn start_time_is_field_22() {
        let stat = "1234 (a) b) (c) S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 987654 23 24";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn liveness() {
        let me = LeaseOwner::current();
        assert!(!me.is_gone());
        assert!(!me.clone().with_label("x").is_gone());
        let other_host = LeaseOwner::new(format!("{}-elsewhere", me.host()), 4_194_305, 1);
        assert!(!other_host.is_gone(), "never gone on another host");
        let unknown_start = LeaseOwner::new(me.host(), 4_194_305, 0);
        assert!(
            !unknown_start.is_gone(),
            "never gone with an unknown start time"
        );
        if me.start_time() != 0 {
            assert!(
                LeaseOwner::new(me.host(), 4_194_305, 1).is_gone(),
                "no such pid"
            );
            let restarted = LeaseOwner::new(me.host(), me.pid(), me.start_time() + 1);
            assert!(restarted.is_gone(), "pid reused by another process");
            assert!(LeaseOwner::is_gone_str(&restarted.to_string()));
        }
    }
}
