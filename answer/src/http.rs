//! [`HttpAnswerer`]: any OpenAI-compatible `POST /v1/chat/completions` endpoint (OpenAI, Ollama,
//! vLLM, llama.cpp's server, LM Studio), streamed over server-sent events with a non-streaming
//! fallback, with timeouts and retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatvault_core::{Backoff, Error, ErrorKind, Jitter, Result, SecretString};
use chatvault_query::{Answer, Answerer, Retrieval};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};
use url::Url;

use crate::citations::check_citations;
use crate::sse::SseLines;

/// The environment variable [`HttpAnswererConfig::from_options`] reads the base URL from.
pub const URL_ENV: &str = "CHATVAULT_LLM_URL";
/// The environment variable [`HttpAnswererConfig::from_options`] reads the model name from.
pub const MODEL_ENV: &str = "CHATVAULT_LLM_MODEL";
/// The environment variables the API key is read from, in order (the first set wins).
pub const API_KEY_ENVS: [&str; 2] = ["CHATVAULT_LLM_API_KEY", "OPENAI_API_KEY"];

/// How to reach an OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpAnswererConfig {
    /// The API's base URL, such as `https://api.openai.com/v1` or `http://localhost:11434/v1`;
    /// requests go to `<base_url>/chat/completions` (a URL already ending so is used as is).
    pub base_url: Url,
    /// The `model` field (`gpt-4o-mini`, `llama3.2`, …).
    pub model: String,
    /// Sent as `Authorization: Bearer …`; never logged, never in errors or `Debug`.
    pub api_key: Option<SecretString>,
    /// Ask for a server-sent-events stream (falls back to one response when the server refuses).
    pub stream: bool,
    /// The sampling temperature (`None`: the server's default).
    pub temperature: Option<f32>,
    /// The most tokens to generate (`None`: the server's default).
    pub max_tokens: Option<u32>,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout of a whole non-streaming response, and of a stream's first bytes.
    pub request_timeout: Duration,
    /// Longest silence between two pieces of a stream.
    pub idle_timeout: Duration,
    /// Retries after a 429, a 5xx, a timeout or a connection failure, as long as nothing was
    /// streamed yet (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// The first retry waits up to this long (full jitter); each retry doubles it.
    pub initial_backoff: Duration,
    /// No wait is longer than this, `Retry-After` included.
    pub max_backoff: Duration,
}

impl HttpAnswererConfig {
    /// A configuration with the defaults: streaming, temperature 0.2, connect in 10 s, first
    /// bytes in 120 s, 60 s of silence at most, 3 retries with backoff from 500 ms to 30 s, no
    /// API key.
    pub fn new(base_url: Url, model: impl Into<String>) -> Self {
        HttpAnswererConfig {
            base_url,
            model: model.into(),
            api_key: None,
            stream: true,
            temperature: Some(0.2),
            max_tokens: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Sets the API key from the first of `CHATVAULT_LLM_API_KEY`, `OPENAI_API_KEY` that is set
    /// and not empty (none: no key, as local servers need).
    pub fn with_api_key_from_env(mut self) -> Self {
        self.api_key = API_KEY_ENVS
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|k| !k.is_empty())
            .map(SecretString::new);
        self
    }

    /// A configuration from `url` and `model`, each falling back to `CHATVAULT_LLM_URL` and
    /// `CHATVAULT_LLM_MODEL`, with the API key from the environment. `Ok(None)` when neither
    /// the URL nor the model is given anywhere (no answerer configured).
    ///
    /// # Errors
    /// `InvalidInput` when only one of the two is given, or the URL is not one.
    pub fn from_options(url: Option<&str>, model: Option<&str>) -> Result<Option<Self>> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let url = url.map(str::to_string).or_else(|| env(URL_ENV));
        let model = model.map(str::to_string).or_else(|| env(MODEL_ENV));
        match (url, model) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::invalid_input(format!(
                "a language model URL is set but no model: pass --llm-model or set {MODEL_ENV}"
            ))),
            (None, Some(_)) => Err(Error::invalid_input(format!(
                "a language model is set but no URL: pass --llm-url or set {URL_ENV} (e.g. \
                 http://localhost:11434/v1 for Ollama)"
            ))),
            (Some(url), Some(model)) => {
                let base_url = Url::parse(&url).map_err(|e| {
                    Error::invalid_input(format!(
                        "the language model URL {url:?} is not a URL: {e}"
                    ))
                })?;
                Ok(Some(Self::new(base_url, model).with_api_key_from_env()))
            }
        }
    }
}

/// Answers through an OpenAI-compatible chat-completions endpoint.
///
/// The prompt is [`Retrieval::chat_messages`]: instructions as the system message, the quoted
/// passages and the question as the user message. 429, 5xx, 408, timeouts and connection
/// failures are retried with exponential backoff and full jitter (honouring `Retry-After`) as
/// long as no text has been streamed; when retries run out the error is `Unavailable`. A
/// streaming request the server refuses (400, 404, 415, 422) is sent once more without
/// `stream`, and later requests do not stream. Errors name the endpoint and the cause, never
/// the key.
pub struct HttpAnswerer {
    config: HttpAnswererConfig,
    endpoint: Url,
    client: reqwest::Client,
    /// Set once the server refused a streaming request that it then answered without.
    no_streaming: AtomicBool,
}

impl std::fmt::Debug for HttpAnswerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAnswerer")
            .field("endpoint", &redacted_url(&self.endpoint))
            .field("model", &self.config.model)
            .field(
                "api_key",
                &self.config.api_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    error: Error,
    retry: bool,
    retry_after: Option<Duration>,
    /// Text already reached the caller: a retry would repeat it.
    emitted: bool,
    /// The server refused the request's shape (retry it without streaming).
    refused: bool,
}

impl HttpAnswerer {
    /// An answerer for `config`.
    ///
    /// # Errors
    /// `InvalidInput` when the model name is empty, the URL is not http(s), or the API key
    /// cannot go in a header.
    pub fn new(config: HttpAnswererConfig) -> Result<Self> {
        if config.model.trim().is_empty() {
            return Err(Error::invalid_input("the language model name is empty"));
        }
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(Error::invalid_input(format!(
                "the language model URL must be http or https, not {}",
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
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                Error::backend_error(format!("cannot build the HTTP client: {e}"))
                    .with_backend("llm")
            })?;
        Ok(HttpAnswerer {
            config,
            endpoint,
            client,
            no_streaming: AtomicBool::new(false),
        })
    }

    /// Where requests go (without any credentials the URL may hold).
    pub fn endpoint(&self) -> String {
        redacted_url(&self.endpoint)
    }

    /// The model asked.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    fn body(&self, retrieval: &Retrieval, stream: bool) -> Value {
        let (system, user) = retrieval.chat_messages();
        let mut body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "stream": stream,
        });
        if let Some(t) = self.config.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = self.config.max_tokens {
            body["max_tokens"] = json!(n);
        }
        body
    }

    /// Generates, with retries; streams to `on_token` when given and streaming is on.
    async fn generate(
        &self,
        retrieval: &Retrieval,
        on_token: Option<&(dyn for<'t> Fn(&'t str) + Send + Sync)>,
    ) -> Result<String> {
        let mut stream =
            on_token.is_some() && self.config.stream && !self.no_streaming.load(Ordering::Relaxed);
        let mut attempt: u32 = 0;
        loop {
            let body = self.body(retrieval, stream);
            match self.attempt(&body, stream, on_token).await {
                Ok(text) => return Ok(text),
                Err(f) if f.refused && stream && !f.emitted => {
                    tracing::info!(
                        endpoint = %self.endpoint(),
                        error = %f.error,
                        "the language model refused a streaming request; asking without streaming"
                    );
                    stream = false;
                    // Only remembered once the plain request works (see below).
                    match self
                        .attempt(&self.body(retrieval, false), false, on_token)
                        .await
                    {
                        Ok(text) => {
                            self.no_streaming.store(true, Ordering::Relaxed);
                            return Ok(text);
                        }
                        Err(plain) if plain.retry && attempt < self.config.max_retries => {
                            self.wait(attempt, &plain).await;
                            attempt += 1;
                        }
                        Err(plain) => return Err(self.give_up(plain, attempt)),
                    }
                }
                Err(f) if f.retry && !f.emitted && attempt < self.config.max_retries => {
                    self.wait(attempt, &f).await;
                    attempt += 1;
                }
                Err(f) => return Err(self.give_up(f, attempt)),
            }
        }
    }

    async fn wait(&self, attempt: u32, failure: &Failure) {
        let delay = self.backoff(attempt, failure.retry_after);
        tracing::warn!(
            endpoint = %self.endpoint(),
            attempt = attempt + 1,
            delay_ms = delay.as_millis() as u64,
            error = %failure.error,
            "language model request failed, retrying"
        );
        tokio::time::sleep(delay).await;
    }

    fn give_up(&self, failure: Failure, attempt: u32) -> Error {
        if !failure.retry || failure.emitted {
            return failure.error;
        }
        Error::unavailable(format!(
            "{} (gave up after {} attempts)",
            failure.error.message(),
            attempt + 1
        ))
        .with_backend("llm")
        .with_source(failure.error)
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        Backoff::exponential(self.config.initial_backoff, self.config.max_backoff)
            .with_jitter(Jitter::Full)
            .delay_honouring(attempt, retry_after)
    }

    fn failure(&self, kind: ErrorKind, what: impl std::fmt::Display, retry: bool) -> Failure {
        Failure {
            error: Error::new(
                kind,
                format!("language model at {}: {what}", redacted_url(&self.endpoint)),
            )
            .with_backend("llm"),
            retry,
            retry_after: None,
            emitted: false,
            refused: false,
        }
    }

    fn transport_failure(&self, e: reqwest::Error) -> Failure {
        let what = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            // reqwest's Display includes the URL, which may carry credentials: say it ourselves.
            format!("cannot connect ({})", root_cause(&e.without_url()))
        } else {
            format!("transport error ({})", root_cause(&e.without_url()))
        };
        self.failure(ErrorKind::Unavailable, what, true)
    }

    async fn attempt(
        &self,
        body: &Value,
        stream: bool,
        on_token: Option<&(dyn for<'t> Fn(&'t str) + Send + Sync)>,
    ) -> std::result::Result<String, Failure> {
        let timeout = self.config.request_timeout;
        let timed_out = || {
            self.failure(
                ErrorKind::Unavailable,
                format!("no response within {timeout:?}"),
                true,
            )
        };
        let send = self.client.post(self.endpoint.clone()).json(body).send();
        let mut response = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)));
            let bytes = tokio::time::timeout(timeout, response.bytes())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| self.transport_failure(e))?;
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
            let mut f = self.failure(kind, format!("{what}: HTTP {status}: {detail}"), retry);
            f.retry_after = retry_after;
            f.refused = matches!(status.as_u16(), 400 | 404 | 415 | 422);
            return Err(f);
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if stream && is_sse {
            return self.read_stream(&mut response, on_token).await;
        }
        // Not streamed (asked so, or the server ignored `stream`): one JSON body.
        let bytes = tokio::time::timeout(timeout, response.bytes())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.transport_failure(e))?;
        let parsed: Value = serde_json::from_slice(&bytes).map_err(|e| {
            self.failure(
                ErrorKind::Backend,
                format!("the response is not JSON: {e}"),
                false,
            )
        })?;
        let text = parsed["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| {
                self.failure(
                    ErrorKind::Backend,
                    "the response has no choices[0].message.content",
                    false,
                )
            })?
            .to_string();
        if let Some(f) = on_token {
            f(&text);
        }
        Ok(text)
    }

    async fn read_stream(
        &self,
        response: &mut reqwest::Response,
        on_token: Option<&(dyn for<'t> Fn(&'t str) + Send + Sync)>,
    ) -> std::result::Result<String, Failure> {
        let idle = self.config.idle_timeout;
        let mut lines = SseLines::default();
        let mut text = String::new();
        loop {
            let chunk = match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => {
                    let mut f = self.failure(
                        ErrorKind::Unavailable,
                        format!("the stream was silent for {idle:?}"),
                        true,
                    );
                    f.emitted = !text.is_empty();
                    return Err(f);
                }
                Ok(Err(e)) => {
                    let mut f = self.transport_failure(e);
                    f.emitted = !text.is_empty();
                    return Err(f);
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            for data in lines.push(&chunk) {
                if data.trim() == "[DONE]" {
                    return Ok(text);
                }
                let event: Value = serde_json::from_str(&data).map_err(|e| {
                    let mut f = self.failure(
                        ErrorKind::Backend,
                        format!("a stream event is not JSON: {e}"),
                        false,
                    );
                    f.emitted = !text.is_empty();
                    f
                })?;
                if let Some(err) = event.get("error") {
                    let message = err["message"]
                        .as_str()
                        .unwrap_or("unknown error")
                        .to_string();
                    let mut f = self.failure(
                        ErrorKind::Unavailable,
                        format!("the stream reported an error: {}", self.scrub(message)),
                        true,
                    );
                    f.emitted = !text.is_empty();
                    return Err(f);
                }
                if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
                    if !piece.is_empty() {
                        text.push_str(piece);
                        if let Some(f) = on_token {
                            f(piece);
                        }
                    }
                }
            }
        }
        // Some servers close without `[DONE]`: what arrived is the answer.
        Ok(text)
    }

    /// The error message a server put in its body (OpenAI and Ollama shapes), shortened and
    /// scrubbed of the API key.
    fn server_message(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.get("message")
                    .and_then(|m| m.as_str())
                    .or_else(|| e.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.trim().to_string());
        let message = self.scrub(message.chars().take(300).collect());
        if message.is_empty() {
            "(empty body)".to_string()
        } else {
            message
        }
    }

    fn scrub(&self, mut message: String) -> String {
        if let Some(key) = &self.config.api_key {
            let key = key.expose();
            if !key.is_empty() {
                message = message.replace(key, "[redacted]");
                // Partial echoes such as "sk-abc***xyz" still leak a prefix: drop such words.
                if key.len() >= 8 {
                    let head = &key[..6];
                    message = message
                        .split(' ')
                        .map(|w| if w.contains(head) { "[redacted]" } else { w })
                        .collect::<Vec<_>>()
                        .join(" ");
                }
            }
        }
        message
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn endpoint_url(base: &Url) -> Result<Url> {
    if base
        .path()
        .trim_end_matches('/')
        .ends_with("/chat/completions")
    {
        return Ok(base.clone());
    }
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("chat/completions").map_err(|e| {
        Error::invalid_input(format!("cannot build the chat-completions URL: {e}")).with_source(e)
    })
}

fn redacted_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.to_string()
}

impl HttpAnswerer {
    fn answer_of(&self, retrieval: &Retrieval, text: String) -> Answer {
        let check = check_citations(&text, retrieval.passages.len());
        Answer {
            citations: check
                .valid
                .iter()
                .filter_map(|n| retrieval.passages.iter().find(|p| p.citation == *n))
                .map(|p| (p.citation, p.hit.message.key.clone(), p.link().to_string()))
                .collect(),
            text,
            answerer: format!("http:{}", self.config.model),
        }
    }
}

#[async_trait]
impl Answerer for HttpAnswerer {
    async fn answer(&self, retrieval: &Retrieval) -> Result<Answer> {
        let text = self.generate(retrieval, None).await?;
        Ok(self.answer_of(retrieval, text))
    }

    async fn answer_streaming(
        &self,
        retrieval: &Retrieval,
        on_token: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<Answer> {
        let text = self.generate(retrieval, Some(on_token)).await?;
        Ok(self.answer_of(retrieval, text))
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
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            u("http://localhost:11434/v1/"),
            "http://localhost:11434/v1/chat/completions"
        );
        assert_eq!(
            u("http://h:8080/v1/chat/completions"),
            "http://h:8080/v1/chat/completions"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let mut config = HttpAnswererConfig::new(Url::parse("http://localhost:1/v1").unwrap(), "m");
        config.api_key = Some(SecretString::new("sk-very-secret-123"));
        let a = HttpAnswerer::new(config.clone()).unwrap();
        assert!(!format!("{a:?}").contains("sk-very"));
        assert!(!format!("{config:?}").contains("sk-very"));
    }
}
