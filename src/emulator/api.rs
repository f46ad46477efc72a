//! The emulator's routes: the Notion API proper, and the `/_emulator` inspection API.
// Handlers return an axum `Response` as their error: built once per failed request, its size is
// of no consequence, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use governor::clock::Clock;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::objects::{self, Version};
use super::state::{Row, TokenInfo, TokenKind, normalize, now_rfc3339};
use super::{ConnKill, Faults, Shared, StoredPage};

type S = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/users/me", get(users_me))
        .route("/v1/search", post(search))
        .route("/v1/databases/{id}", get(get_database))
        .route("/v1/databases/{id}/query", post(query_database))
        .route("/v1/data_sources/{id}", get(get_data_source))
        .route("/v1/data_sources/{id}/query", post(query_data_source))
        .route("/v1/pages", post(create_page))
        .merge(super::oauth::routes())
        .route("/_emulator/info", get(inspect_info))
        .route("/_emulator/pages", get(inspect_pages))
        .route("/_emulator/stats", get(inspect_stats))
        .route("/_emulator/faults", put(inspect_faults))
        .route("/_emulator/tokens", post(inspect_mint))
        .route("/_emulator/tokens/revoke", post(inspect_revoke))
        .route("/_emulator/tokens/expire", post(inspect_expire))
        .route("/_emulator/databases/{id}/unshare", post(inspect_unshare))
        .route("/_emulator/databases/{id}/share", post(inspect_share))
        .fallback(not_found_route)
        .with_state(shared)
}

/// An error answer, as Notion sends it.
pub(crate) fn error(shared: &Shared, status: u16, code: &str, message: &str) -> Response {
    let id = shared.request_id();
    let body = json!({"object": "error", "status": status, "code": code, "message": message, "request_id": id});
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-notion-request-id", v);
    }
    r
}

/// A success answer, with its request id in the `x-notion-request-id` header.
pub(crate) fn ok(shared: &Shared, body: Value) -> Response {
    let id = shared.request_id();
    let mut r = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-notion-request-id", v);
    }
    r
}

fn retry_after(mut r: Response, secs: u64) -> Response {
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(secs.max(1)));
    r
}

/// A storm's answer: `Retry-After: 1`, or the header the faults ask for.
fn storm_retry_after(r: Response, custom: Option<&str>) -> Response {
    let mut r = retry_after(r, 1);
    if let Some(v) = custom.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

async fn not_found_route(State(shared): S, uri: axum::http::Uri) -> Response {
    error(
        &shared,
        400,
        "invalid_request_url",
        &format!("Invalid request URL: {}", uri.path()),
    )
}

/// What the fault dice said for one request.
struct Dice {
    latency: Duration,
    storm_429: bool,
    storm_529: bool,
    storm_retry_after: Option<String>,
    storm_token: Option<String>,
    error_before: Option<u16>,
    timeout_after: bool,
    drop_after: bool,
}

fn roll(shared: &Shared) -> Dice {
    let f = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut rng = shared.rng.lock().unwrap_or_else(|e| e.into_inner());
    let jitter = if f.latency_jitter.is_zero() {
        Duration::ZERO
    } else {
        f.latency_jitter.mul_f64(rng.random::<f64>())
    };
    let mut hit = |p: f64| p > 0.0 && rng.random::<f64>() < p;
    let storm_429 = hit(f.storm_429);
    let storm_529 = hit(f.storm_529);
    let error_before = hit(f.error_before_write);
    let timeout_after = hit(f.timeout_after_write);
    let drop_after = hit(f.drop_after_write);
    let code = [500u16, 502, 503, 504][rng.random_range(0..4)];
    Dice {
        latency: f.latency + jitter,
        storm_429,
        storm_529,
        storm_retry_after: f.storm_retry_after.clone(),
        storm_token: f.storm_token.clone(),
        error_before: error_before.then_some(code),
        timeout_after,
        drop_after,
    }
}

/// The checks every authenticated request passes: version, token, rate limits, latency, storms.
/// Returns the version, the token and its grants, and the fault dice for this request.
async fn prelude(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(Version, String, TokenInfo, Dice), Response> {
    shared.count(|s| *s.requests.entry(endpoint.to_owned()).or_default() += 1);
    let dice = roll(shared);
    if !dice.latency.is_zero() {
        tokio::time::sleep(dice.latency).await;
    }
    let version = match headers.get("notion-version").and_then(|v| v.to_str().ok()) {
        None => {
            return Err(error(
                shared,
                400,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
            ));
        }
        Some(v) => Version::parse(v).ok_or_else(|| {
            error(
                shared,
                400,
                "validation_error",
                &format!("Notion-Version header failed validation: `{v}` is not a supported version (2022-06-28, 2025-09-03, 2026-03-11)."),
            )
        })?,
    };
    let unauthorized = || error(shared, 401, "unauthorized", "API token is invalid.");
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?
        .to_owned();
    let info = shared
        .lock_ws()
        .tokens
        .get(&token)
        .cloned()
        .ok_or_else(unauthorized)?;
    let ttl_over = match (info.kind.clone(), shared.access_token_ttl) {
        (TokenKind::OAuth(at), Some(ttl)) => at.elapsed() > ttl,
        _ => false,
    };
    if info.revoked || info.expired || ttl_over {
        return Err(unauthorized());
    }
    let now = shared.per_token.clock().now();
    let limited = |e: governor::NotUntil<_>| {
        let wait = e.wait_time_from(now);
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    };
    let mut wait = shared.per_token.check_key(&token).err().map(limited);
    if wait.is_none()
        && let Some(l) = &shared.per_workspace
    {
        let ws = shared.info.workspace_id.clone();
        wait = l.check_key(&ws).err().map(limited);
    }
    if let Some(secs) = wait {
        shared.count(|s| s.rate_limited += 1);
        return Err(retry_after(
            error(
                shared,
                429,
                "rate_limited",
                "You have been rate limited. Please try again in a few minutes.",
            ),
            secs,
        ));
    }
    let stormed = dice.storm_token.as_ref().is_none_or(|t| *t == token);
    if dice.storm_429 && stormed {
        shared.fault("storm_429");
        return Err(storm_retry_after(
            error(
                shared,
                429,
                "rate_limited",
                "You have been rate limited. Please try again in a few minutes.",
            ),
            dice.storm_retry_after.as_deref(),
        ));
    }
    if dice.storm_529 && stormed {
        shared.fault("storm_529");
        return Err(storm_retry_after(
            error(
                shared,
                529,
                "service_overload",
                "Notion is overloaded. Please try again later.",
            ),
            dice.storm_retry_after.as_deref(),
        ));
    }
    Ok((version, token, info, dice))
}

fn not_found(shared: &Shared, kind: &str, id: &str) -> Response {
    error(
        shared,
        404,
        "object_not_found",
        &format!(
            "Could not find {kind} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
        ),
    )
}

fn parse_body(shared: &Shared, body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    if body.len() > 500 * 1024 {
        return Err(error(
            shared,
            413,
            "validation_error",
            "Request body too large.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        error(
            shared,
            400,
            "invalid_json",
            &format!("Error parsing JSON body: {e}"),
        )
    })
}

/// Refuses keys other than `allowed` at the top of a body.
fn only_keys(shared: &Shared, body: &Value, allowed: &[&str]) -> Result<(), Response> {
    let Some(o) = body.as_object() else {
        return Err(error(
            shared,
            400,
            "validation_error",
            "body failed validation: body should be an object.",
        ));
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(error(
            shared,
            400,
            "validation_error",
            &format!(
                "body failed validation: body.{k} should be not present, instead was `{}`.",
                o[k]
            ),
        ));
    }
    Ok(())
}

fn page_size(shared: &Shared, body: &Value) -> Result<usize, Response> {
    match body.get("page_size") {
        None | Some(Value::Null) => Ok(100),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n @ 1..=100) => Ok(n as usize),
            _ => Err(error(
                shared,
                400,
                "validation_error",
                &format!(
                    "body failed validation: body.page_size should be ≤ `100` and ≥ `1`, instead was `{n}`."
                ),
            )),
        },
        Some(other) => Err(error(
            shared,
            400,
            "validation_error",
            &format!(
                "body failed validation: body.page_size should be a number, instead was `{other}`."
            ),
        )),
    }
}

/// Pagination over `items`: cursors are the index of the next item, as a string.
fn paginate(
    shared: &Shared,
    body: &Value,
    items: Vec<Value>,
    kind: &str,
) -> Result<Response, Response> {
    let size = page_size(shared, body)?;
    let start = match body.get("start_cursor").and_then(Value::as_str) {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            error(shared, 400, "validation_error", &format!("body failed validation: body.start_cursor should be a valid cursor, instead was `\"{c}\"`."))
        })?,
    };
    let end = (start + size).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let has_more = end < items.len();
    Ok(ok(
        shared,
        json!({
            "object": "list",
            "results": page,
            "next_cursor": if has_more { json!(end.to_string()) } else { Value::Null },
            "has_more": has_more,
            "type": kind,
            kind: {},
        }),
    ))
}

async fn users_me(State(shared): S, headers: HeaderMap) -> Response {
    let (_, _, info, _) = match prelude(&shared, &headers, "GET /v1/users/me").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ws = shared.lock_ws();
    let owner = match info.kind {
        TokenKind::Internal => json!({"type": "workspace", "workspace": true}),
        TokenKind::OAuth(_) => json!({"type": "user", "user": super::oauth::owner_user(&ws)}),
    };
    ok(
        &shared,
        json!({
            "object": "user",
            "id": ws.bot_id,
            "name": "notion-inbox",
            "avatar_url": null,
            "type": "bot",
            "bot": {"owner": owner, "workspace_name": ws.name, "workspace_id": ws.id,
                "workspace_limits": {"max_file_upload_size_in_bytes": 5_242_880}},
        }),
    )
}

async fn search(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "POST /v1/search").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = (|| {
        let body = parse_body(&shared, &body)?;
        only_keys(
            &shared,
            &body,
            &["query", "filter", "sort", "start_cursor", "page_size"],
        )?;
        let container = if version.data_sources() {
            "data_source"
        } else {
            "database"
        };
        let filter = match body.get("filter") {
            None | Some(Value::Null) => None,
            Some(f) => {
                let value = f.get("value").and_then(Value::as_str).unwrap_or("");
                if f.get("property").and_then(Value::as_str) != Some("object")
                    || (value != "page" && value != container)
                {
                    return Err(error(
                        &shared,
                        400,
                        "validation_error",
                        &format!(
                            "body failed validation: body.filter.value should be `\"page\"` or `\"{container}\"`, instead was `\"{value}\"`."
                        ),
                    ));
                }
                Some(value.to_owned())
            }
        };
        let query = body
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        let ws = shared.lock_ws();
        let mut items: Vec<(String, Value)> = Vec::new();
        if filter.as_deref() != Some("page") {
            for db in ws.dbs.iter().filter(|d| ws.db(&info, &d.id).is_some()) {
                if version.data_sources() {
                    for ds in ws.dss.iter().filter(|d| d.database_id == db.id) {
                        items.push((ds.name.clone(), objects::data_source(&ws, ds, version)));
                    }
                } else {
                    items.push((db.title.clone(), objects::database(&ws, db, version)));
                }
            }
        }
        if filter.as_deref() != Some(container) {
            for (id, title) in &ws.plain_pages {
                if info.page_grants.contains(id) {
                    items.push((title.clone(), objects::plain_page(&ws, id, title, version)));
                }
            }
            for row in &ws.rows {
                let Some(ds) = ws.ds(&info, &row.page.data_source_id) else {
                    continue;
                };
                let title = row
                    .page
                    .properties
                    .as_object()
                    .and_then(|m| m.values().find(|v| v["type"] == "title"))
                    .map(|v| objects::plain(&v["title"]))
                    .unwrap_or_default();
                items.push((
                    title,
                    objects::page(
                        &ws,
                        &row.page.id,
                        &row.created,
                        ds,
                        &row.page.properties,
                        version,
                    ),
                ));
            }
        }
        let mut items: Vec<Value> = items
            .into_iter()
            .filter(|(t, _)| query.is_empty() || t.to_lowercase().contains(&query))
            .map(|(_, v)| v)
            .collect();
        if body.pointer("/sort/direction").and_then(Value::as_str) == Some("ascending") {
            items.reverse();
        }
        drop(ws);
        let kind = if version.data_sources() {
            "page_or_data_source"
        } else {
            "page_or_database"
        };
        paginate(&shared, &body, items, kind)
    })();
    result.unwrap_or_else(|r| r)
}

async fn get_database(State(shared): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "GET /v1/databases/{id}").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let ws = shared.lock_ws();
    match ws.db(&info, &id) {
        Some(db) => ok(&shared, objects::database(&ws, db, version)),
        None => not_found(&shared, "database", &id),
    }
}

/// The answer to a data source endpoint under 2022-06-28.
fn needs_data_sources(shared: &Shared) -> Response {
    error(
        shared,
        400,
        "invalid_request_url",
        "Invalid request URL: data sources need Notion-Version 2025-09-03 or later.",
    )
}

async fn get_data_source(State(shared): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "GET /v1/data_sources/{id}").await
    {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !version.data_sources() {
        return needs_data_sources(&shared);
    }
    let ws = shared.lock_ws();
    match ws.ds(&info, &id) {
        Some(ds) => ok(&shared, objects::data_source(&ws, ds, version)),
        None => not_found(&shared, "data_source", &id),
    }
}

async fn query_database(
    State(shared): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (version, _, info, _) =
        match prelude(&shared, &headers, "POST /v1/databases/{id}/query").await {
            Ok(p) => p,
            Err(r) => return r,
        };
    if version.data_sources() {
        return error(
            &shared,
            400,
            "invalid_request_url",
            "Invalid request URL: under Notion-Version 2025-09-03 and later, query a data source: POST /v1/data_sources/{id}/query.",
        );
    }
    let ds_id = {
        let ws = shared.lock_ws();
        match ws.db(&info, &id) {
            Some(db) => db.data_sources[0].clone(),
            None => return not_found(&shared, "database", &id),
        }
    };
    query(&shared, version, &info, &ds_id, &body).unwrap_or_else(|r| r)
}

async fn query_data_source(
    State(shared): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (version, _, info, _) =
        match prelude(&shared, &headers, "POST /v1/data_sources/{id}/query").await {
            Ok(p) => p,
            Err(r) => return r,
        };
    if !version.data_sources() {
        return needs_data_sources(&shared);
    }
    query(&shared, version, &info, &id, &body).unwrap_or_else(|r| r)
}

fn query(
    shared: &Shared,
    version: Version,
    info: &TokenInfo,
    ds_id: &str,
    body: &Bytes,
) -> Result<Response, Response> {
    let body = parse_body(shared, body)?;
    only_keys(
        shared,
        &body,
        &[
            "filter",
            "sorts",
            "start_cursor",
            "page_size",
            "filter_properties",
            "archived",
            "in_trash",
            "result_type",
        ],
    )?;
    let ws = shared.lock_ws();
    let Some(ds) = ws.ds(info, ds_id) else {
        return Err(not_found(shared, "data_source", ds_id));
    };
    let filter = body.get("filter").cloned().unwrap_or(Value::Null);
    let mut items = Vec::new();
    for row in ws.visible_rows(&ds.id) {
        if matches(shared, ds, &row.page.properties, &filter)? {
            items.push(objects::page(
                &ws,
                &row.page.id,
                &row.created,
                ds,
                &row.page.properties,
                version,
            ));
        }
    }
    drop(ws);
    paginate(shared, &body, items, "page_or_data_source")
}

/// Evaluates a query filter (text `equals`/`contains`/`is_empty` on title and rich_text, `and`, `or`).
fn matches(
    shared: &Shared,
    ds: &super::state::Ds,
    props: &Value,
    filter: &Value,
) -> Result<bool, Response> {
    if filter.is_null() {
        return Ok(true);
    }
    let bad = |m: String| {
        error(
            shared,
            400,
            "validation_error",
            &format!("body failed validation: {m}"),
        )
    };
    if let Some(all) = filter.get("and").and_then(Value::as_array) {
        for f in all {
            if !matches(shared, ds, props, f)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(any) = filter.get("or").and_then(Value::as_array) {
        for f in any {
            if matches(shared, ds, props, f)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let key = filter
        .get("property")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("body.filter.property should be defined, instead was `undefined`.".into())
        })?;
    let p = ds
        .props
        .iter()
        .find(|p| p.name == key || p.id == key)
        .ok_or_else(|| bad(format!("Could not find property with name or id: {key}")))?;
    let cond = filter
        .get("rich_text")
        .or_else(|| filter.get("title"))
        .ok_or_else(|| bad("the emulator filters title and rich_text properties only (rich_text or title conditions).".into()))?;
    if p.ty != "title" && p.ty != "rich_text" {
        return Err(bad(format!(
            "property {key} is of type {}, not text.",
            p.ty
        )));
    }
    let text = props
        .get(&p.name)
        .map(|v| objects::plain(&v[p.ty]))
        .unwrap_or_default();
    if let Some(s) = cond.get("equals").and_then(Value::as_str) {
        return Ok(text == s);
    }
    if let Some(s) = cond.get("contains").and_then(Value::as_str) {
        return Ok(text.contains(s));
    }
    if cond.get("is_empty").is_some() {
        return Ok(text.is_empty());
    }
    Err(bad(
        "a text condition needs equals, contains or is_empty.".into()
    ))
}

async fn create_page(
    State(shared): S,
    headers: HeaderMap,
    axum::Extension(kill): axum::Extension<ConnKill>,
    body: Bytes,
) -> Response {
    let received_at = SystemTime::now();
    let (version, token, info, dice) = match prelude(&shared, &headers, "POST /v1/pages").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(status) = dice.error_before {
        shared.fault(&format!("error_before_write_{status}"));
        if status == 502 {
            let mut r = (
                StatusCode::BAD_GATEWAY,
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/html"));
            return r;
        }
        let (code, message) = match status {
            500 => ("internal_server_error", "Unexpected error occurred."),
            503 => (
                "service_unavailable",
                "Notion is unavailable, please try again later.",
            ),
            _ => (
                "gateway_timeout",
                "Notion timed out while processing the request.",
            ),
        };
        return error(&shared, status, code, message);
    }
    let stored = match store_page(&shared, version, &token, &info, &body, received_at) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if dice.timeout_after {
        shared.fault("timeout_after_write");
        return error(
            &shared,
            504,
            "gateway_timeout",
            "Notion timed out while processing the request.",
        );
    }
    if dice.drop_after {
        shared.fault("drop_after_write");
        kill.0.cancel();
        // The connection task drops the connection; this answer is never sent.
        std::future::pending::<()>().await;
    }
    ok(&shared, stored)
}

fn store_page(
    shared: &Shared,
    version: Version,
    _token: &str,
    info: &TokenInfo,
    body: &Bytes,
    received_at: SystemTime,
) -> Result<Value, Response> {
    let body = parse_body(shared, body)?;
    only_keys(
        shared,
        &body,
        &[
            "parent",
            "properties",
            "children",
            "icon",
            "cover",
            "content",
            "template",
            "position",
        ],
    )?;
    let bad = |m: String| error(shared, 400, "validation_error", &m);
    let parent = body.get("parent").ok_or_else(|| {
        bad(
            "body failed validation: body.parent should be defined, instead was `undefined`."
                .into(),
        )
    })?;
    let mut ws = shared.lock_ws();
    let ds_index = if let Some(ds_id) = parent.get("data_source_id").and_then(Value::as_str) {
        if !version.data_sources() {
            return Err(bad("body failed validation: body.parent.data_source_id is not supported under Notion-Version 2022-06-28; use database_id.".into()));
        }
        let Some(ds) = ws.ds(info, ds_id) else {
            return Err(not_found(shared, "data_source", ds_id));
        };
        let id = ds.id.clone();
        ws.dss.iter().position(|d| d.id == id).expect("exists")
    } else if let Some(db_id) = parent.get("database_id").and_then(Value::as_str) {
        let Some(db) = ws.db(info, db_id) else {
            return Err(not_found(shared, "database", db_id));
        };
        if db.data_sources.len() != 1 {
            return Err(bad(format!(
                "Database {} has multiple data sources; create pages with a data_source_id parent (Notion-Version 2025-09-03 or later).",
                db.id
            )));
        }
        let id = db.data_sources[0].clone();
        ws.dss.iter().position(|d| d.id == id).expect("exists")
    } else if parent.get("page_id").is_some() || parent.get("workspace").is_some() {
        return Err(bad("body failed validation: the emulator creates database rows only; use a data_source_id or database_id parent.".into()));
    } else {
        return Err(bad("body failed validation: body.parent should be an object with data_source_id or database_id.".into()));
    };
    if let Some(children) = body.get("children").and_then(Value::as_array)
        && children.len() > 100
    {
        return Err(bad(format!(
            "body failed validation: body.children.length should be ≤ `100`, instead was `{}`.",
            children.len()
        )));
    }
    let properties = {
        let ds = &mut ws.dss[ds_index];
        objects::validate_properties(ds, body.get("properties").unwrap_or(&Value::Null))
            .map_err(|m| bad(format!("body failed validation: {m}")))?
    };
    let id = ws.next_id();
    let created = now_rfc3339();
    let ds = ws.dss[ds_index].clone();
    let lag = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .query_lag;
    let page = StoredPage {
        id: id.clone(),
        database_id: ds.database_id.clone(),
        data_source_id: ds.id.clone(),
        properties: properties.clone(),
        created_by: ws.bot_id.clone(),
        received_at,
    };
    ws.rows.push(Row {
        page,
        visible_at: Instant::now() + lag,
        created: created.clone(),
    });
    let response = objects::page(&ws, &id, &created, &ds, &properties, version);
    drop(ws);
    shared.count(|s| s.pages_created += 1);
    Ok(response)
}

pub(crate) fn set_faults(shared: &Shared, faults: Faults) {
    *shared.rng.lock().unwrap_or_else(|e| e.into_inner()) =
        rand::rngs::StdRng::seed_from_u64(faults.seed.unwrap_or(0));
    *shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
}

pub(crate) fn set_shared(shared: &Shared, database_id: &str, on: bool) {
    let Some(id) = normalize(database_id) else {
        return;
    };
    let mut ws = shared.lock_ws();
    if let Some(db) = ws.dbs.iter_mut().find(|d| d.id == id) {
        db.unshared = !on;
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
