//! Logging in to the web archive: an API token, checked against the server's tokens and kept in
//! an `HttpOnly`, `SameSite=Strict` cookie (with `Secure` when the request came over https).
//! [`Viewer`](crate::auth::Viewer) reads it when a request has no `Authorization` header.
//!
//! The two forms that change state (log in, log out) are POSTs checked against cross-site
//! requests: their `Origin` (or, failing that, `Referer`) must name this server's own host.
//! With the cookie's `SameSite=Strict` that makes them safe from cross-site request forgery.

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::layout::{Page, Section};
use super::{html_response, Reader};
use crate::state::AppState;

/// The cookie's name.
pub(crate) const COOKIE: &str = "chatvault_token";
/// A `Set-Cookie` value that removes the cookie.
pub(crate) const CLEAR_COOKIE: &str =
    "chatvault_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";
/// How long a login lasts (30 days); the token's own validity still decides on every request.
const MAX_AGE_SECS: u32 = 30 * 24 * 3600;

/// The token in the request's cookie, if any.
pub(crate) fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether a token can travel in a cookie as it is (RFC 6265 cookie-octets).
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 1024
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

/// Whether a state-changing request comes from this server's own pages: its `Origin` (or
/// `Referer`) names the same host as its `Host` header.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok());
    let Some(from) = from else {
        return false;
    };
    let authority = match (from.host_str(), from.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return false,
    };
    authority.eq_ignore_ascii_case(host)
}

fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Where to go after logging in: a path on this server only (never `//elsewhere`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

/// `?next=` on the login form.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

fn login_page(
    status: StatusCode,
    viewer: &chatvault_query::Scope,
    error: Option<&str>,
    next: &str,
) -> Response {
    let page = Page::new("Log in", None, viewer).section(Section::Other);
    let body = html! {
        section.login {
            h1 { "Log in" }
            p { "Paste the API token your administrator gave you. Public channels can be read without one; a token shows what its owner may see." }
            @if let Some(e) = error { div.error role="alert" { (e) } }
            form method="post" action="/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                input type="hidden" name="next" value=(next);
                button type="submit" { "Log in" }
            }
        }
    };
    html_response(status, page.render(body))
}

/// `GET /login`.
pub(crate) async fn form(Query(q): Query<NextQuery>, reader: Option<Reader>) -> Response {
    let viewer = reader.map_or(chatvault_query::Scope::Public, |r| r.scope);
    login_page(
        StatusCode::OK,
        &viewer,
        None,
        &local_path(q.next.as_deref()),
    )
}

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: checks the token, sets the cookie, goes on to `next`.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let public = chatvault_query::Scope::Public;
    let next = local_path(f.next.as_deref());
    if !same_origin(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            &public,
            Some("This form must be sent from this server's own login page."),
            &next,
        );
    }
    let token = f.token.trim();
    if !cookie_safe(token) || state.inner.config.auth.token_scope(token).is_none() {
        return login_page(
            StatusCode::UNAUTHORIZED,
            &public,
            Some("That token is not one this server accepts."),
            &next,
        );
    }
    let secure = if is_https(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECS}{secure}"
    );
    let mut r = Redirect::to(&next).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            r.headers_mut().insert(header::SET_COOKIE, v);
            r
        }
        Err(_) => login_page(
            StatusCode::BAD_REQUEST,
            &public,
            Some("That token cannot be kept in a cookie."),
            &next,
        ),
    }
}

/// `POST /logout`: removes the cookie.
pub(crate) async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return super::PageError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Log out from this server's own pages.",
        )
        .into_response();
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&h), "no Origin nor Referer");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://127.0.0.1:8080/login"),
        );
        assert!(same_origin(&h));
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_path(Some("/w/T1/")), "/w/T1/");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
        assert!(cookie_safe("0123abcdef"));
        assert!(!cookie_safe("a;b") && !cookie_safe("a b") && !cookie_safe(""));
    }
}
