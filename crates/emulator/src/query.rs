//! Queries: `POST /v1/databases/{id}/query` (before 2025-09-03) and
//! `POST /v1/data_sources/{id}/query`, with filters, sorts, the trash and pagination.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::Shared;
use super::api::{
    S, error, needs_data_sources, not_found, only_keys, paginate, parse_body, path_id, prelude,
};
use super::filter;
use super::objects::{self, Version};
use super::state::TokenInfo;

pub(crate) async fn query_database(
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
        let id = match path_id(&shared, "database_id", &id) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let ws = shared.lock_ws();
        match ws.db(&info, &id) {
            Some(db) => db.data_sources[0].clone(),
            None => return not_found(&shared, "database", &id),
        }
    };
    query(&shared, version, &info, &ds_id, &body).unwrap_or_else(|r| r)
}

pub(crate) async fn query_data_source(
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
    match path_id(&shared, "data_source_id", &id) {
        Ok(id) => query(&shared, version, &info, &id, &body).unwrap_or_else(|r| r),
        Err(r) => r,
    }
}

/// A boolean of the body (`in_trash`, `archived`), false when absent.
fn flag(shared: &Shared, body: &Value, key: &str) -> Result<bool, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(error(
            shared,
            400,
            "validation_error",
            &format!(
                "body failed validation: body.{key} should be a boolean, instead was `{other}`."
            ),
        )),
    }
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
    // `archived` is the older name of `in_trash`; either asks for the rows in the trash.
    let in_trash = flag(shared, &body, "in_trash")? | flag(shared, &body, "archived")?;
    let pages = match body.get("result_type") {
        None | Some(Value::Null) => true,
        Some(Value::String(t)) if t == "page" => true,
        // A data source holds no data sources: the emulator's databases have no wikis.
        Some(Value::String(t)) if t == "data_source" => false,
        Some(other) => {
            return Err(error(
                shared,
                400,
                "validation_error",
                &format!(
                    "body failed validation: body.result_type should be `\"page\"` or `\"data_source\"`, instead was `{other}`."
                ),
            ));
        }
    };
    let invalid = |m: String| error(shared, 400, "validation_error", &m);
    let ws = shared.lock_ws();
    let Some(ds) = ws.ds(info, ds_id) else {
        return Err(not_found(shared, "data_source", ds_id));
    };
    let filter = body.get("filter").unwrap_or(&Value::Null);
    let cond = filter::compile(ds, filter, version, chrono::Utc::now()).map_err(invalid)?;
    let sorts =
        filter::compile_sorts(ds, body.get("sorts").unwrap_or(&Value::Null)).map_err(invalid)?;
    let mut rows: Vec<_> = ws
        .visible_rows(&ds.id, in_trash)
        .filter(|r| pages && cond.as_ref().is_none_or(|c| filter::matches(c, r)))
        .collect();
    rows.sort_by(|a, b| filter::compare(&sorts, ds, a, b));
    let items = rows
        .into_iter()
        .map(|r| objects::page(&ws, r, ds, version, None))
        .collect();
    drop(ws);
    paginate(shared, &body, items, version.list_type())
}
