//! The OpenAPI description of the JSON API, served at `GET /api/v1/openapi.json`.
//!
//! Bodies of chatvault's library types are described as JSON objects naming the Rust type (its
//! serde form is the reference), rather than deriving schemas on every core type.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatvault",
        description = "A Slack archive's JSON API. Send `Authorization: Bearer <token>` to read \
                       as a member or an administrator; without it, only public channels are \
                       visible. Errors are `{\"error\": {\"kind\", \"message\"}}`."
    ),
    paths(
        api::workspaces,
        api::search,
        api::thread,
        api::context,
        api::digest,
        api::prs,
        api::ask,
        api::stats,
        api::channels,
        api::channel_day,
        document,
    ),
    components(schemas(api::AskBody)),
    modifiers(&BearerToken),
    security((), ("bearer" = []))
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 description of this API", body = serde_json::Value)))]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
