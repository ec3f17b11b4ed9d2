//! One backoff for every retry: the outbox's retry policy, the metadata writes, and the HTTP
//! clients (Slack's Web API, the embedding and language-model endpoints, ChromaDB).

use std::time::Duration;

use rand::Rng;

/// How long to wait before each retry: `initial`, then doubling, never more than `max`, spread
/// by [`Jitter`] so that clients that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use chatvault_core::{Backoff, Jitter};
///
/// let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2));
/// assert_eq!(b.delay(0), Duration::from_millis(100));
/// assert_eq!(b.delay(3), Duration::from_millis(800));
/// assert_eq!(b.delay(10), Duration::from_secs(2));
/// let jittered = b.with_jitter(Jitter::Full);
/// assert!(jittered.delay(3) <= Duration::from_millis(800));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub initial: Duration,
    /// The longest delay, jitter and server hints included.
    pub max: Duration,
    /// How the delay is spread.
    pub jitter: Jitter,
}

/// How a [`Backoff`] spreads its delays.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly the doubling delay.
    #[default]
    None,
    /// Uniform between zero and the doubling delay ("full jitter"): the spread that keeps many
    /// clients of one server apart best.
    Full,
    /// The doubling delay times a uniform factor in `[1 - f, 1 + f]` (`f` in `0..=1`).
    Proportional(f64),
}

impl Backoff {
    /// Doubling from `initial` up to `max`, without jitter.
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: Jitter::None,
        }
    }

    /// The same backoff with `jitter`.
    #[must_use]
    pub const fn with_jitter(self, jitter: Jitter) -> Self {
        Backoff { jitter, ..self }
    }

    /// The delay before retry `retry` (0: the first retry) without jitter:
    /// `initial × 2^retry`, at most `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << retry.min(31))
            .min(self.max)
    }

    /// The delay before retry `retry` (0: the first retry), jitter applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let delay = match self.jitter {
            Jitter::None => ceiling,
            _ if ceiling.is_zero() => ceiling,
            Jitter::Full => rand::rng().random_range(Duration::ZERO..=ceiling),
            Jitter::Proportional(f) => {
                let f = if f.is_finite() {
                    f.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                ceiling.mul_f64(rand::rng().random_range(1.0 - f..=1.0 + f))
            }
        };
        delay.min(self.max)
    }

    /// As [`delay`](Self::delay), but never shorter than what the server asked for
    /// (`Retry-After`), and still at most `max`.
    pub fn delay_honouring(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let delay = self.delay(retry);
        match retry_after {
            Some(after) => after.max(delay).min(self.max),
            None => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_initial_and_stops_at_max() {
        let b = Backoff::exponential(MS * 50, MS * 1000);
        let got: Vec<u128> = (0..8).map(|r| b.delay(r).as_millis()).collect();
        assert_eq!(got, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(
            b.delay(u32::MAX),
            MS * 1000,
            "huge retry counts do not overflow"
        );
    }

    #[test]
    fn full_jitter_stays_between_zero_and_the_ceiling() {
        let b = Backoff::exponential(MS * 100, MS * 5000).with_jitter(Jitter::Full);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= MS * 800));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "the delays are spread"
        );
    }

    #[test]
    fn proportional_jitter_stays_within_its_fraction_and_the_max() {
        let b = Backoff::exponential(MS * 100, MS * 1000).with_jitter(Jitter::Proportional(0.25));
        for _ in 0..200 {
            let d = b.delay(2);
            assert!(d >= MS * 300 && d <= MS * 500, "{d:?}");
            assert!(b.delay(10) <= MS * 1000, "the max holds after jitter");
        }
    }

    #[test]
    fn a_server_hint_lengthens_the_delay_up_to_the_max() {
        let b = Backoff::exponential(MS * 10, MS * 2000);
        assert_eq!(b.delay_honouring(0, Some(MS * 700)), MS * 700);
        assert_eq!(b.delay_honouring(0, Some(MS * 9000)), MS * 2000);
        assert_eq!(b.delay_honouring(4, None), MS * 160);
        assert_eq!(b.delay_honouring(4, Some(MS * 5)), MS * 160);
    }
}
