//! `POST /v1/search`: what the token was granted, filtered by object, matched by title, most
//! recently edited first unless a `sort` says otherwise, and paginated.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::Shared;
use super::api::{S, error, only_keys, paginate, parse_body, prelude};
use super::objects::{self, Version};
use super::state::TokenInfo;

/// One candidate result: the texts a `query` may match, when it was last edited, and the object.
struct Hit {
    titles: Vec<String>,
    edited: String,
    object: Value,
}

pub(crate) async fn search(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let (version, _, info, _) = match prelude(&shared, &headers, "POST /v1/search").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    answer(&shared, version, &info, &body).unwrap_or_else(|r| r)
}

fn answer(
    shared: &Shared,
    version: Version,
    info: &TokenInfo,
    body: &Bytes,
) -> Result<Response, Response> {
    let body = parse_body(shared, body)?;
    only_keys(
        shared,
        &body,
        &["query", "filter", "sort", "start_cursor", "page_size"],
    )?;
    let container = if version.data_sources() {
        "data_source"
    } else {
        "database"
    };
    let bad = |m: String| error(shared, 400, "validation_error", &m);
    let filter = match body.get("filter") {
        None | Some(Value::Null) => None,
        Some(f) => {
            let value = f.get("value").and_then(Value::as_str).unwrap_or("");
            if f.get("property").and_then(Value::as_str) != Some("object")
                || (value != "page" && value != container)
            {
                return Err(bad(format!(
                    "body failed validation: body.filter.value should be `\"page\"` or `\"{container}\"`, instead was `\"{value}\"`."
                )));
            }
            Some(value.to_owned())
        }
    };
    let ascending = match body.get("sort") {
        None | Some(Value::Null) => false,
        Some(s) => {
            let direction = s.get("direction").and_then(Value::as_str);
            if s.get("timestamp").and_then(Value::as_str) != Some("last_edited_time")
                || !matches!(direction, Some("ascending" | "descending"))
            {
                return Err(bad(format!(
                    "body failed validation: body.sort should be `{{\"timestamp\": \"last_edited_time\", \"direction\": \"ascending\" | \"descending\"}}`, instead was `{s}`."
                )));
            }
            direction == Some("ascending")
        }
    };
    let query = match body.get("query") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(q)) => q.to_lowercase(),
        Some(other) => {
            return Err(bad(format!(
                "body failed validation: body.query should be a string, instead was `{other}`."
            )));
        }
    };
    let ws = shared.lock_ws();
    let mut hits: Vec<Hit> = Vec::new();
    if filter.as_deref() != Some("page") {
        // What is in the trash is not found by search.
        for db in ws
            .dbs
            .iter()
            .filter(|d| !d.in_trash && ws.db(info, &d.id).is_some())
        {
            if version.data_sources() {
                // A data source is found by its own name or by its database's title.
                for ds in ws.dss.iter().filter(|d| d.database_id == db.id) {
                    hits.push(Hit {
                        titles: vec![ds.name.clone(), db.title.clone()],
                        edited: ds.times.edited.clone(),
                        object: objects::data_source(&ws, ds, version),
                    });
                }
            } else {
                hits.push(Hit {
                    titles: vec![db.title.clone()],
                    edited: db.times.edited.clone(),
                    object: objects::database(&ws, db, version),
                });
            }
        }
    }
    if filter.as_deref() != Some(container) {
        for p in ws.plain_pages.iter() {
            if info.page_grants.contains(&p.id) {
                hits.push(Hit {
                    titles: vec![p.title.clone()],
                    edited: p.times.edited.clone(),
                    object: objects::plain_page(&ws, p, version),
                });
            }
        }
        let db_trashed = |id: &str| ws.dbs.iter().any(|d| d.id == id && d.in_trash);
        for row in ws
            .rows
            .iter()
            .filter(|r| !r.in_trash && !db_trashed(&r.page.database_id))
        {
            let Some(ds) = ws.ds(info, &row.page.data_source_id) else {
                continue;
            };
            let object = objects::page(&ws, row, ds, version, None);
            let title = object["properties"]
                .as_object()
                .and_then(|m| m.values().find(|v| v["type"] == "title"))
                .map(|v| objects::plain(&v["title"]))
                .unwrap_or_default();
            hits.push(Hit {
                titles: vec![title],
                edited: row.times.edited.clone(),
                object,
            });
        }
    }
    drop(ws);
    hits.retain(|h| query.is_empty() || h.titles.iter().any(|t| t.to_lowercase().contains(&query)));
    // Most recently edited first (Notion's order without a sort). Equal times (rows created in
    // the same millisecond) go by creation: the stable sort keeps the order above, reversed first
    // for the newest-first order.
    if ascending {
        hits.sort_by(|a, b| a.edited.cmp(&b.edited));
    } else {
        hits.reverse();
        hits.sort_by(|a, b| b.edited.cmp(&a.edited));
    }
    let items = hits.into_iter().map(|h| h.object).collect();
    paginate(shared, &body, items, version.list_type())
}
