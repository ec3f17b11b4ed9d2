//! Prometheus metrics, in a registry of the server's own (no global recorder, so a service that
//! nests the router keeps its own metrics).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label set with one `kind` label (event type, or rejection reason).
pub(crate) type KindLabel = Vec<(String, String)>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Events received (any outcome), by type.
    pub(crate) events_received: Family<KindLabel, Counter>,
    /// Events written to the metadata store, by type.
    pub(crate) events_applied: Family<KindLabel, Counter>,
    /// Events refused, by reason.
    pub(crate) events_rejected: Family<KindLabel, Counter>,
    /// Events understood but not stored (an event type the handler does not keep), by type.
    pub(crate) events_ignored: Family<KindLabel, Counter>,
    /// Deliveries Slack marked as retries (`X-Slack-Retry-Num`); applying them again is a no-op.
    pub(crate) events_retried: Counter,
    /// Outbox entries waiting, leased, dead-lettered (set when scraped).
    pub(crate) outbox_pending: Gauge,
    pub(crate) outbox_leased: Gauge,
    pub(crate) outbox_dead: Gauge,
    /// Age of the oldest live outbox entry (set when scraped): the relay's lag.
    pub(crate) outbox_oldest_age: Gauge<f64, AtomicU64>,
    /// Request latency in seconds, by route template, method and status class.
    pub(crate) request_seconds: Family<KindLabel, Histogram>,
    /// Periodic Web API backfills run, by outcome (`ok`, `error`).
    pub(crate) backfill_runs: Family<KindLabel, Counter>,
    /// When the last periodic backfill succeeded (Unix seconds).
    pub(crate) backfill_last_success: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("chatvault");
        let events_received = Family::<KindLabel, Counter>::default();
        let events_applied = Family::<KindLabel, Counter>::default();
        let events_rejected = Family::<KindLabel, Counter>::default();
        let events_ignored = Family::<KindLabel, Counter>::default();
        let events_retried = Counter::default();
        let (outbox_pending, outbox_leased, outbox_dead) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        let request_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let outbox_oldest_age = Gauge::<f64, AtomicU64>::default();
        let backfill_runs = Family::<KindLabel, Counter>::default();
        let backfill_last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "events_received",
            "Slack events received",
            events_received.clone(),
        );
        registry.register(
            "events_applied",
            "Slack events written to the metadata store",
            events_applied.clone(),
        );
        registry.register(
            "events_rejected",
            "Slack events refused (bad signature, stale, malformed, unknown team)",
            events_rejected.clone(),
        );
        registry.register(
            "events_ignored",
            "Slack events understood but not stored",
            events_ignored.clone(),
        );
        registry.register(
            "events_retried",
            "Slack event deliveries marked as retries",
            events_retried.clone(),
        );
        registry.register(
            "outbox_pending",
            "Outbox entries waiting for delivery",
            outbox_pending.clone(),
        );
        registry.register(
            "outbox_leased",
            "Outbox entries being delivered",
            outbox_leased.clone(),
        );
        registry.register(
            "outbox_dead",
            "Dead-lettered outbox entries",
            outbox_dead.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest undelivered outbox entry: how far the content store lags (relay lag)",
            outbox_oldest_age.clone(),
        );
        registry.register(
            "request_seconds",
            "Request latency by route, method and status class",
            request_seconds.clone(),
        );
        registry.register(
            "backfill_runs",
            "Periodic Web API backfills run, by outcome",
            backfill_runs.clone(),
        );
        registry.register(
            "backfill_last_success_timestamp_seconds",
            "When the last periodic Web API backfill succeeded",
            backfill_last_success.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            events_received,
            events_applied,
            events_rejected,
            events_ignored,
            events_retried,
            outbox_pending,
            outbox_leased,
            outbox_dead,
            outbox_oldest_age,
            request_seconds,
            backfill_runs,
            backfill_last_success,
        }
    }

    /// The label set `kind = value`.
    pub(crate) fn kind(value: &str) -> KindLabel {
        vec![("kind".to_string(), value.to_string())]
    }

    /// Counts one event of `kind` in `family`.
    pub(crate) fn count(family: &Family<KindLabel, Counter>, kind: &str) {
        family.get_or_create(&Self::kind(kind)).inc();
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            if let Err(e) = encode(&mut out, &registry) {
                tracing::warn!(error = %e, "metrics not encoded");
            }
        }
        out
    }
}

/// Middleware: records every request's latency under its route template (`/api/v1/workspaces/
/// {ws}/search`, never the raw path, so the label set stays small), method and status class.
pub(crate) async fn observe_requests(
    State(state): State<crate::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics()
        .request_seconds
        .get_or_create(&vec![
            ("route".to_string(), route),
            ("method".to_string(), method),
            ("status".to_string(), status),
        ])
        .observe(started.elapsed().as_secs_f64());
    response
}
