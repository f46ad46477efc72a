//! The emulator's OAuth endpoints: the consent page, the token endpoint (code and refresh grants,
//! with rotation), revoke and introspect.
// Handlers return an axum `Response` as their error: built once per failed request, its size is
// of no consequence, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use super::state::{CodeInfo, RefreshInfo, Space, TokenInfo, TokenKind, Workspace};
use super::{ConnKill, Shared};

type S = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/oauth/authorize", get(consent_page).post(decide))
        .route("/v1/oauth/token", post(token))
        .route("/v1/oauth/revoke", post(revoke))
        .route("/v1/oauth/introspect", post(introspect))
}

/// The user who authorizes in `space`, as Notion describes them in `owner`.
pub(crate) fn owner_user(space: &Space) -> Value {
    let (id, name, email) = &space.owner;
    json!({"object": "user", "id": id, "name": name,
        "avatar_url": null, "type": "person", "person": {"email": email}})
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Notion (emulator): error</title></head><body><h1>Something went wrong</h1><p>{}</p></body></html>",
            esc(message)
        )),
    )
        .into_response()
}

/// Checks client_id and redirect_uri; an error page (no redirect) when either is wrong.
fn check_client(shared: &Shared, client_id: &str, redirect_uri: &str) -> Result<(), Response> {
    let ws = shared.lock_ws();
    if client_id != ws.client_id {
        return Err(error_page(
            "Invalid client_id: no integration has this OAuth client id.",
        ));
    }
    if !ws.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(error_page(&format!(
            "Invalid redirect_uri: {redirect_uri} is not registered for this integration (registered: {}).",
            ws.redirect_uris.join(", ")
        )));
    }
    Ok(())
}

async fn consent_page(State(shared): S, Query(q): Query<Vec<(String, String)>>) -> Response {
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (client_id, redirect_uri, state) = (get("client_id"), get("redirect_uri"), get("state"));
    if let Err(r) = check_client(&shared, &client_id, &redirect_uri) {
        return r;
    }
    if get("response_type") != "code" {
        return error_page("Invalid response_type: it must be `code`.");
    }
    let ws = shared.lock_ws();
    let html = consent_html(&ws, &client_id, &redirect_uri, &state);
    drop(ws);
    Html(html).into_response()
}

/// The consent page: the workspace to connect (each with its databases to pick), the template
/// when the integration has one, Allow and Cancel.
fn consent_html(ws: &Workspace, client_id: &str, redirect_uri: &str, state: &str) -> String {
    let options: String = ws
        .spaces
        .iter()
        .map(|sp| {
            format!(
                "<option value=\"{}\">{} (as {})</option>",
                esc(&sp.id),
                esc(&sp.name),
                esc(&sp.owner.1)
            )
        })
        .collect();
    let groups: String = ws
        .spaces
        .iter()
        .enumerate()
        .map(|(i, sp)| {
            let boxes: String = ws
                .dbs
                .iter()
                .filter(|d| d.space == i)
                .map(|d| {
                    format!(
                        "<label><input type=\"checkbox\" name=\"database\" value=\"{}\"{}> {}</label><br>",
                        esc(&d.id),
                        if d.title == "Twitter" { " checked" } else { "" },
                        esc(&d.title)
                    )
                })
                .collect();
            format!("<fieldset><legend>Pages of {}</legend>{boxes}</fieldset>", esc(&sp.name))
        })
        .collect();
    let template = if ws.template {
        "<p><label><input type=\"radio\" name=\"pages\" value=\"template\"> Duplicate the template \"notion-inbox\" (a page with a Tweets database)</label><br>\
<label><input type=\"radio\" name=\"pages\" value=\"select\" checked> Select pages to share</label></p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Notion (emulator): connect notion-inbox</title></head><body>\
<h1>notion-inbox wants to access a workspace of yours</h1>\
<form method=\"post\" action=\"/v1/oauth/authorize\">\
<input type=\"hidden\" name=\"client_id\" value=\"{client_id}\">\
<input type=\"hidden\" name=\"redirect_uri\" value=\"{redirect_uri}\">\
<input type=\"hidden\" name=\"state\" value=\"{state}\">\
<p><label>Workspace <select name=\"workspace\">{options}</select></label></p>{template}\
<p>Select the pages it may use (of the workspace chosen above):</p>{groups}\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow access</button> \
<button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button></form></body></html>",
        client_id = esc(client_id),
        redirect_uri = esc(redirect_uri),
        state = esc(state),
    )
}

/// Duplicates the integration's template into workspace `space`: a page "notion-inbox" holding
/// a "Tweets" database. Returns (database id, page id).
fn duplicate_template(ws: &mut Workspace, space: usize) -> (String, String) {
    let page = ws.next_id();
    let (db, ds) = (ws.next_id(), ws.next_id());
    ws.plain_pages.push(super::state::PlainPage {
        id: page.clone(),
        title: "notion-inbox".into(),
        times: super::state::Times::at(&super::state::now_rfc3339()),
        space,
    });
    ws.add_tweets_database(space, db.clone(), ds, "Tweets", Some(page.clone()));
    (db, page)
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => return uri.to_owned(),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// A 302 redirect, as OAuth servers send after consent.
fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

async fn decide(State(shared): S, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (client_id, redirect_uri, state) = (get("client_id"), get("redirect_uri"), get("state"));
    if let Err(r) = check_client(&shared, &client_id, &redirect_uri) {
        return r;
    }
    if get("decision") != "allow" {
        return found(&with_query(
            &redirect_uri,
            &[("error", "access_denied"), ("state", &state)],
        ));
    }
    let mut ws = shared.lock_ws();
    let space = match get("workspace").as_str() {
        "" => 0,
        id => match ws.spaces.iter().position(|sp| sp.id == id) {
            Some(i) => i,
            None => return error_page("Pick one of the workspaces listed."),
        },
    };
    let (grants, template) = if ws.template && get("pages") == "template" {
        let (db, page) = duplicate_template(&mut ws, space);
        (BTreeSet::from([db]), Some(page))
    } else {
        let picked: Vec<String> = form
            .iter()
            .filter(|(k, _)| k == "database")
            .filter_map(|(_, v)| super::state::normalize(v))
            .collect();
        if picked
            .iter()
            .any(|id| ws.dbs.iter().any(|d| &d.id == id && d.space != space))
        {
            return error_page("Pick pages of the workspace you chose only.");
        }
        let grants: BTreeSet<String> = picked
            .into_iter()
            .filter(|id| ws.dbs.iter().any(|d| &d.id == id))
            .collect();
        (grants, None)
    };
    if grants.is_empty() {
        return error_page("Select at least one page to share.");
    }
    ws.expire_codes();
    let code = ws.next_secret("code_");
    ws.codes.insert(
        code.clone(),
        CodeInfo {
            redirect_uri: redirect_uri.clone(),
            space,
            grants,
            template,
            used: false,
            issued: Instant::now(),
        },
    );
    found(&with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
}

/// An OAuth error, RFC 6749 style (notion-inbox's client also reads Notion's style).
fn oauth_error(shared: &Shared, status: u16, code: &str, description: &str) -> Response {
    let id = shared.request_id();
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({"error": code, "error_description": description, "request_id": id})),
    )
        .into_response();
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-notion-request-id", v);
    }
    r
}

/// Checks HTTP Basic auth against the client; parses a JSON or form body.
fn client_request(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let ok = {
        let ws = shared.lock_ws();
        creds.as_deref() == Some(format!("{}:{}", ws.client_id, ws.client_secret).as_str())
    };
    if !ok {
        return Err(oauth_error(
            shared,
            401,
            "invalid_client",
            "Client authentication failed: wrong client id or secret in the Basic Authorization header.",
        ));
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json_body {
        serde_json::from_slice(body).map_err(|e| {
            oauth_error(
                shared,
                400,
                "invalid_request",
                &format!("body is not JSON: {e}"),
            )
        })
    } else {
        let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(body)
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Ok(Value::Object(map))
    }
}

/// What a token pair is issued for: a workspace, its grants, a duplicated template.
struct Grant {
    space: usize,
    grants: BTreeSet<String>,
    page_grants: BTreeSet<String>,
    template: Option<String>,
}

/// Issues a token pair for `g`.
fn issue(ws: &mut Workspace, g: Grant) -> Value {
    let access = ws.next_secret("ntn_");
    let refresh = ws.next_secret("nrt_");
    ws.tokens.insert(
        access.clone(),
        TokenInfo {
            kind: TokenKind::OAuth(Instant::now()),
            space: g.space,
            grants: g.grants.clone(),
            page_grants: g.page_grants.clone(),
            revoked: false,
            expired: false,
            iat: chrono::Utc::now().timestamp(),
        },
    );
    ws.refresh.insert(
        refresh.clone(),
        RefreshInfo {
            space: g.space,
            grants: g.grants,
            page_grants: g.page_grants,
            used: false,
        },
    );
    let sp = &ws.spaces[g.space];
    json!({
        "access_token": access,
        "token_type": "bearer",
        "refresh_token": refresh,
        "bot_id": sp.bot_id,
        "workspace_id": sp.id,
        "workspace_name": sp.name,
        "workspace_icon": null,
        "owner": {"type": "user", "user": owner_user(sp)},
        "duplicated_template_id": g.template,
    })
}

/// Rolls the token endpoint's faults: (503 now, drop the connection after a refresh).
fn token_dice(shared: &Shared) -> (bool, bool) {
    use rand::Rng;
    let f = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut rng = shared.rng.lock().unwrap_or_else(|e| e.into_inner());
    let mut hit = |p: f64| p > 0.0 && rng.random::<f64>() < p;
    (hit(f.token_unavailable), hit(f.token_drop_after_refresh))
}

/// Carries out a code or refresh grant (the lock on the workspace is held only in here).
fn grant(shared: &Shared, req: &Value) -> Result<Value, Response> {
    let field = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut ws = shared.lock_ws();
    let answer = match field("grant_type").as_str() {
        "authorization_code" => {
            ws.expire_codes();
            let code = field("code");
            let Some(info) = ws.codes.get_mut(&code) else {
                drop(ws);
                return Err(oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    "Invalid code: it is unknown or expired.",
                ));
            };
            if info.used {
                drop(ws);
                return Err(oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    "Invalid code: it was already used.",
                ));
            }
            let redirect = field("redirect_uri");
            if redirect != info.redirect_uri {
                drop(ws);
                return Err(oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    "redirect_uri does not match the one of the authorization request.",
                ));
            }
            info.used = true;
            let g = Grant {
                space: info.space,
                grants: info.grants.clone(),
                page_grants: info.template.iter().cloned().collect(),
                template: info.template.clone(),
            };
            issue(&mut ws, g)
        }
        "refresh_token" => {
            let rt = field("refresh_token");
            let Some(info) = ws.refresh.get_mut(&rt) else {
                drop(ws);
                return Err(oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    "Invalid refresh token.",
                ));
            };
            if info.used {
                drop(ws);
                return Err(oauth_error(
                    shared,
                    400,
                    "invalid_grant",
                    "Invalid refresh token: it was already used (refresh tokens rotate).",
                ));
            }
            info.used = true;
            let g = Grant {
                space: info.space,
                grants: info.grants.clone(),
                page_grants: info.page_grants.clone(),
                template: None,
            };
            issue(&mut ws, g)
        }
        other => {
            drop(ws);
            return Err(oauth_error(
                shared,
                400,
                "unsupported_grant_type",
                &format!("grant_type `{other}` is not supported."),
            ));
        }
    };
    drop(ws);
    Ok(answer)
}

async fn token(
    State(shared): S,
    headers: HeaderMap,
    axum::Extension(kill): axum::Extension<ConnKill>,
    body: Bytes,
) -> Response {
    shared.count(|s| *s.requests.entry("POST /v1/oauth/token".into()).or_default() += 1);
    let (unavailable, drop_after_refresh) = token_dice(&shared);
    if unavailable {
        shared.fault("token_unavailable");
        return oauth_error(
            &shared,
            503,
            "service_unavailable",
            "Notion is unavailable, please try again later.",
        );
    }
    let req = match client_request(&shared, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let refresh_grant = req.get("grant_type").and_then(Value::as_str) == Some("refresh_token");
    let mut answer = match grant(&shared, &req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if refresh_grant && drop_after_refresh {
        shared.fault("token_drop_after_refresh");
        kill.0.cancel();
        // The connection task drops the connection; the rotated pair is never delivered.
        std::future::pending::<()>().await;
    }
    answer["request_id"] = json!(shared.request_id());
    axum::Json(answer).into_response()
}

async fn revoke(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let req = match client_request(&shared, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = req.get("token").and_then(Value::as_str).unwrap_or("");
    let mut ws = shared.lock_ws();
    if let Some(info) = ws.tokens.get_mut(t) {
        info.revoked = true;
    }
    if let Some(info) = ws.refresh.get_mut(t) {
        info.used = true;
    }
    drop(ws);
    axum::Json(json!({"request_id": shared.request_id()})).into_response()
}

async fn introspect(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let req = match client_request(&shared, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let t = req.get("token").and_then(Value::as_str).unwrap_or("");
    let ws = shared.lock_ws();
    let answer = match ws.tokens.get(t) {
        Some(info) if !info.revoked && !info.expired => {
            json!({"active": true, "scope": "read_content insert_content update_content", "iat": info.iat})
        }
        _ => json!({"active": false}),
    };
    drop(ws);
    let mut answer = answer;
    answer["request_id"] = json!(shared.request_id());
    axum::Json(answer).into_response()
}
