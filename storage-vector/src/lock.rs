//! The writer lock: one process (one [`VectorStore`](crate::VectorStore)) writes a workspace's
//! collection at a time; readers take no lock.
//!
//! The lock is an exclusive file lock on `<root>/locks/ws-<workspace>.lock`, outside the
//! collection's directory so that a writer can hold it before the collection exists (an import
//! locks the workspace before it writes anything). The operating system releases it when the
//! process dies, so a crashed writer never leaves a stale lock. The holder writes who it is
//! into the file, so that a second writer can say whom it waits for.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chatvault_core::{Error, LeaseOwner, Result, WorkspaceId};
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, BACKEND};

const LOCK_DIR: &str = "locks";

/// Who holds a workspace's writer lock (as the holder recorded it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterInfo {
    /// The holder's process id.
    pub pid: u32,
    /// The host it runs on.
    pub host: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
}

impl std::fmt::Display for WriterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "process {} on host {} (since {})",
            self.pid, self.host, self.since
        )
    }
}

/// A held writer lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// The lock file of `workspace` under the store's `root`.
pub(crate) fn lock_path(root: &Path, workspace: &WorkspaceId) -> PathBuf {
    root.join(LOCK_DIR).join(format!("ws-{workspace}.lock"))
}

impl WriterLock {
    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// `Conflict` naming the holder when another process or store holds it; `Unavailable` when
    /// the lock file cannot be created.
    pub(crate) fn try_acquire(root: &Path, workspace: &WorkspaceId) -> Result<WriterLock> {
        let path = lock_path(root, workspace);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err(dir.display(), e))?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(path.display(), e))?;
        match file.try_lock_exclusive() {
            Ok(true) => {}
            Ok(false) => return Err(held_by(&path, workspace, holder_of(&mut file))),
            Err(e) => return Err(io_err(path.display(), e)),
        }
        let me = LeaseOwner::current();
        let info = WriterInfo {
            pid: me.pid(),
            host: me.host().to_string(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let bytes = serde_json::to_vec(&info)
            .map_err(|e| Error::backend_error(format!("writer lock record: {e}")))?;
        // Who holds it is diagnostics only: a failure to record it does not give the lock up.
        let recorded = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&bytes));
        if let Err(e) = recorded {
            tracing::debug!(path = %path.display(), error = %e, "could not record the lock holder");
        }
        Ok(WriterLock { _file: file })
    }

    /// Who holds the lock of `workspace`, if anyone does (read without taking it).
    pub(crate) fn holder(root: &Path, workspace: &WorkspaceId) -> Option<WriterInfo> {
        let path = lock_path(root, workspace);
        let mut file = File::open(&path).ok()?;
        // Free if we can take it ourselves (then let it go at once).
        if matches!(FileExt::try_lock_shared(&file), Ok(true)) {
            return None;
        }
        holder_of(&mut file)
    }
}

fn holder_of(file: &mut File) -> Option<WriterInfo> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn held_by(path: &Path, workspace: &WorkspaceId, holder: Option<WriterInfo>) -> Error {
    let who = holder.map_or_else(|| "another process or store".to_string(), |h| h.to_string());
    Error::conflict(format!(
        "workspace {workspace} is being written by {who}: one writer per workspace (lock file {})",
        path.display()
    ))
    .with_context("workspace", workspace)
    .with_backend(BACKEND)
}
