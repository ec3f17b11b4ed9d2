//! Who is asking: API tokens, a trusted header set by an authenticating reverse proxy, or nobody
//! (anonymous, public channels only). Every API handler takes a [`Viewer`].
//!
//! # API tokens
//! Tokens are configured as a file of lines `<sha256-hex-of-token> <scope>`, where the scope is
//! `admin` (every channel) or a Slack user id (what that member may see). Blank lines and lines
//! starting with `#` are ignored. Only the hash is stored; make it with
//!
//! ```text
//! token=$(openssl rand -hex 32)
//! printf '%s' "$token" | sha256sum | cut -d' ' -f1     # the file's first column
//! ```
//!
//! (`printf '%s'`, not `echo`: the newline would be hashed too). Clients send
//! `Authorization: Bearer <token>`; the server hashes what it receives and compares hashes in
//! constant time. An unknown token is refused with 401, never downgraded to anonymous.

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chatvault_core::{Error, Result, UserId};
use chatvault_query::Scope;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::{AppState, EmailMatch};

/// One API token: the SHA-256 of the secret, and whose eyes it reads with.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    hash: [u8; 32],
    scope: Scope,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// A token whose secret hashes (SHA-256) to `hash_hex`, reading as `scope`.
    ///
    /// # Errors
    /// `InvalidInput` when `hash_hex` is not 64 hexadecimal digits.
    pub fn from_hash(hash_hex: &str, scope: Scope) -> Result<Self> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex.trim(), &mut hash).map_err(|_| {
            Error::invalid_input("a token hash must be 64 hexadecimal digits (sha256sum's output)")
        })?;
        Ok(ApiToken { hash, scope })
    }

    /// A token for this secret (hashed here; the secret is not kept).
    pub fn from_secret(secret: &str, scope: Scope) -> Self {
        ApiToken {
            hash: Sha256::digest(secret.as_bytes()).into(),
            scope,
        }
    }

    /// The scope it grants.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

/// How the API learns who is asking. The default has no tokens and no trusted header: every
/// request is anonymous and reads public channels only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// The API tokens accepted as `Authorization: Bearer <token>`.
    pub tokens: Vec<ApiToken>,
    /// A header set by an authenticating reverse proxy (e.g. `X-Auth-Request-Email`) carrying
    /// the user's email. Only enable it when the proxy strips the header from clients' requests.
    pub trusted_email_header: Option<String>,
}

impl AuthConfig {
    /// Reads API tokens from a file of `<sha256-hex-of-token> <scope>` lines; no trusted header.
    ///
    /// The scope is `admin` (every channel) or a Slack user id (what that member may see). Blank
    /// lines and lines starting with `#` are ignored. Only the hash is stored; make it with
    ///
    /// ```text
    /// token=$(openssl rand -hex 32)                      # give this to the client
    /// printf '%s' "$token" | sha256sum | cut -d' ' -f1   # put this in the file
    /// ```
    ///
    /// (`printf '%s'`, not `echo`, which would hash a newline too). Clients send
    /// `Authorization: Bearer <token>`.
    ///
    /// # Errors
    /// `Unavailable` when the file cannot be read; `InvalidInput` naming the line that is not
    /// `<64 hex digits> <admin|user id>`.
    pub fn from_tokens_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::unavailable(format!("reading tokens file {}: {e}", path.display()))
                .with_source(e)
        })?;
        Self::parse_tokens(&text).map_err(|e| e.with_context("file", path.display()))
    }

    /// Parses the tokens file's text.
    ///
    /// # Errors
    /// `InvalidInput` naming the bad line.
    pub fn parse_tokens(text: &str) -> Result<Self> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| {
                Error::invalid_input(format!("tokens file line {}: {why}", i + 1))
                    .with_context("line", i + 1)
            };
            let mut parts = line.split_whitespace();
            let (Some(hash), Some(scope), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(
                    "expected `<sha256-hex-of-token> <admin|slack user id>`",
                ));
            };
            let scope = if scope == "admin" {
                Scope::Admin
            } else {
                Scope::User(UserId::new(scope).map_err(|e| bad(&e.to_string()))?)
            };
            tokens.push(ApiToken::from_hash(hash, scope).map_err(|e| bad(&e.to_string()))?);
        }
        Ok(AuthConfig {
            tokens,
            trusted_email_header: None,
        })
    }

    /// The scope of a presented token, comparing its hash against every configured one in
    /// constant time (no early exit, so timing tells nothing about which or how many matched).
    pub(crate) fn token_scope(&self, presented: &str) -> Option<Scope> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.hash.ct_eq(&hash)) && found.is_none() {
                found = Some(t.scope.clone());
            }
        }
        found
    }
}

/// Who is asking, as an axum extractor: the [`Scope`] every read of the request is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Whose eyes the request reads with.
    pub scope: Scope,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = &state.inner.config.auth;
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
                })?;
            return auth
                .token_scope(token)
                .map(|scope| Viewer { scope })
                .ok_or_else(|| ApiError::unauthorized("unknown API token"));
        }
        if let Some(header) = &auth.trusted_email_header {
            if let Some(value) = parts.headers.get(header.as_str()) {
                let email = value
                    .to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|e| e.contains('@'))
                    .ok_or_else(|| {
                        ApiError::unauthorized(format!(
                            "the trusted header {header} does not hold an email address"
                        ))
                    })?;
                // The proxy said someone is signed in: an address no member has is refused,
                // never downgraded to anonymous.
                return match state.user_for_email(email).await? {
                    EmailMatch::One(user) => Ok(Viewer {
                        scope: Scope::User(user),
                    }),
                    EmailMatch::None => Err(ApiError::forbidden(
                        "the signed-in email address belongs to no member of this archive",
                    )),
                    EmailMatch::Ambiguous => Err(ApiError::forbidden(
                        "the signed-in email address belongs to several members of this \
                         archive's workspaces; use an API token instead",
                    )),
                };
            }
        }
        // The web archive's login cookie, when there is no Authorization header.
        if let Some(token) = crate::web::cookie_token(parts) {
            return auth
                .token_scope(&token)
                .map(|scope| Viewer { scope })
                .ok_or_else(|| ApiError::unauthorized("the login cookie's token is not accepted"));
        }
        Ok(Viewer {
            scope: Scope::Public,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_parses_and_matches_by_hash() {
        // printf '%s' secret | sha256sum
        let text = "# comment\n\n\
            2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b admin\n\
            e31ab643c44f7a0ec824b59d1194d60dac334200d845e61d2d289daa0f087ea4 U123\n";
        let auth = AuthConfig::parse_tokens(text).expect("parses");
        assert_eq!(auth.token_scope("secret"), Some(Scope::Admin));
        assert_eq!(
            auth.token_scope("member"),
            Some(Scope::User(UserId::new("U123").expect("id")))
        );
        assert_eq!(auth.token_scope("s3cr3t"), None);
        assert!(AuthConfig::parse_tokens("abc admin").is_err());
        assert!(AuthConfig::parse_tokens(
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        )
        .is_err());
    }
}
