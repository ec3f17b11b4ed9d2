//! The one error type every chatvault crate returns.

use std::fmt;

/// What kind of failure an [`Error`] is: the part a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist (a workspace, collection, message, outbox row…).
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The request conflicts with what is stored (a different embedding dimension, a newer schema,
    /// a collection locked by another process…).
    Conflict,
    /// The caller's input is wrong: the message says which field and why.
    InvalidInput,
    /// This backend cannot do that (for example lexical search on a vector-only server).
    Unsupported,
    /// The backend cannot be reached right now; retrying later may succeed.
    Unavailable,
    /// Anything else the backend reported.
    Backend,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Backend => "backend error",
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// chatvault's error: a [`kind`](Error::kind), a message, the backend that raised it, context
/// (`workspace`, `key`, `file`, `line`…) and the underlying cause.
///
/// Its `Display` never contains secrets: backends must not put tokens into messages or context.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub struct Error {
    kind: ErrorKind,
    message: String,
    backend: Option<&'static str>,
    context: Vec<(&'static str, String)>,
    retryable: Option<bool>,
    #[source]
    source: Option<BoxError>,
}

/// `Result` with chatvault's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            backend: None,
            context: Vec::new(),
            retryable: None,
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Shorthand for [`ErrorKind::Backend`].
    pub fn backend_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// Names the backend that raised the error (`"sqlite"`, `"postgres"`, `"tantivy"`…).
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Adds a piece of context, such as `("workspace", "T1")` or `("file", "general/2024-01-02.json")`.
    pub fn with_context(mut self, name: &'static str, value: impl fmt::Display) -> Self {
        self.context.push((name, value.to_string()));
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether retrying may help (by default only [`ErrorKind::Unavailable`] is retryable).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = Some(retryable);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The backend that raised the error, when known.
    pub fn backend(&self) -> Option<&'static str> {
        self.backend
    }

    /// The value of a context entry, if present.
    pub fn context(&self, name: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the same call may succeed later: drives the outbox relay's retries.
    pub fn is_retryable(&self) -> bool {
        self.retryable
            .unwrap_or(matches!(self.kind, ErrorKind::Unavailable))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (name, value)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}: {value}")?;
            }
            f.write_str(")")?;
        }
        if let Some(backend) = self.backend {
            write!(f, " [{backend}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(b) = self.backend {
            d.field("backend", &b);
        }
        if !self.context.is_empty() {
            d.field("context", &self.context);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid_input(format!("invalid JSON: {e}")).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_carries_kind_context_and_backend() {
        let e = Error::invalid_input("bad ts")
            .with_context("file", "general/2024-01-01.json")
            .with_context("line", 3)
            .with_backend("export");
        assert_eq!(
            e.to_string(),
            "invalid input: bad ts (file: general/2024-01-01.json, line: 3) [export]"
        );
        assert_eq!(e.context("line"), Some("3"));
        assert!(!e.is_retryable());
        assert!(Error::unavailable("down").is_retryable());
        assert!(Error::backend_error("x")
            .with_retryable(true)
            .is_retryable());
    }
}
