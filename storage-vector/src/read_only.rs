//! A tantivy directory for readers: it never writes, and it works on a directory the process
//! cannot write (a read-only mount, another user's files).
//!
//! tantivy's reader takes the `.tantivy-meta.lock` file lock while it opens a commit's segments,
//! so that the writer's garbage collection (which takes it too) cannot delete a segment between
//! reading `meta.json` and opening the segment's files. A reader that can create the lock file
//! takes it as usual. Where it cannot, it goes on without it; the rare open that then loses a
//! segment to the writer's clean-up fails and is retried by the caller (see
//! `Collection::refresh`). Once open, a segment's files stay readable after the writer deletes
//! them (they are memory-mapped).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};

#[derive(Debug, Clone)]
pub(crate) struct ReadOnlyDirectory {
    inner: MmapDirectory,
}

impl ReadOnlyDirectory {
    pub(crate) fn new(inner: MmapDirectory) -> Self {
        ReadOnlyDirectory { inner }
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} is opened read-only", path.display()),
    )
}

impl Directory for ReadOnlyDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(
            read_only(path),
            PathBuf::from(path),
        ))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        match self.inner.acquire_lock(lock) {
            Ok(l) => Ok(l),
            // The lock file cannot be created here: read without it (see the module doc).
            Err(LockError::IoError(_)) => Ok(DirectoryLock::from(Box::new(()))),
            Err(e) => Err(e),
        }
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}
