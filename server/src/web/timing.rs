//! `Server-Timing` on pages: how long fetching the data took and how long rendering it did, so a
//! browser's developer tools (and the `web_pages` bench) see where a page's time goes.

use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// A page's clock: started when the handler starts, split when the data is in.
#[derive(Debug)]
pub(crate) struct Timing {
    started: Instant,
    fetched: Option<Duration>,
}

impl Timing {
    pub(crate) fn start() -> Self {
        Timing {
            started: Instant::now(),
            fetched: None,
        }
    }

    /// Everything the page shows has been fetched; rendering starts.
    pub(crate) fn fetched(&mut self) {
        self.fetched = Some(self.started.elapsed());
    }

    /// Adds `Server-Timing: fetch;dur=…, render;dur=…` (milliseconds) to the finished page.
    pub(crate) fn finish(self, mut response: Response) -> Response {
        let total = self.started.elapsed();
        let fetch = self.fetched.unwrap_or(total);
        let render = total.saturating_sub(fetch);
        let value = format!(
            "fetch;dur={:.3}, render;dur={:.3}",
            fetch.as_secs_f64() * 1e3,
            render.as_secs_f64() * 1e3
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("server-timing"), v);
        }
        response
    }
}
