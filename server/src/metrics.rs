//! Prometheus metrics, in a registry of the server's own (no global recorder, so a service that
//! nests the router keeps its own metrics).

use std::sync::Mutex;

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
    /// API request latency in seconds, by route.
    pub(crate) request_seconds: Family<KindLabel, Histogram>,
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
            "request_seconds",
            "API request latency",
            request_seconds.clone(),
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
            request_seconds,
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

    /// Records how long a request to `route` took.
    pub(crate) fn observe_request(&self, route: &str, elapsed: std::time::Duration) {
        self.request_seconds
            .get_or_create(&Self::kind(route))
            .observe(elapsed.as_secs_f64());
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
