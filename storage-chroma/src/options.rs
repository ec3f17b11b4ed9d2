//! How to reach a ChromaDB server: URL, tenant, database, token, timeouts, retries, HNSW settings.

use std::time::Duration;

use chatvault_core::{Error, Result, SecretString};
use url::Url;

/// The environment variable holding the server's URL (`http://host:port[?tenant=…&database=…]`).
pub const URL_ENV: &str = "CHATVAULT_CHROMA_URL";
/// The environment variable holding the auth token (never put it in the URL).
pub const TOKEN_ENV: &str = "CHATVAULT_CHROMA_TOKEN";
/// The environment variable choosing the header the token goes in: `authorization` (default,
/// `Authorization: Bearer <token>`) or `x-chroma-token`.
pub const AUTH_HEADER_ENV: &str = "CHATVAULT_CHROMA_AUTH_HEADER";

/// Chroma's default tenant.
pub const DEFAULT_TENANT: &str = "default_tenant";
/// Chroma's default database.
pub const DEFAULT_DATABASE: &str = "default_database";

/// Which header carries the token (the server's `chroma_auth_token_transport_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthHeader {
    /// `Authorization: Bearer <token>`.
    #[default]
    Authorization,
    /// `X-Chroma-Token: <token>`.
    XChromaToken,
}

/// How transient failures (connection errors, timeouts, HTTP 429/502/503/504) are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first attempt (0: none).
    pub max_retries: u32,
    /// The first retry's delay; each further retry doubles it (with jitter).
    pub base_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// HNSW settings for collections this store creates (Chroma's `configuration.hnsw`).
/// `None` keeps the server's default (Chroma 1.x: M = 16, ef_construction = ef_search = 100).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HnswSettings {
    /// Graph degree (`max_neighbors`, "M").
    pub max_neighbors: Option<u32>,
    /// Candidate list size while building.
    pub ef_construction: Option<u32>,
    /// Candidate list size while searching.
    pub ef_search: Option<u32>,
}

/// Everything needed to connect.
#[derive(Debug, Clone)]
pub struct ChromaOptions {
    /// The server's base URL, `http://host:port` (a path prefix is kept, for a reverse proxy).
    pub url: Url,
    /// The tenant (default `default_tenant`).
    pub tenant: String,
    /// The database (default `default_database`).
    pub database: String,
    /// The auth token, if the server wants one. Never logged.
    pub token: Option<SecretString>,
    /// Which header carries the token.
    pub auth_header: AuthHeader,
    /// Create the tenant and database when they do not exist (default `true`).
    pub create_database: bool,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
    /// Time limit for opening a connection.
    pub connect_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetrySettings,
    /// HNSW settings for new collections.
    pub hnsw: HnswSettings,
    /// Send embeddings base64-encoded when the server supports it (much less JSON to parse).
    pub base64_embeddings: bool,
    /// Split batches at this many records even if the server takes more (`None`: the server's
    /// `max_batch_size`).
    pub max_batch_size: Option<usize>,
}

impl ChromaOptions {
    /// Options for `url`: `http://host:port`, optionally with `?tenant=…&database=…`. The token
    /// and its header are read from [`TOKEN_ENV`] and [`AUTH_HEADER_ENV`].
    ///
    /// # Errors
    /// `InvalidInput` naming what is wrong with the URL, the tenant, the database or the header.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut opts = Self::parse_url(url)?;
        if let Ok(token) = std::env::var(TOKEN_ENV) {
            if !token.is_empty() {
                opts.token = Some(SecretString::new(token));
            }
        }
        if let Ok(header) = std::env::var(AUTH_HEADER_ENV) {
            opts.auth_header = match header.to_ascii_lowercase().as_str() {
                "" | "authorization" => AuthHeader::Authorization,
                "x-chroma-token" => AuthHeader::XChromaToken,
                other => {
                    return Err(Error::invalid_input(format!(
                    "{AUTH_HEADER_ENV}={other:?}: expected \"authorization\" or \"x-chroma-token\""
                )))
                }
            };
        }
        Ok(opts)
    }

    /// Options from [`URL_ENV`] (and the token variables), or `None` when it is not set.
    ///
    /// # Errors
    /// As [`from_url`](Self::from_url).
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::from_url(url.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// Parses the URL alone (no environment).
    fn parse_url(raw: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid_input(format!("ChromaDB URL {raw:?}: {why}"));
        let mut url = Url::parse(raw).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme {:?}, expected http or https",
                url.scheme()
            )));
        }
        if url.host_str().is_none() {
            return Err(bad("no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials in a URL end up in logs; the token comes from the environment.
            return Err(Error::invalid_input(format!(
                "the ChromaDB URL must not carry credentials; set {TOKEN_ENV} instead"
            )));
        }
        let mut tenant = DEFAULT_TENANT.to_string();
        let mut database = DEFAULT_DATABASE.to_string();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "tenant" => tenant = v.into_owned(),
                "database" => database = v.into_owned(),
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?} (expected tenant or database)"
                    )))
                }
            }
        }
        validate_name("tenant", &tenant)?;
        validate_name("database", &database)?;
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(ChromaOptions {
            url,
            tenant,
            database,
            token: None,
            auth_header: AuthHeader::default(),
            create_database: true,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            retry: RetrySettings::default(),
            hnsw: HnswSettings::default(),
            base64_embeddings: true,
            max_batch_size: None,
        })
    }

    /// The same options in another database (tests use one database each).
    ///
    /// # Errors
    /// `InvalidInput` if the name is not a valid Chroma name.
    pub fn with_database(mut self, database: impl Into<String>) -> Result<Self> {
        let database = database.into();
        validate_name("database", &database)?;
        self.database = database;
        Ok(self)
    }
}

/// Chroma's rule for tenant, database and collection names: 3–512 characters of
/// `[a-zA-Z0-9._-]`, starting and ending with a letter or digit.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok_len = (3..=512).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let ok_ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "ChromaDB {what} name {name:?}: expected 3-512 characters of [a-zA-Z0-9._-], \
             starting and ending with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_tenant_and_database() {
        let o =
            ChromaOptions::parse_url("http://127.0.0.1:8000?tenant=acme&database=chat").unwrap();
        assert_eq!(o.url.as_str(), "http://127.0.0.1:8000/");
        assert_eq!(o.tenant, "acme");
        assert_eq!(o.database, "chat");
        let o = ChromaOptions::parse_url("https://chroma.example.com/proxy").unwrap();
        assert_eq!(o.url.as_str(), "https://chroma.example.com/proxy/");
        assert_eq!(o.tenant, DEFAULT_TENANT);
        assert_eq!(o.database, DEFAULT_DATABASE);
    }

    #[test]
    fn bad_urls_are_named() {
        for bad in [
            "127.0.0.1:8000",
            "ftp://h:1",
            "http://u:secret@h:1",
            "http://h:1?tenant=x",
            "http://h:1?foo=bar",
        ] {
            let e = ChromaOptions::parse_url(bad).unwrap_err();
            assert_eq!(e.kind(), chatvault_core::ErrorKind::InvalidInput, "{bad}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
