//! Identifiers: workspaces, channels, users, teams, Slack timestamps and message keys.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The longest identifier chatvault accepts (Slack's are about 11 characters).
pub const MAX_ID_LEN: usize = 64;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier: 1 to 64 characters of ASCII letters, digits,
            /// `-`, `_`, `.` or `:`.
            ///
            /// # Errors
            /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the offending value.
            pub fn new(id: impl Into<String>) -> Result<Self> {
                let id = id.into();
                validate_id(&id, $what)?;
                Ok($name(id))
            }

            /// The identifier as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn validate_id(id: &str, what: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_input(format!("{what} id is empty")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid_input(format!(
            "{what} id is {} characters long, more than {MAX_ID_LEN}",
            id.len()
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(Error::invalid_input(format!(
            "{what} id {id:?} contains {c:?}; only ASCII letters, digits, '-', '_', '.' and ':' are allowed"
        )));
    }
    Ok(())
}

string_id!(
    /// A workspace: chatvault's unit of isolation (usually a Slack team id such as `T024BE7LD`).
    WorkspaceId,
    "workspace"
);
string_id!(
    /// A Slack conversation id (`C…` public, `G…` private, `D…` IM).
    ChannelId,
    "channel"
);
string_id!(
    /// A Slack user id (`U…`/`W…`), bots included.
    UserId,
    "user"
);
string_id!(
    /// A Slack team id (an Enterprise Grid workspace inside a chatvault workspace).
    TeamId,
    "team"
);

/// A Slack message timestamp such as `"1512085950.000216"`: kept exactly as Slack writes it, and
/// ordered numerically (so `"9.5"` sorts before `"10.000001"`).
#[derive(Clone)]
pub struct Ts {
    raw: String,
    seconds: u64,
    nanos: u32,
}

impl Ts {
    /// Parses a Slack timestamp: digits, optionally `.` and up to 9 more digits.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the value.
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        let bad = |why: &str| Error::invalid_input(format!("invalid Slack ts {raw:?}: {why}"));
        let (int, frac) = match raw.split_once('.') {
            Some((i, f)) => (i, f),
            None => (raw.as_str(), ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected digits before the '.'"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
            return Err(bad("expected at most 9 digits after the '.'"));
        }
        if int.len() > 12 {
            return Err(bad("seconds out of range"));
        }
        let seconds: u64 = int.parse().map_err(|_| bad("seconds out of range"))?;
        let mut nanos: u32 = 0;
        for (i, b) in frac.bytes().enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        Ok(Ts {
            raw,
            seconds,
            nanos,
        })
    }

    /// The timestamp from a point in time (microsecond precision, as Slack writes it).
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        let micros = t.timestamp_micros().max(0);
        Self::from_micros(micros)
    }

    /// The timestamp `micros` microseconds after the epoch, written `"seconds.micros"`.
    pub fn from_micros(micros: i64) -> Self {
        let micros = micros.max(0) as u64;
        let raw = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        Ts {
            raw,
            seconds: micros / 1_000_000,
            nanos: (micros % 1_000_000) as u32 * 1000,
        }
    }

    /// The timestamp as Slack wrote it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Microseconds since the Unix epoch (what stores index and range-filter on).
    pub fn as_micros(&self) -> i64 {
        (self.seconds as i64)
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(self.nanos / 1000))
    }

    /// The point in time.
    pub fn to_datetime(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.seconds as i64, self.nanos)
            .single()
            .unwrap_or_default()
    }
}

impl PartialEq for Ts {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl Eq for Ts {}

impl std::hash::Hash for Ts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state)
    }
}

impl Ord for Ts {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.seconds, self.nanos)
            .cmp(&(other.seconds, other.nanos))
            .then_with(|| self.raw.cmp(&other.raw))
    }
}
impl PartialOrd for Ts {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
impl fmt::Debug for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ts({:?})", self.raw)
    }
}
impl FromStr for Ts {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ts::new(s)
    }
}
impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}
impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ts::new(s).map_err(serde::de::Error::custom)
    }
}

/// A message's identity: `(workspace, channel, ts)`. Edits keep it; a thread is named by its
/// parent's key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageKey {
    /// The workspace the message belongs to.
    pub workspace: WorkspaceId,
    /// The conversation it was posted in.
    pub channel: ChannelId,
    /// Slack's timestamp for it, unique within the channel.
    pub ts: Ts,
}

impl MessageKey {
    /// A key from its parts.
    pub fn new(workspace: WorkspaceId, channel: ChannelId, ts: Ts) -> Self {
        MessageKey {
            workspace,
            channel,
            ts,
        }
    }

    /// Parses the three parts.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if any part is invalid.
    pub fn parse(workspace: &str, channel: &str, ts: &str) -> Result<Self> {
        Ok(MessageKey {
            workspace: WorkspaceId::new(workspace)?,
            channel: ChannelId::new(channel)?,
            ts: Ts::new(ts)?,
        })
    }

    /// The content store's id for this message: derived from the key alone (`"{channel}:{ts}"`,
    /// unique within the workspace's collection), so recording it never needs a round trip.
    pub fn content_id(&self) -> String {
        format!("{}:{}", self.channel, self.ts)
    }

    /// Inverse of [`content_id`](Self::content_id) within `workspace`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if `id` is not a content id.
    pub fn from_content_id(workspace: &WorkspaceId, id: &str) -> Result<Self> {
        let (channel, ts) = id
            .split_once(':')
            .ok_or_else(|| Error::invalid_input(format!("{id:?} is not a content id")))?;
        Ok(MessageKey {
            workspace: workspace.clone(),
            channel: ChannelId::new(channel)?,
            ts: Ts::new(ts)?,
        })
    }

    /// Checks that the key belongs to `workspace`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming both workspaces.
    pub fn ensure_workspace(&self, workspace: &WorkspaceId) -> Result<()> {
        if &self.workspace == workspace {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "message key {self} belongs to workspace {}, not {workspace}",
                self.workspace
            )))
        }
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.workspace, self.channel, self.ts)
    }
}
impl fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_keeps_text_and_orders_numerically() {
        let a = Ts::new("9.5").unwrap();
        let b = Ts::new("10.000001").unwrap();
        assert!(a < b);
        assert_eq!(b.as_str(), "10.000001");
        assert_eq!(b.as_micros(), 10_000_001);
        let c = Ts::new("1512085950.000216").unwrap();
        assert_eq!(c.as_micros(), 1_512_085_950_000_216);
        assert_eq!(Ts::from_micros(c.as_micros()), c);
        // numerically equal, textually different: distinct but adjacent
        let d = Ts::new("9.50").unwrap();
        assert_ne!(a, d);
        assert_eq!(a.as_micros(), d.as_micros());
    }

    #[test]
    fn bad_values_are_rejected_with_the_value_named() {
        for bad in ["", "abc", "1.2.3", "-1.0", "1.0123456789", " 1.0"] {
            let e = Ts::new(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(WorkspaceId::new("").is_err());
        assert!(WorkspaceId::new("a b").is_err());
        assert!(WorkspaceId::new("x".repeat(65)).is_err());
        assert!(ChannelId::new("C024BE91L").is_ok());
        let e: std::result::Result<Ts, _> = serde_json::from_str("\"x\"");
        assert!(e.is_err());
    }

    #[test]
    fn content_id_round_trips() {
        let k = MessageKey::parse("T1", "C1", "1.000002").unwrap();
        let id = k.content_id();
        assert_eq!(MessageKey::from_content_id(&k.workspace, &id).unwrap(), k);
    }
}
