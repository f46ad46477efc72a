//! Notion's objects as the API returns them, per version: databases, data sources, pages and
//! their property items. What a request may write is checked in `values.rs`.

use serde_json::{Map, Value, json};

use super::state::{Db, Ds, PlainPage, PropDef, Row, Times, Workspace, rich_text};

/// The API versions the emulator speaks, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    /// 2021-08-16: query filters still take `text` (rich_text, title) and `phone`.
    V2021,
    /// 2022-02-22: those filter keywords are gone.
    V2022Feb,
    /// 2022-06-28: databases hold the schema.
    V2022,
    /// 2025-09-03: data sources.
    V2025,
    /// 2026-03-11: data sources; `in_trash` replaces `archived`.
    V2026,
}

/// The `Notion-Version` values the emulator accepts, as its error message lists them.
pub(crate) const VERSIONS: &str = "2021-08-16, 2022-02-22, 2022-06-28, 2025-09-03, 2026-03-11";

impl Version {
    /// Parses a `Notion-Version` value.
    pub(crate) fn parse(s: &str) -> Option<Version> {
        match s {
            "2021-08-16" => Some(Self::V2021),
            "2022-02-22" => Some(Self::V2022Feb),
            "2022-06-28" => Some(Self::V2022),
            "2025-09-03" => Some(Self::V2025),
            "2026-03-11" => Some(Self::V2026),
            _ => None,
        }
    }

    /// Whether databases are containers of data sources.
    pub(crate) fn data_sources(self) -> bool {
        self >= Self::V2025
    }

    /// Whether query filters still accept `text` and `phone` (changed in 2022-02-22).
    pub(crate) fn legacy_filter_keywords(self) -> bool {
        self < Self::V2022Feb
    }

    /// The `type` of a list of query or search results.
    pub(crate) fn list_type(self) -> &'static str {
        if self.data_sources() {
            "page_or_data_source"
        } else {
            "page_or_database"
        }
    }
}

/// A page's or database's address on notion.so.
pub(crate) fn url_of(id: &str) -> String {
    format!("https://www.notion.so/{}", id.replace('-', ""))
}

fn user(id: &str) -> Value {
    json!({"object": "user", "id": id})
}

/// Adds `created_time`, `last_edited_time`, and `archived` and/or `in_trash` as the version has
/// them.
fn stamp(obj: &mut Map<String, Value>, times: &Times, in_trash: bool, v: Version) {
    obj.insert("created_time".into(), json!(times.created));
    obj.insert("last_edited_time".into(), json!(times.edited));
    if v != Version::V2026 {
        obj.insert("archived".into(), json!(in_trash));
    }
    obj.insert("in_trash".into(), json!(in_trash));
}

/// A schema property as Notion describes it.
pub(crate) fn prop_schema(p: &PropDef) -> Value {
    let config = match p.ty {
        "number" => json!({"format": "number"}),
        "select" | "multi_select" => json!({"options": p.options.iter().map(|(id, name, color)| {
            json!({"id": id, "name": name, "color": color, "description": null})
        }).collect::<Vec<_>>()}),
        _ => json!({}),
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    m.insert("name".into(), json!(p.name));
    m.insert("description".into(), json!(""));
    m.insert("type".into(), json!(p.ty));
    m.insert(p.ty.into(), config);
    Value::Object(m)
}

fn props_schema(ds: &Ds) -> Value {
    Value::Object(
        ds.props
            .iter()
            .map(|p| (p.name.clone(), prop_schema(p)))
            .collect(),
    )
}

/// Where a database is: the workspace's top level, or a page (a duplicated template).
fn parent_of(db: &Db) -> Value {
    match &db.parent_page {
        Some(page) => json!({"type": "page_id", "page_id": page}),
        None => json!({"type": "workspace", "workspace": true}),
    }
}

/// A database object.
pub(crate) fn database(ws: &Workspace, db: &Db, v: Version) -> Value {
    let mut o = json!({
        "object": "database",
        "id": db.id,
        "title": rich_text(&db.title),
        "description": [],
        "icon": null,
        "cover": null,
        "parent": parent_of(db),
        "url": url_of(&db.id),
        "public_url": null,
        "is_inline": false,
        "is_locked": false,
    });
    let obj = o.as_object_mut().expect("object");
    stamp(obj, &db.times, db.in_trash, v);
    if v.data_sources() {
        let sources: Vec<Value> = db
            .data_sources
            .iter()
            .filter_map(|id| ws.dss.iter().find(|d| &d.id == id))
            .map(|d| json!({"id": d.id, "name": d.name}))
            .collect();
        obj.insert("data_sources".into(), json!(sources));
    } else if let Some(ds) = db
        .data_sources
        .first()
        .and_then(|id| ws.dss.iter().find(|d| &d.id == id))
    {
        obj.insert("properties".into(), props_schema(ds));
    }
    o
}

/// A data source object.
pub(crate) fn data_source(ws: &Workspace, ds: &Ds, v: Version) -> Value {
    let db = ws.dbs.iter().find(|d| d.id == ds.database_id);
    let mut o = json!({
        "object": "data_source",
        "id": ds.id,
        "created_by": user(&ws.bot_id),
        "last_edited_by": user(&ws.bot_id),
        "title": rich_text(&ds.name),
        "description": [],
        "icon": null,
        "cover": null,
        "properties": props_schema(ds),
        "parent": {"type": "database_id", "database_id": ds.database_id},
        "database_parent": db.map_or(json!({"type": "workspace", "workspace": true}), parent_of),
        "is_inline": false,
        "url": url_of(&ds.id),
        "public_url": null,
    });
    let in_trash = db.is_some_and(|d| d.in_trash);
    stamp(o.as_object_mut().expect("object"), &ds.times, in_trash, v);
    o
}

/// The fields every page object has. `is_archived` is not in Notion's reference, but the
/// official JS SDK's `PageObjectResponse` (5.26) requires it, so it stays, equal to `in_trash`.
fn page_common(
    ws: &Workspace,
    id: &str,
    parent: Value,
    properties: Value,
    is_locked: bool,
    in_trash: bool,
) -> Value {
    json!({
        "object": "page",
        "id": id,
        "created_by": user(&ws.bot_id),
        "last_edited_by": user(&ws.bot_id),
        "cover": null,
        "icon": null,
        "parent": parent,
        "is_locked": is_locked,
        "is_archived": in_trash,
        "properties": properties,
        "url": url_of(id),
        "public_url": null,
    })
}

/// A page object (a row). `only` keeps just the properties with these ids (the
/// `filter_properties` query parameter), given as stored (`sC%3Fr`) or with escapes decoded.
pub(crate) fn page(
    ws: &Workspace,
    row: &Row,
    ds: &Ds,
    v: Version,
    only: Option<&[String]>,
) -> Value {
    let parent = if v.data_sources() {
        json!({"type": "data_source_id", "data_source_id": ds.id, "database_id": ds.database_id})
    } else {
        json!({"type": "database_id", "database_id": ds.database_id})
    };
    let properties = match (only, row.page.properties.as_object()) {
        (Some(ids), Some(all)) => Value::Object(
            all.iter()
                .filter(|(_, p)| {
                    let id = p["id"].as_str().unwrap_or_default();
                    ids.iter().any(|i| i == id || *i == decode_id(id))
                })
                .map(|(k, p)| (k.clone(), p.clone()))
                .collect(),
        ),
        _ => row.page.properties.clone(),
    };
    let mut o = page_common(
        ws,
        &row.page.id,
        parent,
        properties,
        row.is_locked,
        row.in_trash,
    );
    stamp(
        o.as_object_mut().expect("object"),
        &row.times,
        row.in_trash,
        v,
    );
    o
}

/// A property id with its %XX escapes decoded, as it arrives in a path or a query string.
pub(crate) fn decode_id(id: &str) -> String {
    percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned()
}

/// A plain page (not a row).
pub(crate) fn plain_page(ws: &Workspace, p: &PlainPage, v: Version) -> Value {
    let props = json!({"title": {"id": "title", "type": "title", "title": rich_text(&p.title)}});
    let parent = json!({"type": "workspace", "workspace": true});
    let mut o = page_common(ws, &p.id, parent, props, false, false);
    stamp(o.as_object_mut().expect("object"), &p.times, false, v);
    o
}

/// A property item (`GET /v1/pages/{id}/properties/{property_id}`) of a property that is not a
/// list: `{object:"property_item", id, type, <type>: value}`.
pub(crate) fn property_item(value: &Value) -> Value {
    let ty = value["type"].as_str().unwrap_or_default();
    json!({"object": "property_item", "id": value["id"], "type": ty, ty: value[ty]})
}

/// The plain text of a title or rich_text value in response shape.
pub(crate) fn plain(value: &Value) -> String {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("plain_text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}
