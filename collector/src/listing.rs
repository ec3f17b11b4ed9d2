//! An export's listings (`users.json` or Grid's `org_users.json`, `channels.json`, `groups.json`,
//! `dms.json`, `mpims.json`),
//! read and checked before anything is written.
//!
//! A listing that cannot be read, is not JSON, or is not an array fails the whole import: without
//! it the conversations or names it holds would silently go missing, and a half-written workspace
//! is worse than none.

use serde_json::Value;

use chatvault_core::{ChannelKind, Error, Result};

use crate::export::{parse_json, ExportArchive, CONVERSATION_LISTINGS};
use crate::import::ImportIssue;

/// The listings of one export, parsed.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    /// The users file (`users.json`, or an Enterprise Grid org export's `org_users.json`) and its
    /// entries, `None` when the export has neither.
    pub(crate) users: Option<(&'static str, Vec<Value>)>,
    /// Each conversation listing present: its file name, the kind it lists, its entries.
    pub(crate) conversations: Vec<(&'static str, ChannelKind, Vec<Value>)>,
}

/// The kind of conversation each listing holds.
fn listing_kind(file: &str) -> ChannelKind {
    match file {
        "groups.json" => ChannelKind::Private,
        "dms.json" => ChannelKind::Im,
        "mpims.json" => ChannelKind::Mpim,
        _ => ChannelKind::Public,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads one listing: `None` when absent.
///
/// # Errors
/// `InvalidInput` naming the file when it cannot be read (a symbolic link, too large), is not
/// JSON, or is not an array.
fn read_listing(
    archive: &mut ExportArchive,
    file: &str,
    what: &str,
    warnings: &mut Vec<ImportIssue>,
) -> Result<Option<Vec<Value>>> {
    let refuse = |reason: String| {
        Error::invalid_input(format!(
            "cannot import: {file} {reason}; nothing was written"
        ))
        .with_context("file", file)
    };
    let bytes = match archive.read(file) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(refuse(format!("cannot be read: {}", e.message()))),
    };
    let (value, warning) = parse_json(file, &bytes).map_err(|e| {
        Error::invalid_input(format!(
            "cannot import: {}; nothing was written",
            e.message()
        ))
        .with_context("file", file)
    })?;
    if let Some(w) = warning {
        warnings.push(ImportIssue {
            file: file.into(),
            position: None,
            reason: w,
        });
    }
    match value {
        Value::Array(items) => Ok(Some(items)),
        other => Err(refuse(format!(
            "must hold a JSON array of {what}, but holds {}",
            json_kind(&other)
        ))),
    }
}

impl Listings {
    /// Reads and checks every listing the export has.
    ///
    /// # Errors
    /// `InvalidInput` naming the first listing that is unreadable, not JSON or not an array.
    pub(crate) fn read(
        archive: &mut ExportArchive,
        warnings: &mut Vec<ImportIssue>,
    ) -> Result<Listings> {
        let users = match read_listing(archive, "users.json", "users", warnings)? {
            Some(u) => Some(("users.json", u)),
            None => read_listing(archive, "org_users.json", "users", warnings)?
                .map(|u| ("org_users.json", u)),
        };
        let mut conversations = Vec::new();
        for file in CONVERSATION_LISTINGS {
            if let Some(items) = read_listing(archive, file, "conversations", warnings)? {
                conversations.push((file, listing_kind(file), items));
            }
        }
        Ok(Listings {
            users,
            conversations,
        })
    }

    /// How many listing files were read.
    pub(crate) fn files(&self) -> u64 {
        u64::from(self.users.is_some()) + self.conversations.len() as u64
    }
}
