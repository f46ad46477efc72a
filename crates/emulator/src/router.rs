//! The emulator's routes: which handler answers which method and path, and the answer to every
//! other request. It names the route modules; they share `api`'s helpers, never this file.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::Shared;
use super::api::{S, error};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/users/me", get(super::retrieve::users_me))
        .route("/v1/search", post(super::search::search))
        .route("/v1/databases/{id}", get(super::retrieve::get_database))
        .route(
            "/v1/databases/{id}/query",
            post(super::query::query_database),
        )
        .route(
            "/v1/data_sources/{id}",
            get(super::retrieve::get_data_source),
        )
        .route(
            "/v1/data_sources/{id}/query",
            post(super::query::query_data_source),
        )
        .route("/v1/pages", post(super::pages::create_page))
        .route(
            "/v1/pages/{id}",
            get(super::pages::get_page).patch(super::pages::update_page),
        )
        .route(
            "/v1/pages/{id}/properties/{property_id}",
            get(super::pages::get_page_property),
        )
        .merge(super::oauth::routes())
        .merge(super::inspect::routes())
        .fallback(not_found_route)
        .method_not_allowed_fallback(not_found_route)
        .with_state(shared)
}

/// An unknown path, or a known one with another method (`GET /v1/search`): Notion answers both
/// with a JSON error, never a bare 404 or 405.
async fn not_found_route(
    State(shared): S,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    error(
        &shared,
        400,
        "invalid_request_url",
        &format!(
            "Invalid request URL: {method} {} is not an endpoint.",
            uri.path()
        ),
    )
}
