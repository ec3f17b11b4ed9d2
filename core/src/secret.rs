//! A string that never shows itself: bot tokens and API keys.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// A secret such as a Slack bot token (`xoxb-…`) or an embedding API key.
///
/// `Debug`, `Display` and `Serialize` print `[redacted]`; only [`expose`](Self::expose) returns
/// the value, and the memory is zeroed on drop. Deserializing reads the real value (so a config
/// file can carry one), but serializing never writes it back.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(Zeroizing::new(secret.into()))
    }

    /// The secret itself. Call it only where the value is sent to its owner (an API call or a cipher).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SecretString::new(String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_itself() {
        let s = SecretString::new("xoxb-123-secret");
        assert!(!format!("{s:?}").contains("xoxb"));
        assert!(!format!("{s}").contains("xoxb"));
        assert!(!serde_json::to_string(&s).unwrap().contains("xoxb"));
        assert_eq!(s.expose(), "xoxb-123-secret");
    }
}
