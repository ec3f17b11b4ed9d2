//! Bot tokens at rest: AES-256-GCM under a key the caller supplies, with a fresh random nonce per
//! token and the row's identity (workspace, team) as associated data, so a ciphertext copied to
//! another row does not decrypt.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use chatvault_core::{Error, Result, SecretString};
use zeroize::Zeroizing;

/// A 32-byte AES-256-GCM key that encrypts bot tokens at rest. `Debug` never shows it; its memory
/// is zeroed on drop.
#[derive(Clone)]
pub struct TokenKey(Zeroizing<[u8; 32]>);

impl TokenKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenKey(Zeroizing::new(bytes))
    }

    /// A key from 64 hexadecimal characters (how it is usually kept in configuration).
    ///
    /// # Errors
    /// `InvalidInput` if `hex` is not 64 hexadecimal characters (the value is not echoed).
    pub fn from_hex(hex: &str) -> Result<Self> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(Error::invalid_input(format!(
                "token key must be 64 hexadecimal characters (32 bytes), got {} characters",
                hex.len()
            )));
        }
        let mut out = Zeroizing::new([0u8; 32]);
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => {
                    return Err(Error::invalid_input(
                        "token key contains a character that is not hexadecimal",
                    ))
                }
            }
        }
        Ok(TokenKey(out))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0[..]))
    }

    /// Encrypts `token`; returns (nonce, ciphertext with tag).
    pub(crate) fn seal(&self, token: &SecretString, aad: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::backend_error("encrypting the bot token failed"))?;
        Ok((nonce.to_vec(), ct))
    }

    /// Decrypts what [`seal`](Self::seal) wrote.
    pub(crate) fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &str) -> Result<SecretString> {
        if nonce.len() != 12 {
            return Err(Error::backend_error(
                "stored bot token has a malformed nonce",
            ));
        }
        let plain = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::backend_error(
                    "cannot decrypt the stored bot token: wrong token key, or the row was tampered with",
                )
            })?;
        let plain = Zeroizing::new(plain);
        let s = std::str::from_utf8(&plain)
            .map_err(|_| Error::backend_error("decrypted bot token is not UTF-8"))?;
        Ok(SecretString::new(s))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_to_its_row() {
        let key = TokenKey::from_bytes([7; 32]);
        let token = SecretString::new("xoxb-1-secret");
        let (nonce, ct) = key.seal(&token, "T1/").unwrap();
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open(&nonce, &ct, "T1/").unwrap().expose(),
            "xoxb-1-secret"
        );
        assert!(key.open(&nonce, &ct, "T2/").is_err());
        let other = TokenKey::from_bytes([8; 32]);
        assert!(other.open(&nonce, &ct, "T1/").is_err());
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn hex_keys_are_checked() {
        assert!(TokenKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(TokenKey::from_hex("abc").is_err());
        assert!(TokenKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
