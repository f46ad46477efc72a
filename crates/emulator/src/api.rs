//! The emulator's router, and what every route shares: the checks of each request (version,
//! token, rate limits, faults), error and list answers, and the simplest routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use rand::Rng;
use serde_json::{Value, json};

use super::Shared;
use super::objects::{self, Version};
use super::state::{TokenInfo, TokenKind, normalize};

pub(crate) type S = State<Arc<Shared>>;

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

pub(crate) fn retry_after(mut r: Response, secs: u64) -> Response {
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(secs.max(1)));
    r
}

/// A storm's answer: `Retry-After: 1`, or the header the faults ask for.
pub(crate) fn storm_retry_after(r: Response, custom: Option<&str>) -> Response {
    let mut r = retry_after(r, 1);
    if let Some(v) = custom.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// An id in the path, dashed: a malformed one is answered 400 `validation_error`, as Notion does,
/// not 404.
pub(crate) fn path_id(shared: &Shared, name: &str, raw: &str) -> Result<String, Response> {
    normalize(raw).ok_or_else(|| {
        error(
            shared,
            400,
            "validation_error",
            &format!("path failed validation: path.{name} should be a valid uuid, instead was `\"{raw}\"`."),
        )
    })
}

/// What the fault dice said for one request.
pub(crate) struct Dice {
    latency: Duration,
    storm_429: bool,
    storm_529: bool,
    storm_retry_after: Option<String>,
    storm_token: Option<String>,
    /// A page create fails with this status before the write.
    pub error_before: Option<u16>,
    /// A page create is stored, then answered 504.
    pub timeout_after: bool,
    /// A page create is stored, then its connection dropped.
    pub drop_after: bool,
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

/// Spends one of `Faults::rate_limit_next`, if any are left.
fn take_rate_limit_next(shared: &Shared) -> bool {
    let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    let left = f.rate_limit_next > 0;
    f.rate_limit_next = f.rate_limit_next.saturating_sub(1);
    left
}

/// The checks every authenticated request passes: version, token, rate limits, latency, storms.
/// Returns the version, the token and its grants, and the fault dice for this request.
pub(crate) async fn prelude(
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
                &format!("Notion-Version header failed validation: `{v}` is not a supported version ({}).", objects::VERSIONS),
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
        let ws = shared.lock_ws().space(&info).id.clone();
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
    if stormed && take_rate_limit_next(shared) {
        shared.fault("rate_limit_next");
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

pub(crate) fn not_found(shared: &Shared, kind: &str, id: &str) -> Response {
    error(
        shared,
        404,
        "object_not_found",
        &format!(
            "Could not find {kind} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
        ),
    )
}

pub(crate) fn parse_body(shared: &Shared, body: &Bytes) -> Result<Value, Response> {
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
pub(crate) fn only_keys(shared: &Shared, body: &Value, allowed: &[&str]) -> Result<(), Response> {
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

pub(crate) fn page_size(shared: &Shared, body: &Value) -> Result<usize, Response> {
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
pub(crate) fn paginate(
    shared: &Shared,
    body: &Value,
    items: Vec<Value>,
    kind: &str,
) -> Result<Response, Response> {
    Ok(ok(shared, list(shared, body, items, kind)?))
}

/// The list object [`paginate`] answers with: `page_size` and `start_cursor` of `body` applied.
pub(crate) fn list(
    shared: &Shared,
    body: &Value,
    items: Vec<Value>,
    kind: &str,
) -> Result<Value, Response> {
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
    Ok(json!({
        "object": "list",
        "results": page,
        "next_cursor": if has_more { json!(end.to_string()) } else { Value::Null },
        "has_more": has_more,
        "type": kind,
        kind: {},
    }))
}

/// The answer to a data source endpoint under 2022-06-28.
pub(crate) fn needs_data_sources(shared: &Shared) -> Response {
    error(
        shared,
        400,
        "invalid_request_url",
        "Invalid request URL: data sources need Notion-Version 2025-09-03 or later.",
    )
}
