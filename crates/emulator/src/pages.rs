//! Pages: `POST /v1/pages` (database rows only), `GET` and `PATCH /v1/pages/{id}` (properties,
//! the trash, the lock), and `GET /v1/pages/{id}/properties/{property_id}`.

use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::{S, error, list, not_found, ok, only_keys, parse_body, path_id, prelude};
use super::objects::{self, Version};
use super::state::{Row, Times, TokenInfo, normalize, now_rfc3339};
use super::values;
use super::{ConnKill, Shared, StoredPage};

/// Notion's answer to a write into something in the trash.
const ARCHIVED: &str =
    "Can't edit block that is archived. You must unarchive the block before editing.";

/// An id in the body, dashed; a malformed one is 400 `validation_error`.
fn body_id(shared: &Shared, name: &str, raw: &str) -> Result<String, Response> {
    normalize(raw).ok_or_else(|| {
        error(
            shared,
            400,
            "validation_error",
            &format!("body failed validation: body.{name} should be a valid uuid, instead was `\"{raw}\"`."),
        )
    })
}

pub(crate) async fn create_page(
    State(shared): S,
    headers: HeaderMap,
    axum::Extension(kill): axum::Extension<ConnKill>,
    body: Bytes,
) -> Response {
    let received_at = SystemTime::now();
    let (version, _, info, dice) = match prelude(&shared, &headers, "POST /v1/pages").await {
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
    let stored = match store_page(&shared, version, &info, &body, received_at) {
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
    let ds_index = if let Some(raw) = parent.get("data_source_id").and_then(Value::as_str) {
        let ds_id = &body_id(shared, "parent.data_source_id", raw)?;
        if !version.data_sources() {
            return Err(bad("body failed validation: body.parent.data_source_id is not supported under Notion-Version 2022-06-28; use database_id.".into()));
        }
        let Some(ds) = ws.ds(info, ds_id) else {
            return Err(not_found(shared, "data_source", ds_id));
        };
        let id = ds.id.clone();
        ws.dss.iter().position(|d| d.id == id).expect("exists")
    } else if let Some(raw) = parent.get("database_id").and_then(Value::as_str) {
        let db_id = &body_id(shared, "parent.database_id", raw)?;
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
    if ws
        .dbs
        .iter()
        .any(|d| d.id == ws.dss[ds_index].database_id && d.in_trash)
    {
        return Err(bad(ARCHIVED.into()));
    }
    let mut ds = ws.dss[ds_index].clone();
    let properties = values::validate_properties(
        &ws,
        &mut ds,
        body.get("properties").unwrap_or(&Value::Null),
        None,
    )
    .map_err(bad)?;
    ws.dss[ds_index] = ds.clone();
    let id = ws.next_id();
    let lag = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .query_lag;
    let created_by = ws.bot_id.clone();
    ws.rows.push(Row {
        page: StoredPage {
            id,
            database_id: ds.database_id.clone(),
            data_source_id: ds.id.clone(),
            properties,
            created_by,
            received_at,
        },
        visible_at: Instant::now() + lag,
        times: Times::at(&now_rfc3339()),
        in_trash: false,
        is_locked: false,
    });
    let row = ws.rows.last().expect("just pushed");
    let response = objects::page(&ws, row, &ds, version, None);
    drop(ws);
    shared.count(|s| s.pages_created += 1);
    Ok(response)
}

/// `filter_properties` of the query string: property ids, repeated or comma-separated.
fn filter_properties(query: &[(String, String)]) -> Option<Vec<String>> {
    let ids: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "filter_properties" || k == "filter_properties[]")
        .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// A page by id: a row, or a plain page.
pub(crate) async fn get_page(
    State(shared): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "GET /v1/pages/{id}").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match path_id(&shared, "page_id", &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let only = filter_properties(&query);
    let ws = shared.lock_ws();
    if let Some(i) = ws.row_index(&info, &id) {
        let row = &ws.rows[i];
        let ds = ws
            .ds(&info, &row.page.data_source_id)
            .expect("row_index checked");
        return ok(
            &shared,
            objects::page(&ws, row, ds, version, only.as_deref()),
        );
    }
    match ws
        .plain_pages
        .iter()
        .find(|p| p.id == id && info.page_grants.contains(&p.id))
    {
        Some(p) => ok(&shared, objects::plain_page(&ws, p, version)),
        None => not_found(&shared, "page", &id),
    }
}

/// Updates a row: its properties (merged over the current ones), `in_trash` (or `archived`,
/// `is_archived`), `is_locked`. A row in the trash takes property changes only together with
/// leaving it, as Notion's "Can't edit block that is archived" says.
pub(crate) async fn update_page(
    State(shared): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "PATCH /v1/pages/{id}").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match path_id(&shared, "page_id", &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    update(&shared, version, &info, &id, &body).unwrap_or_else(|r| r)
}

fn update(
    shared: &Shared,
    version: Version,
    info: &TokenInfo,
    id: &str,
    body: &Bytes,
) -> Result<Response, Response> {
    let body = parse_body(shared, body)?;
    only_keys(
        shared,
        &body,
        &[
            "properties",
            "icon",
            "cover",
            "is_locked",
            "template",
            "erase_content",
            "in_trash",
            "archived",
            "is_archived",
        ],
    )?;
    let bad = |m: String| error(shared, 400, "validation_error", &m);
    let (mut trash, mut lock) = (None, None);
    for key in ["in_trash", "archived", "is_archived", "is_locked"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) if key == "is_locked" => lock = Some(*b),
            Some(Value::Bool(b)) => trash = Some(*b),
            Some(other) => {
                return Err(bad(format!(
                    "body failed validation: body.{key} should be a boolean, instead was `{other}`."
                )));
            }
        }
    }
    let mut ws = shared.lock_ws();
    let Some(i) = ws.row_index(info, id) else {
        if ws
            .plain_pages
            .iter()
            .any(|p| p.id == id && info.page_grants.contains(&p.id))
        {
            return Err(bad(
                "body failed validation: the emulator updates database rows only, not plain pages."
                    .into(),
            ));
        }
        return Err(not_found(shared, "page", id));
    };
    let in_trash = trash.unwrap_or(ws.rows[i].in_trash);
    let props = body.get("properties").filter(|p| !p.is_null());
    let db_trashed = ws
        .dbs
        .iter()
        .any(|d| d.id == ws.rows[i].page.database_id && d.in_trash);
    if (in_trash || db_trashed) && props.is_some() {
        return Err(bad(ARCHIVED.into()));
    }
    let ds_index = ws
        .dss
        .iter()
        .position(|d| d.id == ws.rows[i].page.data_source_id)
        .expect("a row's data source exists");
    if let Some(props) = props {
        let mut ds = ws.dss[ds_index].clone();
        let current = ws.rows[i].page.properties.clone();
        let merged =
            values::validate_properties(&ws, &mut ds, props, Some(&current)).map_err(bad)?;
        ws.dss[ds_index] = ds;
        ws.rows[i].page.properties = merged;
    }
    let row = &mut ws.rows[i];
    row.in_trash = in_trash;
    row.is_locked = lock.unwrap_or(row.is_locked);
    row.times.edited = now_rfc3339();
    let row = &ws.rows[i];
    let response = objects::page(&ws, row, &ws.dss[ds_index], version, None);
    drop(ws);
    Ok(ok(shared, response))
}

/// One property of a row. Title and rich_text come as a paginated list of items (one per
/// rich-text item, `page_size` and `start_cursor` in the query string); the others as one
/// property item. The id may be given raw (`tw%3Dt`) or decoded (`tw=t`), or as the name.
pub(crate) async fn get_page_property(
    State(shared): S,
    headers: HeaderMap,
    Path((id, property_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let (_, _, info, _) = match prelude(
        &shared,
        &headers,
        "GET /v1/pages/{id}/properties/{property_id}",
    )
    .await
    {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = match path_id(&shared, "page_id", &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let value = {
        let ws = shared.lock_ws();
        let Some(i) = ws.row_index(&info, &id) else {
            return not_found(&shared, "page", &id);
        };
        let found = ws.rows[i].page.properties.as_object().and_then(|m| {
            m.iter()
                .find(|(name, v)| {
                    let pid = v["id"].as_str().unwrap_or_default();
                    *name == &property_id
                        || pid == property_id
                        || objects::decode_id(pid) == property_id
                })
                .map(|(_, v)| v.clone())
        });
        match found {
            Some(v) => v,
            None => {
                return error(
                    &shared,
                    404,
                    "object_not_found",
                    &format!("Could not find property with id: {property_id}."),
                );
            }
        }
    };
    let ty = value["type"].as_str().unwrap_or_default().to_owned();
    if ty != "title" && ty != "rich_text" {
        return ok(&shared, objects::property_item(&value));
    }
    let items: Vec<Value> = value[&ty]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|item| json!({"object": "property_item", "id": value["id"], "type": ty, ty.as_str(): item}))
                .collect()
        })
        .unwrap_or_default();
    // The query string's page_size and start_cursor, in the shape `paginate` reads from a body.
    let mut body = json!({});
    for (k, v) in &query {
        match k.as_str() {
            "page_size" => {
                body["page_size"] = v.parse::<u64>().map(Value::from).unwrap_or(json!(v))
            }
            "start_cursor" => body["start_cursor"] = json!(v),
            _ => {}
        }
    }
    let mut list = match list(&shared, &body, items, "property_item") {
        Ok(l) => l,
        Err(r) => return r,
    };
    // Notion describes the property in `property_item`.
    list["property_item"] =
        json!({"id": value["id"], "next_url": null, "type": ty, ty.as_str(): {}});
    ok(&shared, list)
}
