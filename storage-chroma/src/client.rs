//! A small client for ChromaDB's HTTP API v2 (`/api/v2/...`, the `chromadb` 1.x server):
//! typed payloads, timeouts, retries with backoff on transient failures, and errors that say
//! what failed — never the token.

use std::time::Duration;

use chatvault_core::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::options::{AuthHeader, ChromaOptions, RetrySettings};

pub(crate) const BACKEND: &str = "chroma";

/// A collection as the server describes it (the fields this store reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Collection {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) metadata: Option<Map<String, Value>>,
}

/// `GET /api/v2/pre-flight-checks`.
#[derive(Debug, Clone, Deserialize)]
struct PreFlight {
    max_batch_size: usize,
    #[serde(default)]
    supports_base64_encoding: bool,
}

/// The answer of `get`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct GetResponse {
    pub(crate) ids: Vec<String>,
    #[serde(default)]
    pub(crate) documents: Option<Vec<Option<String>>>,
    #[serde(default)]
    pub(crate) embeddings: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    pub(crate) metadatas: Option<Vec<Option<Map<String, Value>>>>,
}

/// The answer of `query` (one query embedding per request here).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct QueryResponse {
    pub(crate) ids: Vec<Vec<String>>,
    #[serde(default)]
    pub(crate) distances: Option<Vec<Vec<Option<f32>>>>,
}

/// Records to upsert: parallel arrays.
#[derive(Debug, Clone, Default)]
pub(crate) struct Records<'a> {
    pub(crate) ids: Vec<String>,
    pub(crate) embeddings: Vec<&'a [f32]>,
    pub(crate) documents: Option<Vec<&'a str>>,
    pub(crate) metadatas: Vec<Map<String, Value>>,
}

/// What the server told us when we connected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    pub(crate) max_batch_size: usize,
    pub(crate) base64: bool,
}

/// The HTTP client, bound to one tenant and database.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// `{url}api/v2/`
    api: String,
    /// `{api}tenants/{tenant}/databases/{database}/`
    db: String,
    tenant: String,
    database: String,
    retry: RetrySettings,
    pub(crate) limits: ServerLimits,
}

fn err_from_status(status: StatusCode, body: &str, what: &str) -> Error {
    // Chroma answers {"error": "...", "message": "..."}; fall back to the raw body.
    let message = error_message(body);
    let text = format!("{what}: HTTP {status}: {message}");
    let e = match status {
        StatusCode::NOT_FOUND => Error::not_found(text),
        StatusCode::CONFLICT => Error::new(ErrorKind::AlreadyExists, text),
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::PAYLOAD_TOO_LARGE => Error::invalid_input(text),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::backend_error(format!(
            "{what}: ChromaDB refused the credentials (HTTP {status}); check {} and {}",
            crate::options::TOKEN_ENV,
            crate::options::AUTH_HEADER_ENV
        )),
        s if is_transient(s, &message) => Error::unavailable(text),
        // An internal error may pass (a busy SQLite, say): let the relay retry it later.
        s if s.is_server_error() => Error::backend_error(text).with_retryable(true),
        _ => Error::backend_error(text),
    };
    e.with_backend(BACKEND)
}

/// Whether retrying the same request soon may succeed: rate limits, an unavailable upstream, and
/// the single-node server's SQLite being busy with another writer ("database is locked" is a 500).
fn is_transient(s: StatusCode, message: &str) -> bool {
    matches!(
        s,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    ) || (s == StatusCode::INTERNAL_SERVER_ERROR
        && (message.contains("database is locked") || message.contains("database is busy")))
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

/// Doubling backoff with ±25% jitter.
fn backoff(retry: &RetrySettings, attempt: u32) -> Duration {
    chatvault_core::Backoff::exponential(retry.base_delay, retry.max_delay)
        .with_jitter(chatvault_core::Jitter::Proportional(0.25))
        .delay(attempt)
}
/// Little-endian f32s, base64: what Chroma accepts in place of JSON float arrays.
fn base64_f32(v: &[f32]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

impl Client {
    /// Connects: checks the heartbeat, reads the server's limits, and makes sure the tenant and
    /// database exist (creating them if `create_database`).
    pub(crate) async fn connect(opts: &ChromaOptions) -> Result<Self> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &opts.token {
            let (name, value) = match opts.auth_header {
                AuthHeader::Authorization => (AUTHORIZATION, format!("Bearer {}", token.expose())),
                AuthHeader::XChromaToken => (
                    reqwest::header::HeaderName::from_static("x-chroma-token"),
                    token.expose().to_string(),
                ),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Error::invalid_input(format!(
                    "{} contains characters not allowed in an HTTP header",
                    crate::options::TOKEN_ENV
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(opts.request_timeout)
            .connect_timeout(opts.connect_timeout)
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| {
                Error::backend_error("cannot build the HTTP client")
                    .with_backend(BACKEND)
                    .with_source(e)
            })?;
        let api = format!("{}api/v2/", opts.url);
        let db = format!("{api}tenants/{}/databases/{}/", opts.tenant, opts.database);
        let mut client = Client {
            http,
            api,
            db,
            tenant: opts.tenant.clone(),
            database: opts.database.clone(),
            retry: opts.retry.clone(),
            limits: ServerLimits {
                max_batch_size: 1000,
                base64: false,
            },
        };
        let _: Value = client
            .call(
                Method::GET,
                &format!("{}heartbeat", client.api),
                None,
                "heartbeat",
            )
            .await
            .map_err(|e| e.with_context("url", opts.url.as_str()))?;
        let pf: PreFlight = client
            .call(
                Method::GET,
                &format!("{}pre-flight-checks", client.api),
                None,
                "pre-flight checks",
            )
            .await?;
        client.limits = ServerLimits {
            max_batch_size: opts
                .max_batch_size
                .map_or(pf.max_batch_size, |m| m.min(pf.max_batch_size))
                .max(1),
            base64: pf.supports_base64_encoding && opts.base64_embeddings,
        };
        client.ensure_database(opts.create_database).await?;
        Ok(client)
    }

    async fn ensure_database(&self, create: bool) -> Result<()> {
        let url = format!(
            "{}tenants/{}/databases/{}",
            self.api, self.tenant, self.database
        );
        match self
            .call::<Value>(Method::GET, &url, None, "get database")
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && create => {}
            Err(e) => {
                return Err(e
                    .with_context("tenant", &self.tenant)
                    .with_context("database", &self.database))
            }
        }
        let tenant_url = format!("{}tenants/{}", self.api, self.tenant);
        if let Err(e) = self
            .call::<Value>(Method::GET, &tenant_url, None, "get tenant")
            .await
        {
            if e.kind() != ErrorKind::NotFound {
                return Err(e);
            }
            let body = serde_json::json!({ "name": self.tenant });
            match self
                .call::<Value>(
                    Method::POST,
                    &format!("{}tenants", self.api),
                    Some(&body),
                    "create tenant",
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.with_context("tenant", &self.tenant)),
            }
        }
        let body = serde_json::json!({ "name": self.database });
        match self
            .call::<Value>(
                Method::POST,
                &format!("{}tenants/{}/databases", self.api, self.tenant),
                Some(&body),
                "create database",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e.with_context("database", &self.database)),
        }
    }

    /// Deletes the whole database (tests clean up with it).
    pub(crate) async fn delete_database(&self) -> Result<()> {
        let url = format!(
            "{}tenants/{}/databases/{}",
            self.api, self.tenant, self.database
        );
        match self
            .call::<Value>(Method::DELETE, &url, None, "delete database")
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One request with retries of transient failures.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<T> {
        // Encoded once; `Bytes` makes resending it on a retry a reference-count bump.
        let bytes = match body {
            Some(b) => Some(bytes::Bytes::from(serde_json::to_vec(b).map_err(|e| {
                Error::backend_error(format!("{what}: cannot encode the request"))
                    .with_backend(BACKEND)
                    .with_source(e)
            })?)),
            None => None,
        };
        let mut attempt = 0u32;
        loop {
            let mut req = self.http.request(method.clone(), url);
            if let Some(b) = &bytes {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let failure = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let text = resp.bytes().await.map_err(|e| {
                            Error::unavailable(format!("{what}: reading the answer failed"))
                                .with_backend(BACKEND)
                                .with_source(e)
                        })?;
                        return serde_json::from_slice(&text).map_err(|e| {
                            Error::backend_error(format!(
                                "{what}: unexpected answer from ChromaDB: {e}"
                            ))
                            .with_backend(BACKEND)
                        });
                    }
                    let text = resp.text().await.unwrap_or_default();
                    let e = err_from_status(status, &text, what);
                    if !is_transient(status, &error_message(&text)) {
                        return Err(e);
                    }
                    e
                }
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                    // `without_url`: the URL is harmless, but keep errors short and uniform.
                    Error::unavailable(format!(
                        "{what}: cannot reach ChromaDB: {}",
                        e.without_url()
                    ))
                    .with_backend(BACKEND)
                }
                Err(e) => {
                    return Err(Error::backend_error(format!("{what}: HTTP request failed"))
                        .with_backend(BACKEND)
                        .with_source(e.without_url()))
                }
            };
            if attempt >= self.retry.max_retries {
                return Err(failure.with_context("attempts", attempt + 1));
            }
            let delay = backoff(&self.retry, attempt);
            tracing::debug!(what, attempt, ?delay, error = %failure, "retrying a ChromaDB request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn collection_url(&self, id: &str, op: &str) -> String {
        format!("{}collections/{id}/{op}", self.db)
    }

    /// The collection with this name, or `None`.
    pub(crate) async fn get_collection(&self, name: &str) -> Result<Option<Collection>> {
        match self
            .call(
                Method::GET,
                &format!("{}collections/{name}", self.db),
                None,
                "get collection",
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.with_context("collection", name)),
        }
    }

    /// Gets or creates a collection (`get_or_create`: the existing one is returned unchanged).
    pub(crate) async fn get_or_create_collection(
        &self,
        name: &str,
        metadata: Map<String, Value>,
        configuration: Value,
    ) -> Result<Collection> {
        let body = serde_json::json!({
            "name": name,
            "metadata": metadata,
            "configuration": configuration,
            "get_or_create": true,
        });
        self.call(
            Method::POST,
            &format!("{}collections", self.db),
            Some(&body),
            "create collection",
        )
        .await
        .map_err(|e| e.with_context("collection", name))
    }

    /// Every collection of the database.
    pub(crate) async fn list_collections(&self) -> Result<Vec<Collection>> {
        let mut all = Vec::new();
        let page = 100usize;
        loop {
            let url = format!("{}collections?limit={page}&offset={}", self.db, all.len());
            let batch: Vec<Collection> = self
                .call(Method::GET, &url, None, "list collections")
                .await?;
            let n = batch.len();
            all.extend(batch);
            if n < page {
                return Ok(all);
            }
        }
    }

    /// Replaces a collection's metadata (`PUT …/collections/{id}` with `new_metadata`).
    pub(crate) async fn modify_collection_metadata(
        &self,
        id: &str,
        metadata: Map<String, Value>,
    ) -> Result<()> {
        let body = serde_json::json!({ "new_metadata": metadata });
        self.call::<Value>(
            Method::PUT,
            &format!("{}collections/{id}", self.db),
            Some(&body),
            "modify collection",
        )
        .await
        .map(|_| ())
        .map_err(|e| e.with_context("collection", id))
    }

    /// Deletes a collection by name; a missing one is fine.
    pub(crate) async fn delete_collection(&self, name: &str) -> Result<()> {
        match self
            .call::<Value>(
                Method::DELETE,
                &format!("{}collections/{name}", self.db),
                None,
                "delete collection",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.with_context("collection", name)),
        }
    }

    /// How many records a collection holds.
    pub(crate) async fn count(&self, id: &str) -> Result<u64> {
        self.call(
            Method::GET,
            &self.collection_url(id, "count"),
            None,
            "count",
        )
        .await
    }

    /// Upserts records; the caller keeps each call within `max_batch_size`.
    pub(crate) async fn upsert(&self, id: &str, records: &Records<'_>) -> Result<()> {
        if records.ids.is_empty() {
            return Ok(());
        }
        let embeddings: Value = if self.limits.base64 {
            Value::Array(
                records
                    .embeddings
                    .iter()
                    .map(|e| Value::String(base64_f32(e)))
                    .collect(),
            )
        } else {
            serde_json::to_value(&records.embeddings)?
        };
        let mut body = serde_json::json!({
            "ids": records.ids,
            "embeddings": embeddings,
            "metadatas": records.metadatas,
        });
        if let Some(docs) = &records.documents {
            body["documents"] = serde_json::to_value(docs)?;
        }
        let _: Value = self
            .call(
                Method::POST,
                &self.collection_url(id, "upsert"),
                Some(&body),
                "upsert",
            )
            .await?;
        Ok(())
    }

    /// Records by id (missing ids are left out; the server's order).
    pub(crate) async fn get(
        &self,
        id: &str,
        ids: Option<&[String]>,
        include: &[&str],
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> Result<GetResponse> {
        let mut body = serde_json::json!({ "include": include });
        if let Some(ids) = ids {
            body["ids"] = serde_json::to_value(ids)?;
        }
        if let Some(l) = limit {
            body["limit"] = l.into();
        }
        if let Some(o) = offset {
            body["offset"] = o.into();
        }
        self.call(
            Method::POST,
            &self.collection_url(id, "get"),
            Some(&body),
            "get",
        )
        .await
    }

    /// Deletes records by id.
    pub(crate) async fn delete(&self, id: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({ "ids": ids });
        let _: Value = self
            .call(
                Method::POST,
                &self.collection_url(id, "delete"),
                Some(&body),
                "delete",
            )
            .await?;
        Ok(())
    }

    /// The `n` nearest records to `embedding` among those matching `where_` and `ids`.
    pub(crate) async fn query(
        &self,
        id: &str,
        embedding: &[f32],
        n: usize,
        where_: Option<&Value>,
        ids: Option<&[String]>,
    ) -> Result<QueryResponse> {
        let mut body = serde_json::json!({
            "query_embeddings": [embedding],
            "n_results": n,
            "include": ["distances"],
        });
        if let Some(w) = where_ {
            body["where"] = w.clone();
        }
        if let Some(ids) = ids {
            body["ids"] = serde_json::to_value(ids)?;
        }
        self.call(
            Method::POST,
            &self.collection_url(id, "query"),
            Some(&body),
            "query",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_python() {
        // base64.b64encode(struct.pack('<3f', 0.1, 0.2, 0.3))
        assert_eq!(base64_f32(&[0.1, 0.2, 0.3]), "zczMPc3MTD6amZk+");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn statuses_map_to_kinds() {
        let body = r#"{"error":"NotFoundError","message":"Collection [x] does not exist"}"#;
        let e = err_from_status(StatusCode::NOT_FOUND, body, "get");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("Collection [x] does not exist"));
        assert!(err_from_status(StatusCode::SERVICE_UNAVAILABLE, "", "q").is_retryable());
        let locked = r#"{"error":"x","message":"Database error: (code: 5) database is locked"}"#;
        let e = err_from_status(StatusCode::INTERNAL_SERVER_ERROR, locked, "q");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!err_from_status(StatusCode::UNAUTHORIZED, "", "q").is_retryable());
        assert_eq!(
            err_from_status(StatusCode::BAD_REQUEST, "bad", "q").kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetrySettings::default();
        assert!(backoff(&r, 0) <= Duration::from_millis(125));
        assert!(backoff(&r, 3) >= Duration::from_millis(600));
        assert!(backoff(&r, 30) <= Duration::from_millis(6250));
    }
}
