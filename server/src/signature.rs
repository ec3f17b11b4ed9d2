//! Slack's request signatures, as Slack documents them
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>):
//! `X-Slack-Signature: v0=<hex>` is HMAC-SHA256, keyed with the app's signing secret, over
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`; a timestamp more than five minutes from now is a
//! replay and refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far the request's timestamp may be from now, in seconds (Slack's recommendation).
pub(crate) const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request's signature was refused (each a 401; the reason labels the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// `X-Slack-Request-Timestamp` or `X-Slack-Signature` is missing.
    Missing,
    /// The timestamp is not a number of seconds.
    BadTimestamp,
    /// The timestamp is more than [`MAX_SKEW_SECS`] from now.
    Stale,
    /// The signature is not `v0=<hex>`, or does not match.
    Mismatch,
}

impl SignatureError {
    /// The metric label and a message that says what to check (never the expected value).
    pub(crate) fn reason(self) -> (&'static str, &'static str) {
        match self {
            SignatureError::Missing => (
                "signature_missing",
                "X-Slack-Signature and X-Slack-Request-Timestamp are required",
            ),
            SignatureError::BadTimestamp => (
                "bad_timestamp",
                "X-Slack-Request-Timestamp is not a Unix time",
            ),
            SignatureError::Stale => (
                "stale_timestamp",
                "X-Slack-Request-Timestamp is more than 5 minutes from now",
            ),
            SignatureError::Mismatch => ("bad_signature", "the request signature does not match"),
        }
    }
}

/// Checks `signature` (the `X-Slack-Signature` header) for `body` sent at `timestamp` (the
/// `X-Slack-Request-Timestamp` header), `now` being the current Unix time. The comparison is
/// constant-time ([`Mac::verify_slice`]).
pub(crate) fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    mac(secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's published example (verifying-requests-from-slack).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: i64 = 1531420618 + 10;

    fn check(
        ts: Option<&str>,
        sig: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        verify(SECRET.as_bytes(), ts, sig, body.as_bytes(), now)
    }

    #[test]
    fn slacks_example_verifies() {
        let hex = hex::encode(
            mac(SECRET.as_bytes(), TS, BODY.as_bytes())
                .finalize()
                .into_bytes(),
        );
        assert_eq!(format!("v0={hex}"), SIG);
        assert_eq!(check(Some(TS), Some(SIG), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_changed_body_or_secret_fails() {
        let body = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            check(Some(TS), Some(SIG), &body, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret", Some(TS), Some(SIG), BODY.as_bytes(), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(TS), Some("v1=00"), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(TS), Some("v0=zz"), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_future_and_missing_timestamps_fail() {
        let t: i64 = TS.parse().unwrap();
        assert_eq!(check(Some(TS), Some(SIG), BODY, t + MAX_SKEW_SECS), Ok(()));
        assert_eq!(
            check(Some(TS), Some(SIG), BODY, t + MAX_SKEW_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            check(Some(TS), Some(SIG), BODY, t - MAX_SKEW_SECS - 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            check(None, Some(SIG), BODY, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(Some(TS), None, BODY, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(Some("soon"), Some(SIG), BODY, NOW),
            Err(SignatureError::BadTimestamp)
        );
    }
}
