//! `POST /slack/events`: Slack's Events API over HTTP.

use axum::Router;

use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
