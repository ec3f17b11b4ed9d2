//! The stylesheet and the script, compiled into the binary and served with a content hash in
//! their URLs (so they can be cached for long and still change with the binary).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The stylesheet.
pub(crate) const CSS: &str = include_str!("static/app.css");
/// The script: progressive enhancement only (every page works without it).
pub(crate) const JS: &str = include_str!("static/app.js");

fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(CSS.as_bytes());
        h.update(JS.as_bytes());
        hex::encode(&h.finalize()[..6])
    })
}

pub(crate) fn css_url() -> String {
    format!("/static/app.css?v={}", version())
}

pub(crate) fn js_url() -> String {
    format!("/static/app.js?v={}", version())
}

pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return super::not_found_page(None).await,
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
