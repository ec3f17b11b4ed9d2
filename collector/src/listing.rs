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

/// A users listing: its file (from the export's top level) and its entries with their positions.
#[derive(Debug)]
pub(crate) struct UsersListing {
    pub(crate) file: String,
    pub(crate) entries: Vec<(usize, Value)>,
}

/// A conversation listing: its file, the kind it lists, the folder its conversations' folders
/// sit in (`""`, or `"teams/acme/"` in a Grid export), its entries with their positions.
#[derive(Debug)]
pub(crate) struct ConversationListing {
    pub(crate) file: String,
    pub(crate) kind: ChannelKind,
    pub(crate) base: String,
    pub(crate) entries: Vec<(usize, Value)>,
}

/// The listings of one export, parsed.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    /// The users file (`users.json`, or an Enterprise Grid org export's `org_users.json`),
    /// `None` when the export has neither.
    pub(crate) users: Option<UsersListing>,
    /// Each conversation listing present.
    pub(crate) conversations: Vec<ConversationListing>,
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

/// Reads a users listing (`None` when absent).
///
/// # Errors
/// As [`read_listing`].
pub(crate) fn read_users(
    archive: &mut ExportArchive,
    file: &str,
    warnings: &mut Vec<ImportIssue>,
) -> Result<Option<UsersListing>> {
    Ok(
        read_listing(archive, file, "users", warnings)?.map(|items| UsersListing {
            file: file.to_string(),
            entries: items.into_iter().enumerate().collect(),
        }),
    )
}

impl Listings {
    /// Reads and checks every listing of the export whose top level is the folder `base` (`""`
    /// for the archive's own top level, `"teams/acme/"` for a workspace of a Grid export).
    ///
    /// # Errors
    /// `InvalidInput` naming the first listing that is unreadable, not JSON or not an array.
    pub(crate) fn read(
        archive: &mut ExportArchive,
        base: &str,
        warnings: &mut Vec<ImportIssue>,
    ) -> Result<Listings> {
        let users = match read_users(archive, &format!("{base}users.json"), warnings)? {
            Some(u) => Some(u),
            None if base.is_empty() => read_users(archive, "org_users.json", warnings)?,
            None => None,
        };
        let mut conversations = Vec::new();
        for file in CONVERSATION_LISTINGS {
            let path = format!("{base}{file}");
            if let Some(items) = read_listing(archive, &path, "conversations", warnings)? {
                conversations.push(ConversationListing {
                    file: path,
                    kind: listing_kind(file),
                    base: base.to_string(),
                    entries: items.into_iter().enumerate().collect(),
                });
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
