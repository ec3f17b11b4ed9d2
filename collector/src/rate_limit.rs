//! Pacing Web API calls by Slack's rate-limit tiers: one token bucket per method, shared by every
//! conversation of a run, so a backfill stays under the limits instead of bouncing off `429`s.
//!
//! Slack documents its tiers per method (Tier 1: 1+ per minute, Tier 2: 20+, Tier 3: 50+, Tier 4:
//! 100+), and since 2025 applies reduced limits to apps that are neither distributed through the
//! Marketplace nor internal (built by the workspace itself): `conversations.history` and
//! `conversations.replies` at 1 request per minute and at most 15 messages per page.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Slack's rate-limit tier of a Web API method, in requests per minute.
pub(crate) fn tier_per_minute(method: &str) -> f64 {
    match method {
        // Tier 2
        "users.list" | "conversations.list" => 20.0,
        // Tier 3
        "conversations.history" | "conversations.replies" => 50.0,
        // Tier 4
        "conversations.members" => 100.0,
        // Unknown methods: the most common tier, Tier 3.
        _ => 50.0,
    }
}

/// The reduced limit Slack applies to `conversations.history` and `conversations.replies` for
/// apps that are not Marketplace or internal apps: requests per minute, and messages per page.
pub(crate) const REDUCED_PER_MINUTE: f64 = 1.0;
/// See [`REDUCED_PER_MINUTE`].
pub(crate) const REDUCED_PAGE_SIZE: u32 = 15;

/// The methods the reduced limits apply to.
pub(crate) fn has_reduced_limit(method: &str) -> bool {
    matches!(method, "conversations.history" | "conversations.replies")
}

#[derive(Debug)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// Most tokens held (the burst allowed).
    capacity: f64,
    tokens: f64,
    last: Instant,
    /// Nothing before this instant (a `Retry-After` received).
    blocked_until: Option<Instant>,
}

impl Bucket {
    /// A bucket for Slack's `per_minute`, its rate multiplied by `scale`.
    fn new(per_minute: f64, scale: f64) -> Self {
        let rate = per_minute * scale / 60.0;
        // About ten seconds' worth of burst at Slack's rate, at least one request.
        let capacity = (per_minute / 6.0).floor().max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
            blocked_until: None,
        }
    }

    /// Takes a token now if there is one; else how long to wait before asking again.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(until) = self.blocked_until {
            if now < until {
                return Some(until - now);
            }
            self.blocked_until = None;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Token buckets by method, shared by every conversation of a backfill.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Multiplies every tier's rate (1 = Slack's documented rates; tests run faster).
    scale: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Whether the reduced limits were detected.
    reduced: Mutex<bool>,
}

impl RateLimiter {
    pub(crate) fn new(scale: f64) -> Self {
        RateLimiter {
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
            buckets: Mutex::new(HashMap::new()),
            reduced: Mutex::new(false),
        }
    }

    /// Slack's rate for `method` now, per minute.
    fn per_minute(&self, method: &str) -> f64 {
        if has_reduced_limit(method) && self.reduced() {
            REDUCED_PER_MINUTE
        } else {
            tier_per_minute(method)
        }
    }

    fn bucket(&self, method: &str) -> Bucket {
        Bucket::new(self.per_minute(method), self.scale)
    }

    /// Waits until `method` may be called.
    pub(crate) async fn acquire(&self, method: &str) {
        loop {
            let wait = {
                let fresh = self.bucket(method);
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let bucket = buckets.entry(method.to_string()).or_insert(fresh);
                bucket.take(Instant::now())
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Slack said to wait (`429 Retry-After`): nobody calls `method` before then.
    pub(crate) fn blocked_for(&self, method: &str, wait: Duration) {
        let fresh = self.bucket(method);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(method.to_string()).or_insert(fresh);
        bucket.blocked_until = Some(Instant::now() + wait);
        bucket.tokens = 0.0;
    }

    pub(crate) fn reduced(&self) -> bool {
        *self.reduced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Switches `conversations.history` and `conversations.replies` to the reduced limits.
    /// Returns whether this changed anything (the first detection).
    pub(crate) fn set_reduced(&self) -> bool {
        let mut r = self.reduced.lock().unwrap_or_else(|p| p.into_inner());
        if *r {
            return false;
        }
        *r = true;
        drop(r);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for method in ["conversations.history", "conversations.replies"] {
            let mut b = Bucket::new(REDUCED_PER_MINUTE, self.scale);
            // The request that revealed the limit counts as this minute's.
            b.tokens = 0.0;
            buckets.insert(method.to_string(), b);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_paces() {
        let mut b = Bucket::new(60.0, 1.0); // one a second, burst 10
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(b.take(now), None);
        }
        let wait = b.take(now).unwrap();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert_eq!(b.take(now + Duration::from_secs(1)), None);
    }

    #[test]
    fn retry_after_blocks_the_method() {
        let limiter = RateLimiter::new(1.0);
        limiter.blocked_for("users.list", Duration::from_secs(30));
        let mut buckets = limiter.buckets.lock().unwrap();
        let wait = buckets.get_mut("users.list").unwrap().take(Instant::now());
        assert!(wait.unwrap() > Duration::from_secs(29));
    }

    #[test]
    fn reduced_limits_switch_history_and_replies_only() {
        let limiter = RateLimiter::new(1.0);
        assert!(limiter.set_reduced());
        assert!(!limiter.set_reduced());
        assert_eq!(limiter.per_minute("conversations.history"), 1.0);
        assert_eq!(limiter.per_minute("conversations.replies"), 1.0);
        assert_eq!(limiter.per_minute("conversations.members"), 100.0);
    }
}
