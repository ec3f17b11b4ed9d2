//! The web archive: server-rendered pages over the same query engine and the same [`Viewer`]
//! scope as the JSON API. Pages live under `/w/{workspace}/…`; `/` lists the workspaces and
//! `/m/{channel}/{ts}` finds a message's workspace. A channel the viewer may not read is
//! answered like one that does not exist (404), on every page.
//!
//! Every page is HTML built with maud, which escapes whatever it interpolates; the only
//! pre-escaped pieces are the ones [`mrkdwn`] builds the same way. Assets (one stylesheet, one
//! small script) are compiled into the binary; nothing is fetched from elsewhere, and the
//! Content-Security-Policy says so.

mod assets;
mod browse;
mod days;
mod layout;
mod mrkdwn;
mod render;
mod reports;
mod search;
mod session;
mod timing;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chatvault_core::{Channel, ChannelId, Error, ErrorKind, Workspace, WorkspaceId};
use chatvault_query::Scope;
use maud::Markup;

use crate::auth::Viewer;
use crate::state::AppState;

pub(crate) use layout::Page;
pub(crate) use session::cookie_token;

/// The pages, with [`signed_in_errors`] around them.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(browse::index))
        .route("/static/{file}", get(assets::serve))
        .route("/login", get(session::form).post(session::login))
        .route("/logout", axum::routing::post(session::logout))
        .route("/m/{channel}/{ts}", get(browse::find_message))
        .route("/w/{ws}", get(browse::home))
        .route("/w/{ws}/", get(browse::home))
        .route("/w/{ws}/c/{channel}", get(browse::channel_latest))
        .route("/w/{ws}/c/{channel}/{day}", get(browse::channel_day))
        .route("/w/{ws}/t/{channel}/{ts}", get(browse::thread))
        .route("/w/{ws}/m/{channel}/{ts}", get(browse::message))
        .route("/w/{ws}/search", get(search::page))
        .route("/w/{ws}/digest", get(reports::digest))
        .route("/w/{ws}/prs", get(reports::prs))
        .route("/w/{ws}/ask", get(reports::ask))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            signed_in_errors,
        ))
}

/// An error page rendered without knowing who asked (a `?` in a handler): the response
/// carries it so that [`signed_in_errors`] can render it again for a signed-in visitor.
#[derive(Debug, Clone)]
struct Unsigned(PageError);

/// Error pages show who is signed in, as every other page does: a page that fails with `?`
/// before it knew its viewer is rendered again here, with the viewer read from the request's
/// headers (only on that path: a page that succeeds costs a copy of its headers).
async fn signed_in_errors(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut asked = axum::http::Request::new(());
    *asked.uri_mut() = request.uri().clone();
    *asked.headers_mut() = request.headers().clone();
    let mut response = next.run(request).await;
    let Some(Unsigned(error)) = response.extensions_mut().remove::<Unsigned>() else {
        return response;
    };
    let (mut parts, ()) = asked.into_parts();
    match <Reader as FromRequestParts<AppState>>::from_request_parts(&mut parts, &state).await {
        Ok(reader) if reader.scope != Scope::Public => error.with_reader(reader).into_response(),
        _ => response,
    }
}

/// Whether a request wants a page rather than JSON (browsers ask for `text/html`); such
/// requests get HTML error pages from the router's fallback.
pub(crate) fn wants_html(parts: &Parts) -> bool {
    let path = parts.uri.path();
    if path.starts_with("/api/") || path.starts_with("/slack/") {
        return false;
    }
    parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The router's fallback for a page request: the 404 page.
pub(crate) async fn not_found_page(reader: Option<Reader>) -> Response {
    let page = PageError::not_found("There is no page at this address.");
    let page = match reader {
        Some(r) => page.with_reader(r),
        None => page,
    };
    page.into_response()
}

/// The viewer of a page: [`Viewer`], with its refusals shown as a page (a cookie whose token
/// is no longer accepted is cleared, and the page offers the login form).
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    pub(crate) scope: Scope,
    /// The member's name in the page's workspace (for the header), when signed in as one.
    pub(crate) name: Option<String>,
}

/// The name of a signed-in member in the workspace of a `/w/{ws}/…` path.
async fn member_name(state: &AppState, path: &str, scope: &Scope) -> Option<String> {
    let Scope::User(user) = scope else {
        return None;
    };
    let ws = path.strip_prefix("/w/")?.split('/').next()?;
    let ws = WorkspaceId::new(ws).ok()?;
    let users = state
        .meta()
        .get_users(&ws, std::slice::from_ref(user))
        .await
        .ok()?;
    users.first().map(|u| u.best_name().to_string())
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Viewer::from_request_parts(parts, state).await {
            Ok(v) => {
                let name = member_name(state, parts.uri.path(), &v.scope).await;
                Ok(Reader {
                    scope: v.scope,
                    name,
                })
            }
            Err(e) => {
                let mut page = PageError::new(
                    StatusCode::UNAUTHORIZED,
                    "Not signed in",
                    format!("{} — sign in again with an API token.", e.message()),
                )
                .into_response();
                page.headers_mut().append(
                    header::SET_COOKIE,
                    HeaderValue::from_static(session::CLEAR_COOKIE),
                );
                Err(page)
            }
        }
    }
}

impl OptionalFromRequestParts<AppState> for Reader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Reader as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// An error answered as a page: 404 for anything not there (or not the viewer's to see), 400
/// with the reason for bad input, 500 with no detail (the detail goes to the log).
#[derive(Debug, Clone)]
pub(crate) struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
    viewer: Scope,
    /// The signed-in member's name, when known.
    name: Option<String>,
    /// Whether the viewer was set (else [`signed_in_errors`] may render it again).
    told: bool,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        PageError {
            status,
            title,
            message: message.into(),
            viewer: Scope::Public,
            name: None,
            told: false,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    pub(crate) fn with_viewer(mut self, viewer: Scope) -> Self {
        self.viewer = viewer;
        self.told = true;
        self
    }

    /// The page as `reader` sees it (signed in, by name).
    pub(crate) fn with_reader(mut self, reader: Reader) -> Self {
        self.name = reader.name;
        self.with_viewer(reader.scope)
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::NotFound => {
                PageError::not_found("Nothing here: it does not exist, or you may not see it.")
            }
            ErrorKind::InvalidInput => {
                PageError::new(StatusCode::BAD_REQUEST, "Bad request", e.to_string())
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "page failed");
                PageError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The archive is unavailable right now; try again shortly.",
                )
            }
            _ => {
                tracing::warn!(error = %e, "page failed");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The page could not be built; the server's log says why.",
                )
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = Page::new(self.title, None, &self.viewer).named(self.name.as_deref());
        let body = maud::html! {
            section.error-page {
                h1 { (self.title) }
                p { (self.message) }
                p { a href="/" { "Back to the archive" } }
            }
        };
        let mut response = html_response(self.status, page.render(body));
        if !self.told {
            response.extensions_mut().insert(Unsigned(self));
        }
        response
    }
}

/// An HTML response with the archive's security headers.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page's result.
pub(crate) type PageResult = Result<Response, PageError>;

/// The workspace named in the path.
pub(crate) async fn workspace(state: &AppState, ws: &str) -> Result<Workspace, PageError> {
    let not_found = || PageError::not_found(format!("There is no workspace {ws:?}."));
    let id = WorkspaceId::new(ws).map_err(|_| not_found())?;
    state.meta().get_workspace(&id).await?.ok_or_else(not_found)
}

/// The channels the viewer may read, by name.
pub(crate) async fn channels(
    state: &AppState,
    ws: &WorkspaceId,
    scope: &Scope,
) -> Result<Vec<Channel>, PageError> {
    Ok(state.engine().channels(ws, scope).await?)
}

/// A channel given as `#name`, `name` or id among those the viewer may read; any other is the
/// same 404 whether it exists or not.
pub(crate) fn find_channel<'a>(
    channels: &'a [Channel],
    given: &str,
) -> Result<&'a Channel, PageError> {
    let name = given.trim_start_matches('#');
    channels
        .iter()
        .find(|c| c.id.as_str() == name)
        .or_else(|| channels.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
        // The same words whatever was asked, so the answer says nothing of hidden channels.
        .ok_or_else(|| PageError::not_found("There is no such channel here."))
}

/// The page URL of a channel (by name, which reads better than the id).
pub(crate) fn channel_url(ws: &WorkspaceId, channel: &Channel) -> String {
    format!("/w/{ws}/c/{}", url_segment(&channel.name))
}

/// A channel id's page URL when only the id is at hand.
pub(crate) fn channel_id_url(ws: &WorkspaceId, channel: &ChannelId) -> String {
    format!("/w/{ws}/c/{channel}")
}

/// Percent-encodes one path segment.
pub(crate) fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
