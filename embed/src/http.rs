//! [`HttpEmbedder`]: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama,
//! text-embeddings-inference, vLLM…), with batching, timeouts and retries.

use std::time::Duration;

use async_trait::async_trait;
use chatvault_core::{Backoff, Embedder, Error, ErrorKind, Jitter, Result, SecretString};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::minilm::normalize;

/// The environment variable [`HttpEmbedderConfig::from_env`] reads the API key from.
pub const API_KEY_ENV: &str = "CHATVAULT_EMBEDDING_API_KEY";
/// The environment variable [`HttpEmbedderConfig::from_env`] reads the base URL from.
pub const URL_ENV: &str = "CHATVAULT_EMBEDDING_URL";
/// The environment variable [`HttpEmbedderConfig::from_env`] reads the model name from.
pub const MODEL_ENV: &str = "CHATVAULT_EMBEDDING_MODEL";
/// The environment variable [`HttpEmbedderConfig::from_env`] reads the dimension from.
pub const DIMENSION_ENV: &str = "CHATVAULT_EMBEDDING_DIMENSION";

/// How to reach an OpenAI-compatible embeddings endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpEmbedderConfig {
    /// The API's base URL, such as `https://api.openai.com/v1` or `http://localhost:11434/v1`;
    /// requests go to `<base_url>/embeddings` (a URL already ending in `/embeddings` is used as is).
    pub base_url: Url,
    /// The `model` field of each request (`text-embedding-3-small`, `all-minilm`, …).
    pub model: String,
    /// The vectors' length; `None` lets [`HttpEmbedder::connect`] ask the server once.
    pub dimension: Option<usize>,
    /// Sent as `Authorization: Bearer …`; never logged, never in errors or `Debug`.
    pub api_key: Option<SecretString>,
    /// Overrides the model id collections record (default: `model`, plus `@<dimension>` when
    /// `send_dimensions` is set).
    pub model_id: Option<String>,
    /// Send `dimensions` in requests (OpenAI `text-embedding-3-*` can shorten vectors).
    pub send_dimensions: bool,
    /// Most texts per request.
    pub batch_size: usize,
    /// Timeout of one request, connection included.
    pub request_timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Retries after a 429, a 5xx, a timeout or a connection failure (so at most
    /// `max_retries + 1` attempts per batch).
    pub max_retries: u32,
    /// The first retry waits up to this long (full jitter); each retry doubles it.
    pub initial_backoff: Duration,
    /// No wait is longer than this, `Retry-After` included.
    pub max_backoff: Duration,
}

impl HttpEmbedderConfig {
    /// A configuration with the defaults: 64 texts per request, 30 s timeout, 5 retries with
    /// backoff from 250 ms to 20 s, no API key.
    pub fn new(base_url: Url, model: impl Into<String>, dimension: Option<usize>) -> Self {
        HttpEmbedderConfig {
            base_url,
            model: model.into(),
            dimension,
            api_key: None,
            model_id: None,
            send_dimensions: false,
            batch_size: 64,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
        }
    }

    /// Sets the API key from the environment variable `var`, if it is set and not empty.
    pub fn with_api_key_from_env(mut self, var: &str) -> Self {
        self.api_key = std::env::var(var)
            .ok()
            .filter(|k| !k.is_empty())
            .map(SecretString::new);
        self
    }

    /// A configuration from `CHATVAULT_EMBEDDING_URL`, `CHATVAULT_EMBEDDING_MODEL`,
    /// `CHATVAULT_EMBEDDING_DIMENSION` (optional) and `CHATVAULT_EMBEDDING_API_KEY` (optional).
    ///
    /// # Errors
    /// `InvalidInput` naming the variable that is missing or malformed.
    pub fn from_env() -> Result<Self> {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::invalid_input(format!("{name} is not set")))
        };
        let url = var(URL_ENV)?;
        let base_url = Url::parse(&url).map_err(|e| {
            Error::invalid_input(format!("{URL_ENV} is not a URL: {e}")).with_source(e)
        })?;
        let model = var(MODEL_ENV)?;
        let dimension = match std::env::var(DIMENSION_ENV).ok().filter(|v| !v.is_empty()) {
            None => None,
            Some(d) => Some(d.parse::<usize>().map_err(|e| {
                Error::invalid_input(format!("{DIMENSION_ENV} is not a number: {e}"))
            })?),
        };
        Ok(Self::new(base_url, model, dimension).with_api_key_from_env(API_KEY_ENV))
    }
}

/// Embeds through an OpenAI-compatible `POST /v1/embeddings` endpoint.
///
/// Each call is split into requests of at most `batch_size` texts, sent one after the other.
/// 429, 5xx, 408, timeouts and connection failures are retried with exponential backoff and full
/// jitter (honouring `Retry-After`); when retries run out the error is `Unavailable`
/// (retryable). Other 4xx are `InvalidInput` (or `Backend` for 401/403) with the server's message,
/// scrubbed of the API key. Vectors are checked (count, dimension, finite) and L2-normalised, so
/// the [`Embedder`] contract holds whatever the server does. An empty text is sent as a single
/// space, since some servers reject empty inputs.
#[derive(Clone)]
pub struct HttpEmbedder {
    config: HttpEmbedderConfig,
    dimension: usize,
    model_id: String,
    endpoint: Url,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEmbedder")
            .field("endpoint", &redacted_url(&self.endpoint))
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .field(
                "api_key",
                &self.config.api_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    index: Option<usize>,
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: Error,
    retry: bool,
    retry_after: Option<Duration>,
}

impl HttpEmbedder {
    /// An embedder for `config`, whose `dimension` must be set.
    ///
    /// # Errors
    /// `InvalidInput` when the dimension is unset or 0, `batch_size` is 0, the model name is
    /// empty, the URL is not http(s), or the API key cannot go in a header.
    pub fn new(config: HttpEmbedderConfig) -> Result<Self> {
        let dimension = config.dimension.ok_or_else(|| {
            Error::invalid_input(
                "the embedding dimension is not set: set it, or use HttpEmbedder::connect to ask \
                 the server",
            )
        })?;
        Self::build(config, dimension)
    }

    /// An embedder for `config`; when its dimension is not set, embeds one probe text to learn it.
    ///
    /// # Errors
    /// As [`new`](Self::new), and as [`Embedder::embed`] for the probe.
    pub async fn connect(config: HttpEmbedderConfig) -> Result<Self> {
        if config.dimension.is_some() {
            return Self::new(config);
        }
        // Any dimension passes validation of the probe; the real one is read from its answer.
        let probe = Self::build(config.clone(), 0)?;
        let vectors = probe.request(&["dimension probe".to_string()]).await?;
        let dimension = vectors.first().map(Vec::len).unwrap_or(0);
        Self::build(config, dimension)
    }

    fn build(config: HttpEmbedderConfig, dimension: usize) -> Result<Self> {
        if config.dimension == Some(0) || (config.dimension.is_some() && dimension == 0) {
            return Err(Error::invalid_input(
                "the embedding dimension must be at least 1",
            ));
        }
        if config.batch_size == 0 {
            return Err(Error::invalid_input("batch_size must be at least 1"));
        }
        if config.model.trim().is_empty() {
            return Err(Error::invalid_input("the model name is empty"));
        }
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(Error::invalid_input(format!(
                "the embeddings URL must be http or https, not {}",
                config.base_url.scheme()
            )));
        }
        let endpoint = endpoint_url(&config.base_url)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    Error::invalid_input(
                        "the API key contains characters not allowed in an HTTP header",
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                Error::backend_error(format!("cannot build the HTTP client: {e}"))
                    .with_backend("http")
            })?;
        let model_id = config.model_id.clone().unwrap_or_else(|| {
            if config.send_dimensions {
                format!("{}@{dimension}", config.model)
            } else {
                config.model.clone()
            }
        });
        Ok(HttpEmbedder {
            config,
            dimension,
            model_id,
            endpoint,
            client,
        })
    }

    /// Where requests go (without any credentials the URL may hold).
    pub fn endpoint(&self) -> String {
        redacted_url(&self.endpoint)
    }

    /// One batch, with retries.
    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let inputs: Vec<&str> = texts
            .iter()
            .map(|t| if t.is_empty() { " " } else { t.as_str() })
            .collect();
        let mut body = serde_json::json!({
            "model": self.config.model,
            "input": inputs,
            "encoding_format": "float",
        });
        if self.config.send_dimensions {
            body["dimensions"] = self.dimension.into();
        }
        let mut attempt: u32 = 0;
        loop {
            match self.attempt(&body, texts.len()).await {
                Ok(vectors) => return Ok(vectors),
                Err(failure) if failure.retry && attempt < self.config.max_retries => {
                    let delay = self.backoff(attempt, failure.retry_after);
                    tracing::warn!(
                        endpoint = %redacted_url(&self.endpoint),
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        error = %failure.error,
                        "embedding request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(failure) if failure.retry => {
                    return Err(Error::unavailable(format!(
                        "{} (gave up after {} attempts)",
                        failure.error.message(),
                        attempt + 1
                    ))
                    .with_backend("http")
                    .with_context("endpoint", redacted_url(&self.endpoint))
                    .with_source(failure.error));
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        Backoff::exponential(self.config.initial_backoff, self.config.max_backoff)
            .with_jitter(Jitter::Full)
            .delay_honouring(attempt, retry_after)
    }

    async fn attempt(
        &self,
        body: &serde_json::Value,
        expected: usize,
    ) -> std::result::Result<Vec<Vec<f32>>, Failure> {
        let endpoint = redacted_url(&self.endpoint);
        let response = self
            .client
            .post(self.endpoint.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(e))?;

        if !status.is_success() {
            let detail = self.server_message(&bytes);
            let retry = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error();
            let (kind, what) = if status == StatusCode::TOO_MANY_REQUESTS {
                (ErrorKind::Unavailable, "rate limited")
            } else if retry {
                (ErrorKind::Unavailable, "server error")
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                (
                    ErrorKind::Backend,
                    "authentication failed (check the API key)",
                )
            } else {
                (ErrorKind::InvalidInput, "request refused")
            };
            return Err(Failure {
                error: Error::new(
                    kind,
                    format!("embeddings endpoint: {what}: HTTP {status}: {detail}"),
                )
                .with_backend("http")
                .with_context("endpoint", endpoint),
                retry,
                retry_after,
            });
        }

        let fatal = |message: String| Failure {
            error: Error::backend_error(message)
                .with_backend("http")
                .with_context("endpoint", endpoint.clone()),
            retry: false,
            retry_after: None,
        };
        let parsed: EmbeddingResponse = serde_json::from_slice(&bytes).map_err(|e| {
            fatal(format!(
                "the embeddings response is not the expected JSON ({{\"data\": [{{\"embedding\": \
                 […], \"index\": n}}]}}): {e}"
            ))
        })?;
        if parsed.data.len() != expected {
            return Err(fatal(format!(
                "the server returned {} embeddings for {expected} texts",
                parsed.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (position, item) in parsed.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(position);
            let slot = out.get_mut(index).ok_or_else(|| {
                fatal(format!(
                    "the server returned index {index} for {expected} texts"
                ))
            })?;
            if slot.is_some() {
                return Err(fatal(format!("the server returned index {index} twice")));
            }
            let mut v = item.embedding;
            if self.dimension != 0 && v.len() != self.dimension {
                return Err(Failure {
                    error: Error::conflict(format!(
                        "the server returned {}-dimensional vectors, the embedder is configured \
                         for {}",
                        v.len(),
                        self.dimension
                    ))
                    .with_backend("http")
                    .with_context("model", &self.config.model),
                    retry: false,
                    retry_after: None,
                });
            }
            normalize(&mut v).map_err(|_| {
                fatal(format!(
                    "the server returned a zero or non-finite vector at index {index}"
                ))
            })?;
            *slot = Some(v);
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn transport_failure(&self, e: reqwest::Error) -> Failure {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "transport error"
        };
        // reqwest's Display includes the URL, which may carry credentials: say it ourselves.
        Failure {
            error: Error::unavailable(format!("embeddings endpoint: {what}"))
                .with_backend("http")
                .with_context("endpoint", redacted_url(&self.endpoint))
                .with_source(e.without_url()),
            retry: true,
            retry_after: None,
        }
    }

    /// The error message a server put in its body (OpenAI, Ollama and TEI shapes), shortened
    /// and scrubbed of the API key (OpenAI echoes part of a wrong key).
    fn server_message(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.get("message")
                    .and_then(|m| m.as_str())
                    .or_else(|| e.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.trim().to_string());
        let mut message: String = message.chars().take(300).collect();
        if let Some(key) = &self.config.api_key {
            let key = key.expose();
            if !key.is_empty() {
                message = message.replace(key, "[redacted]");
                // Partial echoes such as "sk-abc***xyz" still leak a prefix: drop such words.
                if key.len() >= 8 {
                    let head = &key[..key.len().min(6)];
                    message = message
                        .split(' ')
                        .map(|w| if w.contains(head) { "[redacted]" } else { w })
                        .collect::<Vec<_>>()
                        .join(" ");
                }
            }
        }
        if message.is_empty() {
            "(empty body)".to_string()
        } else {
            message
        }
    }
}

fn endpoint_url(base: &Url) -> Result<Url> {
    if base.path().trim_end_matches('/').ends_with("/embeddings") {
        return Ok(base.clone());
    }
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("embeddings").map_err(|e| {
        Error::invalid_input(format!("cannot build the embeddings URL: {e}")).with_source(e)
    })
}

fn redacted_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.to_string()
}

#[async_trait]
impl Embedder for HttpEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_batch(&self) -> usize {
        self.config.batch_size.saturating_mul(4)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.config.batch_size) {
            out.extend(self.request(chunk).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let u = |s: &str| endpoint_url(&Url::parse(s).unwrap()).unwrap().to_string();
        assert_eq!(
            u("https://api.openai.com/v1"),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            u("http://localhost:11434/v1/"),
            "http://localhost:11434/v1/embeddings"
        );
        assert_eq!(
            u("http://h:8080/v1/embeddings"),
            "http://h:8080/v1/embeddings"
        );
        assert_eq!(u("http://h:8080"), "http://h:8080/embeddings");
        assert_eq!(
            redacted_url(&Url::parse("https://user:pw@h/v1/embeddings?key=x").unwrap()),
            "https://h/v1/embeddings"
        );
    }
}
