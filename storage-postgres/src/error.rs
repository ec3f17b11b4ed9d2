//! Maps database errors into chatvault's [`Error`] in one place.

use chatvault_core::{redact_url, url_secrets, Error, ErrorKind};
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// The backend's own failures, mapped into core's [`Error`] by one `From` impl.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// A database error, with the backend that raised it and what was being done.
    Db {
        backend: &'static str,
        doing: &'static str,
        source: DbErr,
    },
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db {
                backend,
                doing,
                source,
            } => {
                let kind = classify(&source);
                // sqlx messages carry neither the URL's password nor bound values.
                Error::new(kind, format!("{doing}: {source}"))
                    .with_backend(backend)
                    .with_source(source)
            }
        }
    }
}

/// A failure to connect to `url`, with no trace of its password: the message names the redacted
/// URL and carries the error's text with every secret of the URL replaced by `***`; the source
/// error is attached only when neither it nor anything in its chain mentions a secret
/// (in `Display` or `Debug`).
pub(crate) fn connect_error(
    source: DbErr,
    url: &str,
    backend: &'static str,
    doing: &'static str,
) -> Error {
    let secrets = url_secrets(url);
    let kind = classify(&source);
    let message = scrub(
        &format!("{doing} at {}: {source}", redact_url(url)),
        &secrets,
    );
    let e = Error::new(kind, message).with_backend(backend);
    if mentions_any(&source, &secrets) {
        e
    } else {
        e.with_source(source)
    }
}

fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

fn mentions_any(e: &(dyn std::error::Error + 'static), secrets: &[String]) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        if secrets
            .iter()
            .any(|s| shown.contains(s.as_str()) || debug.contains(s.as_str()))
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn classify(e: &DbErr) -> ErrorKind {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => return ErrorKind::AlreadyExists,
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => return ErrorKind::NotFound,
        _ => {}
    }
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => ErrorKind::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            use sea_orm::sqlx::Error as X;
            match s {
                X::Io(_) | X::PoolTimedOut | X::PoolClosed | X::WorkerCrashed | X::Tls(_) => {
                    ErrorKind::Unavailable
                }
                X::Database(d) => {
                    let code = d.code().map(|c| c.to_string()).unwrap_or_default();
                    // PostgreSQL: serialization failure, deadlock, too many connections, admin
                    // shutdown; SQLite: BUSY (5) and LOCKED (6) with their extended codes.
                    let transient_pg = matches!(
                        code.as_str(),
                        "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
                    );
                    let transient_sqlite = code
                        .parse::<i64>()
                        .map(|c| c & 0xff == 5 || c & 0xff == 6)
                        .unwrap_or(false);
                    if transient_pg || transient_sqlite {
                        ErrorKind::Unavailable
                    } else {
                        ErrorKind::Backend
                    }
                }
                _ => ErrorKind::Backend,
            }
        }
        _ => ErrorKind::Backend,
    }
}

/// Adds `.db(backend, doing)` to database results.
pub(crate) trait DbResultExt<T> {
    fn db(self, backend: &'static str, doing: &'static str) -> chatvault_core::Result<T>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn db(self, backend: &'static str, doing: &'static str) -> chatvault_core::Result<T> {
        self.map_err(|source| {
            Error::from(StoreError::Db {
                backend,
                doing,
                source,
            })
        })
    }
}
