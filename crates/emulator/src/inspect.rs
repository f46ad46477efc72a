//! The `/_emulator` inspection API: what tests and the demo see and change behind the API's back
//! (pages, stats, faults, tokens, sharing, the trash).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rand::SeedableRng;
use serde_json::json;

use super::api::S;
use super::state::normalize;
use super::{Faults, Shared, StoredPage};

pub(crate) fn routes() -> Router<std::sync::Arc<Shared>> {
    Router::new()
        .route("/_emulator/info", get(inspect_info))
        .route("/_emulator/pages", get(inspect_pages))
        .route("/_emulator/stats", get(inspect_stats))
        .route("/_emulator/faults", put(inspect_faults))
        .route("/_emulator/tokens", post(inspect_mint))
        .route("/_emulator/tokens/revoke", post(inspect_revoke))
        .route("/_emulator/tokens/expire", post(inspect_expire))
        .route("/_emulator/databases/{id}/unshare", post(inspect_unshare))
        .route("/_emulator/databases/{id}/share", post(inspect_share))
        .route("/_emulator/databases/{id}/trash", post(inspect_trash))
        .route("/_emulator/databases/{id}/restore", post(inspect_restore))
        .route(
            "/_emulator/workspaces/{id}/remove_integration",
            post(inspect_remove_integration),
        )
}

pub(crate) fn set_faults(shared: &Shared, faults: Faults) {
    *shared.rng.lock().unwrap_or_else(|e| e.into_inner()) =
        rand::rngs::StdRng::seed_from_u64(faults.seed.unwrap_or(0));
    *shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
}

pub(crate) fn set_shared(shared: &Shared, database_id: &str, on: bool) {
    with_db(shared, database_id, |db| db.unshared = !on);
}

/// Moves a database to the trash (`on`) or out of it: still readable, but rows cannot be created
/// in it ("Can't edit block that is archived").
pub(crate) fn set_trashed(shared: &Shared, database_id: &str, on: bool) {
    with_db(shared, database_id, |db| {
        db.in_trash = on;
        db.times.edited = super::state::now_rfc3339();
    });
}

fn with_db(shared: &Shared, database_id: &str, f: impl FnOnce(&mut super::state::Db)) {
    let Some(id) = normalize(database_id) else {
        return;
    };
    let mut ws = shared.lock_ws();
    if let Some(db) = ws.dbs.iter_mut().find(|d| d.id == id) {
        f(db);
    }
}

async fn inspect_info(State(shared): S) -> Response {
    let mut info = shared.info.clone();
    info.redirect_uris = shared.lock_ws().redirect_uris.clone();
    axum::Json(info).into_response()
}

async fn inspect_pages(State(shared): S) -> Response {
    let pages: Vec<StoredPage> = shared
        .lock_ws()
        .rows
        .iter()
        .map(|r| r.page.clone())
        .collect();
    axum::Json(pages).into_response()
}

async fn inspect_stats(State(shared): S) -> Response {
    let stats = shared
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(stats).into_response()
}

async fn inspect_faults(State(shared): S, axum::Json(faults): axum::Json<Faults>) -> Response {
    set_faults(&shared, faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn inspect_mint(State(shared): S) -> Response {
    let token = shared.lock_ws().mint_internal();
    axum::Json(json!({"token": token})).into_response()
}

#[derive(serde::Deserialize)]
struct TokenBody {
    token: String,
}

async fn inspect_revoke(State(shared): S, axum::Json(b): axum::Json<TokenBody>) -> Response {
    match shared.lock_ws().tokens.get_mut(&b.token) {
        Some(t) => {
            t.revoked = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn inspect_expire(State(shared): S, axum::Json(b): axum::Json<TokenBody>) -> Response {
    match shared.lock_ws().tokens.get_mut(&b.token) {
        Some(t) => {
            t.expired = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn inspect_unshare(State(shared): S, Path(id): Path<String>) -> Response {
    set_shared(&shared, &id, false);
    StatusCode::NO_CONTENT.into_response()
}

async fn inspect_share(State(shared): S, Path(id): Path<String>) -> Response {
    set_shared(&shared, &id, true);
    StatusCode::NO_CONTENT.into_response()
}

async fn inspect_trash(State(shared): S, Path(id): Path<String>) -> Response {
    set_trashed(&shared, &id, true);
    StatusCode::NO_CONTENT.into_response()
}

async fn inspect_restore(State(shared): S, Path(id): Path<String>) -> Response {
    set_trashed(&shared, &id, false);
    StatusCode::NO_CONTENT.into_response()
}

/// The user removes the integration from a workspace: its tokens stop working, and its refresh
/// tokens are refused.
pub(crate) fn remove_integration(shared: &Shared, workspace_id: &str) {
    let mut ws = shared.lock_ws();
    let Some(space) = ws.spaces.iter().position(|s| s.id == workspace_id) else {
        return;
    };
    for t in ws.tokens.values_mut().filter(|t| t.space == space) {
        t.revoked = true;
    }
    for r in ws.refresh.values_mut().filter(|r| r.space == space) {
        r.used = true;
    }
}

async fn inspect_remove_integration(State(shared): S, Path(id): Path<String>) -> Response {
    remove_integration(&shared, &id);
    StatusCode::NO_CONTENT.into_response()
}
