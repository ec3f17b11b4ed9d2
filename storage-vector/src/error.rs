//! tantivy and I/O failures mapped into chatvault's [`Error`].

use chatvault_core::Error;

/// The backend name every error of this crate carries.
pub(crate) const BACKEND: &str = "tantivy-hnsw";

/// A tantivy failure. A busy writer lock means another process writes the collection.
pub(crate) fn tantivy_err(e: tantivy::TantivyError) -> Error {
    let err = match &e {
        tantivy::TantivyError::LockFailure(..) => Error::conflict(format!(
            "the collection is locked for writing by another process: {e}"
        )),
        tantivy::TantivyError::IoError(_) => Error::unavailable(format!("tantivy I/O: {e}")),
        _ => Error::backend_error(format!("tantivy: {e}")),
    };
    err.with_backend(BACKEND).with_source(e)
}

/// An I/O failure on `what` (a path or an operation).
pub(crate) fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::unavailable(format!("{what}: {e}"))
        .with_backend(BACKEND)
        .with_source(e)
}
