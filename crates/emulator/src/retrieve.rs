//! The retrieve routes: `GET /v1/users/me`, `/v1/databases/{id}` and `/v1/data_sources/{id}`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::api::{S, needs_data_sources, not_found, ok, path_id, prelude};
use super::objects;
use super::state::TokenKind;

pub(crate) async fn users_me(State(shared): S, headers: HeaderMap) -> Response {
    let (_, _, info, _) = match prelude(&shared, &headers, "GET /v1/users/me").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ws = shared.lock_ws();
    let space = ws.space(&info);
    let owner = match info.kind {
        TokenKind::Internal => json!({"type": "workspace", "workspace": true}),
        TokenKind::OAuth(_) => json!({"type": "user", "user": super::oauth::owner_user(space)}),
    };
    ok(
        &shared,
        json!({
            "object": "user",
            "id": space.bot_id,
            "name": "notion-inbox",
            "avatar_url": null,
            "type": "bot",
            "bot": {"owner": owner, "workspace_name": space.name, "workspace_id": space.id,
                "workspace_limits": {"max_file_upload_size_in_bytes": 5_242_880}},
        }),
    )
}

pub(crate) async fn get_database(
    State(shared): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "GET /v1/databases/{id}").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match path_id(&shared, "database_id", &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let ws = shared.lock_ws();
    match ws.db(&info, &id) {
        Some(db) => ok(&shared, objects::database(&ws, db, version)),
        None => not_found(&shared, "database", &id),
    }
}

pub(crate) async fn get_data_source(
    State(shared): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "GET /v1/data_sources/{id}").await
    {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !version.data_sources() {
        return needs_data_sources(&shared);
    }
    let id = match path_id(&shared, "data_source_id", &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let ws = shared.lock_ws();
    match ws.ds(&info, &id) {
        Some(ds) => ok(&shared, objects::data_source(&ws, ds, version)),
        None => not_found(&shared, "data_source", &id),
    }
}
