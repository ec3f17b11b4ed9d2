//! Slack's Socket Mode: events over a WebSocket the server opens itself, for teams that cannot
//! expose a public URL.
//!
//! The loop: `apps.connections.open` (with the app-level token, `xapp-…`) hands out a `wss://`
//! URL; the server connects, acknowledges every envelope at once (Slack redelivers what is not
//! acknowledged within 3 seconds) and then hands an `events_api` payload to its workspace's
//! [`EventHandler`](chatvault_collector::EventHandler). Slack asks for a reconnect with a
//! `disconnect` message (connections last a few hours); a closed or broken socket reconnects
//! too, after a capped exponential backoff. An error Slack will keep answering (a bad token) ends
//! the loop instead.
//!
//! Envelopes are handled one at a time, in the order Slack sends them, so events about the same
//! message stay ordered. The acknowledgement comes before the write: an event whose write fails
//! (after the handler's own store retries) is logged, counted and lost, as one that Slack's
//! Events API over HTTP would have answered with a 500 after its own retries.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chatvault_collector::EventOutcome;
use chatvault_core::{Error, ErrorKind, Result, RetryPolicy, SecretString, WorkspaceId};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::metrics::Metrics;
use crate::state::AppState;

/// The environment variable that holds the app-level token.
pub const APP_TOKEN_ENV: &str = "SLACK_APP_TOKEN";

/// A connection that lasted this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(60);

/// How Socket Mode connects. The token never appears in `Debug` or in logs.
#[derive(Debug, Clone)]
pub struct SocketModeOptions {
    /// The app-level token (`xapp-…`, scope `connections:write`).
    pub app_token: SecretString,
    /// Slack's Web API base URL (`https://slack.com/api`); tests point it at a fake.
    pub api_url: String,
    /// Store only this workspace's events (events from other teams are acknowledged and
    /// dropped). `None`: every team whose id is a stored workspace's id.
    pub workspace: Option<WorkspaceId>,
    /// The first reconnect delay after a failure; each further consecutive failure doubles it.
    pub backoff_base: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// The timeout of one `apps.connections.open` call.
    pub request_timeout: Duration,
}

impl SocketModeOptions {
    /// Options with `app_token` and the defaults: Slack's API, every stored workspace, backoff
    /// from 1 s to 60 s.
    pub fn new(app_token: SecretString) -> Self {
        SocketModeOptions {
            app_token,
            api_url: "https://slack.com/api".to_string(),
            workspace: None,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Options with the token from `SLACK_APP_TOKEN`.
    ///
    /// # Errors
    /// `InvalidInput` when the variable is unset or empty.
    pub fn from_env() -> Result<Self> {
        match std::env::var(APP_TOKEN_ENV) {
            Ok(t) if !t.is_empty() => Ok(Self::new(SecretString::new(t))),
            _ => Err(Error::invalid_input(format!(
                "Socket Mode needs an app-level token (xapp-…) in {APP_TOKEN_ENV}"
            ))),
        }
    }

    fn delay_after(&self, failures: u32) -> Duration {
        RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: self.backoff_base,
            max_delay: self.backoff_max,
        }
        .delay_after(failures)
    }
}

/// One message from Slack's side of the socket.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Hello,
    Disconnect {
        reason: String,
    },
    /// Anything with an `envelope_id`: it must be acknowledged whatever its type.
    Envelope {
        id: String,
        kind: String,
        payload: Value,
        retry_attempt: u64,
    },
    Other {
        kind: String,
    },
}

fn parse_frame(text: &str) -> Result<Frame> {
    let mut v: Value = serde_json::from_str(text)?;
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(id) = v.get("envelope_id").and_then(Value::as_str) {
        return Ok(Frame::Envelope {
            id: id.to_string(),
            payload: v.get_mut("payload").map(Value::take).unwrap_or(Value::Null),
            retry_attempt: v.get("retry_attempt").and_then(Value::as_u64).unwrap_or(0),
            kind,
        });
    }
    Ok(match kind.as_str() {
        "hello" => Frame::Hello,
        "disconnect" => Frame::Disconnect {
            reason: v
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        },
        _ => Frame::Other { kind },
    })
}

/// Slack errors that a retry can cure; any other `ok: false` answer (`invalid_auth`,
/// `not_allowed_token_type`, `token_revoked`…) will not change by asking again.
fn is_transient(slack_error: &str) -> bool {
    matches!(
        slack_error,
        "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
    )
}

/// Calls `apps.connections.open`; returns the WebSocket URL.
async fn open_connection(client: &reqwest::Client, options: &SocketModeOptions) -> Result<String> {
    let url = format!(
        "{}/apps.connections.open",
        options.api_url.trim_end_matches('/')
    );
    let unavailable = |what: &str, e: reqwest::Error| {
        // without the URL: only the method's name, never a header
        Error::unavailable(format!(
            "apps.connections.open: {what}: {}",
            e.without_url()
        ))
        .with_backend("slack")
    };
    let response = client
        .post(&url)
        .bearer_auth(options.app_token.expose())
        .send()
        .await
        .map_err(|e| unavailable("request failed", e))?;
    let status = response.status();
    if !status.is_success() {
        let retryable = status.is_server_error() || status.as_u16() == 429;
        return Err(Error::new(
            if retryable {
                ErrorKind::Unavailable
            } else {
                ErrorKind::InvalidInput
            },
            format!("apps.connections.open answered HTTP {status}"),
        )
        .with_backend("slack")
        .with_retryable(retryable));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| unavailable("unreadable answer", e))?;
    if body.get("ok").and_then(Value::as_bool) != Some(true) {
        let code = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let transient = is_transient(code);
        return Err(Error::new(
            if transient {
                ErrorKind::Unavailable
            } else {
                ErrorKind::InvalidInput
            },
            format!("apps.connections.open failed: {code}"),
        )
        .with_backend("slack")
        .with_context("slack_error", code)
        .with_retryable(transient));
    }
    body.get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("wss://") || u.starts_with("ws://"))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::unavailable("apps.connections.open answered without a WebSocket `url`")
                .with_backend("slack")
        })
}

/// Why a connection ended without an error.
enum SessionEnd {
    /// Slack asked for a reconnect (`disconnect`).
    Reconnect,
    /// Shutdown was requested.
    Shutdown,
}

/// Runs Socket Mode until `shutdown` completes: connects, acknowledges and stores events,
/// reconnects when Slack asks or the socket breaks. An envelope being handled when shutdown
/// comes is finished first.
///
/// # Errors
/// `InvalidInput` when Slack refuses the token or the app (the message names Slack's error
/// code, e.g. `invalid_auth`; it never contains the token); `NotFound` when
/// [`SocketModeOptions::workspace`] is not a stored workspace; the store's error when that
/// check fails; `InvalidInput` when Slack turns Socket Mode off for the app (`link_disabled`). Transient failures (network, Slack's 5xx and rate limits) are retried, never
/// returned.
pub async fn run_socket_mode(
    state: AppState,
    options: SocketModeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if options.app_token.is_empty() {
        return Err(Error::invalid_input(
            "Socket Mode needs an app-level token (xapp-…)",
        ));
    }
    if let Some(ws) = &options.workspace {
        if state.meta().get_workspace(ws).await?.is_none() {
            return Err(Error::not_found(format!(
                "Socket Mode: workspace {ws} is not in the metadata store"
            ))
            .with_context("workspace", ws));
        }
    }
    let client = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .build()
        .map_err(|e| Error::unavailable("an HTTP client").with_source(e))?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut router = TeamRouter::new(options.workspace.clone());
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let url = open_connection(&client, &options).await?;
            let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(|e| {
                    Error::unavailable(format!("Socket Mode: connecting failed: {e}"))
                        .with_backend("slack")
                })?;
            tracing::info!("Socket Mode connected");
            Ok::<_, Error>(socket)
        };
        let connected = tokio::select! {
            _ = shutdown.as_mut() => return Ok(()),
            c = attempt => c,
        };
        let connected_at = Instant::now();
        let outcome = match connected {
            Ok(socket) => session(&state, &mut router, socket, shutdown.as_mut()).await,
            Err(e) => Err(e),
        };
        if connected_at.elapsed() >= STABLE_CONNECTION {
            // a connection that worked for a while: the next attempt starts from the first delay
            failures = 0;
        }
        match outcome {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Reconnect) => {
                failures = 0;
                continue;
            }
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = options.delay_after(failures);
                tracing::warn!(error = %e, ?delay, failures, "Socket Mode: reconnecting");
                tokio::select! {
                    _ = shutdown.as_mut() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Reads one connection until Slack asks for a reconnect, the socket ends, or shutdown.
async fn session<S>(
    state: &AppState,
    router: &mut TeamRouter,
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<SessionEnd>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let broken = |e: tokio_tungstenite::tungstenite::Error| {
        Error::unavailable(format!("Socket Mode: the socket broke: {e}")).with_backend("slack")
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.as_mut() => {
                // best effort: the process is going away either way
                let _ = socket.close(None).await;
                return Ok(SessionEnd::Shutdown);
            }
            next = socket.next() => next,
        };
        let text = match next {
            None => {
                return Err(
                    Error::unavailable("Socket Mode: the socket ended").with_backend("slack")
                )
            }
            Some(Err(e)) => return Err(broken(e)),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                // without a `disconnect` first: back off, in case it closes every socket at once
                return Err(Error::unavailable(format!(
                    "Socket Mode: Slack closed the socket ({frame:?})"
                ))
                .with_backend("slack"));
            }
            // pings are answered by tungstenite itself
            Some(Ok(_)) => continue,
        };
        let frame = match parse_frame(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "Socket Mode: a message that is not JSON");
                continue;
            }
        };
        match frame {
            Frame::Hello => tracing::info!("Socket Mode: hello"),
            Frame::Disconnect { reason } if reason == "link_disabled" => {
                let _ = socket.close(None).await;
                return Err(Error::invalid_input(
                    "Socket Mode is turned off for this Slack app (disconnect: link_disabled)",
                )
                .with_backend("slack"));
            }
            Frame::Disconnect { reason } => {
                tracing::info!(%reason, "Socket Mode: Slack asks for a reconnect");
                let _ = socket.close(None).await;
                return Ok(SessionEnd::Reconnect);
            }
            Frame::Other { kind } => tracing::debug!(%kind, "Socket Mode: message ignored"),
            Frame::Envelope {
                id,
                kind,
                payload,
                retry_attempt,
            } => {
                let ack = serde_json::json!({ "envelope_id": id }).to_string();
                socket.send(Message::text(ack)).await.map_err(broken)?;
                if kind == "events_api" {
                    handle_payload(state, router, &payload, retry_attempt).await;
                } else {
                    tracing::debug!(%kind, envelope_id = %id, "Socket Mode: envelope not handled");
                }
            }
        }
    }
}

/// Which stored workspace a team's events go to.
struct TeamRouter {
    only: Option<WorkspaceId>,
    /// Teams found in the store (an unknown team is looked up again next time: it may be
    /// added while the server runs).
    known: HashSet<WorkspaceId>,
}

impl TeamRouter {
    fn new(only: Option<WorkspaceId>) -> Self {
        TeamRouter {
            only,
            known: HashSet::new(),
        }
    }

    async fn workspace(&mut self, state: &AppState, team: &str) -> Result<Option<WorkspaceId>> {
        let Ok(ws) = WorkspaceId::new(team) else {
            return Ok(None);
        };
        if self.only.as_ref().is_some_and(|only| *only != ws) {
            return Ok(None);
        }
        if self.known.contains(&ws) {
            return Ok(Some(ws));
        }
        if state.meta().get_workspace(&ws).await?.is_some() {
            self.known.insert(ws.clone());
            return Ok(Some(ws));
        }
        Ok(None)
    }
}

/// Stores one `events_api` payload; failures are logged and counted (the envelope is acked).
async fn handle_payload(state: &AppState, router: &mut TeamRouter, payload: &Value, retry: u64) {
    let metrics = state.metrics();
    let event_type = payload
        .pointer("/event/type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    metrics
        .events_received
        .get_or_create(&Metrics::kind(event_type))
        .inc();
    let event_id = payload
        .get("event_id")
        .and_then(Value::as_str)
        .unwrap_or("-");
    let team = payload.get("team_id").and_then(Value::as_str).unwrap_or("");
    let reject = |reason: &str| {
        metrics
            .events_rejected
            .get_or_create(&Metrics::kind(reason))
            .inc();
    };
    let ws = match router.workspace(state, team).await {
        Ok(Some(ws)) => ws,
        Ok(None) => {
            tracing::warn!(
                team,
                event_id,
                "Socket Mode: an event from a team not stored here"
            );
            reject("unknown_team");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, team, event_id, "Socket Mode: workspace lookup failed; event lost");
            reject("store");
            return;
        }
    };
    match state.handler(&ws).await.handle(payload).await {
        Ok(EventOutcome::Applied { kind, .. }) => {
            metrics
                .events_applied
                .get_or_create(&Metrics::kind(&kind))
                .inc();
        }
        Ok(EventOutcome::Ignored { kind, reason }) => {
            tracing::debug!(%kind, %reason, event_id, "Socket Mode: event ignored");
        }
        Ok(EventOutcome::UrlVerification { .. }) => {
            tracing::debug!(event_id, "Socket Mode: url_verification ignored");
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            tracing::warn!(error = %e, event_id, retry, "Socket Mode: malformed event");
            reject("malformed");
        }
        Err(e) => {
            tracing::error!(error = %e, event_id, retry, "Socket Mode: event not stored; lost");
            reject("store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        assert_eq!(parse_frame(r#"{"type":"hello"}"#).unwrap(), Frame::Hello);
        assert_eq!(
            parse_frame(r#"{"type":"disconnect","reason":"refresh_requested"}"#).unwrap(),
            Frame::Disconnect {
                reason: "refresh_requested".into()
            }
        );
        let Frame::Envelope {
            id,
            kind,
            payload,
            retry_attempt,
        } = parse_frame(
            r#"{"envelope_id":"e1","type":"events_api","payload":{"team_id":"T1"},"retry_attempt":2}"#,
        )
        .unwrap()
        else {
            panic!("not an envelope")
        };
        assert_eq!(
            (id.as_str(), kind.as_str(), retry_attempt),
            ("e1", "events_api", 2)
        );
        assert_eq!(payload["team_id"], "T1");
        assert!(parse_frame("not json").is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let o = SocketModeOptions::new(SecretString::new("xapp-1"));
        assert_eq!(o.delay_after(1), Duration::from_secs(1));
        assert_eq!(o.delay_after(3), Duration::from_secs(4));
        assert_eq!(o.delay_after(20), Duration::from_secs(60));
    }

    #[test]
    fn options_do_not_show_the_token() {
        let o = SocketModeOptions::new(SecretString::new("xapp-very-secret"));
        assert!(!format!("{o:?}").contains("very-secret"));
    }
}
