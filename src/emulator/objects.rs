//! Notion's objects as the API returns them, per version, and the validation of page property
//! values against a schema (with Notion's error messages and paths).

use serde_json::{Map, Value, json};

use super::state::{Db, Ds, PropDef, Workspace, rich_text, text_item};

/// The API versions the emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Databases hold the schema.
    V2022,
    /// Data sources.
    V2025,
    /// Data sources; `in_trash` replaces `archived`.
    V2026,
}

impl Version {
    /// Parses a `Notion-Version` value.
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "2022-06-28" => Some(Self::V2022),
            "2025-09-03" => Some(Self::V2025),
            "2026-03-11" => Some(Self::V2026),
            _ => None,
        }
    }

    /// Whether databases are containers of data sources.
    pub fn data_sources(self) -> bool {
        self != Self::V2022
    }
}

fn url_of(id: &str) -> String {
    format!("https://www.notion.so/{}", id.replace('-', ""))
}

fn user(id: &str) -> Value {
    json!({"object": "user", "id": id})
}

/// Adds `archived` and/or `in_trash` as the version has them.
fn trash_flags(obj: &mut Map<String, Value>, v: Version) {
    if v != Version::V2026 {
        obj.insert("archived".into(), json!(false));
    }
    obj.insert("in_trash".into(), json!(false));
}

/// A schema property as Notion describes it.
pub fn prop_schema(p: &PropDef) -> Value {
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

/// A database object.
pub fn database(ws: &Workspace, db: &Db, v: Version) -> Value {
    let mut o = json!({
        "object": "database",
        "id": db.id,
        "created_time": ws.epoch,
        "last_edited_time": ws.epoch,
        "title": rich_text(&db.title),
        "description": [],
        "icon": null,
        "cover": null,
        "parent": {"type": "workspace", "workspace": true},
        "url": url_of(&db.id),
        "public_url": null,
        "is_inline": false,
        "is_locked": false,
    });
    let obj = o.as_object_mut().expect("object");
    trash_flags(obj, v);
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
pub fn data_source(ws: &Workspace, ds: &Ds, v: Version) -> Value {
    let mut o = json!({
        "object": "data_source",
        "id": ds.id,
        "created_time": ws.epoch,
        "last_edited_time": ws.epoch,
        "created_by": user(&ws.bot_id),
        "last_edited_by": user(&ws.bot_id),
        "title": rich_text(&ds.name),
        "description": [],
        "icon": null,
        "cover": null,
        "properties": props_schema(ds),
        "parent": {"type": "database_id", "database_id": ds.database_id},
        "database_parent": {"type": "workspace", "workspace": true},
        "is_inline": false,
        "url": url_of(&ds.id),
        "public_url": null,
    });
    trash_flags(o.as_object_mut().expect("object"), v);
    o
}

/// A page object (a row), from its stored properties.
pub fn page(
    ws: &Workspace,
    id: &str,
    created: &str,
    ds: &Ds,
    properties: &Value,
    v: Version,
) -> Value {
    let parent = if v.data_sources() {
        json!({"type": "data_source_id", "data_source_id": ds.id, "database_id": ds.database_id})
    } else {
        json!({"type": "database_id", "database_id": ds.database_id})
    };
    let mut o = json!({
        "object": "page",
        "id": id,
        "created_time": created,
        "last_edited_time": created,
        "created_by": user(&ws.bot_id),
        "last_edited_by": user(&ws.bot_id),
        "cover": null,
        "icon": null,
        "parent": parent,
        "is_locked": false,
        "is_archived": false,
        "properties": properties,
        "url": url_of(id),
        "public_url": null,
    });
    trash_flags(o.as_object_mut().expect("object"), v);
    o
}

/// A plain page (not a row).
pub fn plain_page(ws: &Workspace, id: &str, title: &str, v: Version) -> Value {
    let props = json!({"title": {"id": "title", "type": "title", "title": rich_text(title)}});
    let mut o = json!({
        "object": "page",
        "id": id,
        "created_time": ws.epoch,
        "last_edited_time": ws.epoch,
        "created_by": user(&ws.bot_id),
        "last_edited_by": user(&ws.bot_id),
        "cover": null,
        "icon": null,
        "parent": {"type": "workspace", "workspace": true},
        "is_locked": false,
        "is_archived": false,
        "properties": props,
        "url": url_of(id),
        "public_url": null,
    });
    trash_flags(o.as_object_mut().expect("object"), v);
    o
}

/// A property value that is not set, in response shape.
fn empty_value(p: &PropDef) -> Value {
    match p.ty {
        "title" | "rich_text" | "multi_select" => json!([]),
        "checkbox" => json!(false),
        _ => Value::Null,
    }
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A validation failure: the message Notion would send.
pub type Invalid = String;

/// Validates a create's `properties` against `ds` and returns them in response shape, keyed by
/// name (every property of the schema, unset ones empty). May add select options, as Notion does.
pub fn validate_properties(ds: &mut Ds, given: &Value) -> Result<Value, Invalid> {
    let given = match given {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => return Err("body.properties should be an object, instead was not.".into()),
    };
    let mut values: Map<String, Value> = Map::new();
    for (key, value) in &given {
        let Some(idx) = ds
            .props
            .iter()
            .position(|p| &p.name == key)
            .or_else(|| ds.props.iter().position(|p| &p.id == key))
        else {
            return Err(format!("{key} is not a property that exists."));
        };
        let path = format!("body.properties.{key}");
        let shaped = value_of(&mut ds.props[idx], value, &path)?;
        values.insert(ds.props[idx].name.clone(), shaped);
    }
    let mut out = Map::new();
    for p in &ds.props {
        let v = values.remove(&p.name).unwrap_or_else(|| empty_value(p));
        out.insert(p.name.clone(), json!({"id": p.id, "type": p.ty, p.ty: v}));
    }
    Ok(Value::Object(out))
}

/// Checks one value; returns it in response shape.
fn value_of(p: &mut PropDef, value: &Value, path: &str) -> Result<Value, Invalid> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{path} should be an object, instead was `{value}`."))?;
    let ty = p.ty;
    let Some(inner) = obj.get(ty) else {
        let other = obj.keys().find(|k| *k != "type" && *k != "id");
        return Err(match other {
            Some(k) => format!(
                "{path}.{ty} should be defined, instead was `undefined`. ({} is expected to be {ty}, not {k}.)",
                p.name
            ),
            None => format!("{path}.{ty} should be defined, instead was `undefined`."),
        });
    };
    if let Some(k) = obj.keys().find(|k| *k != ty && *k != "type" && *k != "id") {
        return Err(format!(
            "{path}.{k} should be not present, instead was `{}`.",
            obj[k]
        ));
    }
    let path = format!("{path}.{ty}");
    match ty {
        "title" | "rich_text" => {
            let items = inner
                .as_array()
                .ok_or_else(|| format!("{path} should be an array, instead was `{inner}`."))?;
            if items.len() > 100 {
                return Err(format!(
                    "{path}.length should be ≤ `100`, instead was `{}`.",
                    items.len()
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let ipath = format!("{path}[{i}]");
                let text = item.get("text").ok_or_else(|| {
                    format!("{ipath}.text should be defined, instead was `undefined`.")
                })?;
                if let Some(t) = item.get("type")
                    && t != "text"
                {
                    return Err(format!(
                        "{ipath}.type should be `\"text\"` (the emulator writes text items only), instead was `{t}`."
                    ));
                }
                let content = text.get("content").and_then(Value::as_str).ok_or_else(|| {
                    format!(
                        "{ipath}.text.content should be a string, instead was `{}`.",
                        text.get("content").unwrap_or(&Value::Null)
                    )
                })?;
                let n = utf16_len(content);
                if n > 2000 {
                    return Err(format!(
                        "{ipath}.text.content.length should be ≤ `2000`, instead was `{n}`."
                    ));
                }
                let link = text.get("link").filter(|l| !l.is_null());
                out.push(text_item(content, link));
            }
            Ok(Value::Array(out))
        }
        "url" | "email" | "phone_number" => {
            let max = if ty == "url" { 2000 } else { 200 };
            match inner {
                Value::Null => Ok(Value::Null),
                Value::String(s) if utf16_len(s) <= max => Ok(json!(s)),
                Value::String(s) => Err(format!(
                    "{path}.length should be ≤ `{max}`, instead was `{}`.",
                    utf16_len(s)
                )),
                other => Err(format!(
                    "{path} should be a string or `null`, instead was `{other}`."
                )),
            }
        }
        "number" => match inner {
            Value::Null | Value::Number(_) => Ok(inner.clone()),
            other => Err(format!(
                "{path} should be a number or `null`, instead was `{other}`."
            )),
        },
        "checkbox" => match inner {
            Value::Bool(_) => Ok(inner.clone()),
            other => Err(format!(
                "{path} should be a boolean, instead was `{other}`."
            )),
        },
        "date" => {
            if inner.is_null() {
                return Ok(Value::Null);
            }
            let start = inner.get("start").and_then(Value::as_str).ok_or_else(|| {
                format!("{path}.start should be defined, instead was `undefined`.")
            })?;
            let end = inner.get("end").filter(|e| !e.is_null());
            for (k, d) in [("start", Some(start)), ("end", end.and_then(Value::as_str))] {
                if let Some(d) = d
                    && !is_iso_date(d)
                {
                    return Err(format!(
                        "{path}.{k} should be a valid ISO 8601 date string, instead was `\"{d}\"`."
                    ));
                }
            }
            Ok(
                json!({"start": start, "end": end.cloned().unwrap_or(Value::Null), "time_zone": null}),
            )
        }
        "select" => {
            if inner.is_null() {
                return Ok(Value::Null);
            }
            Ok(option(p, inner, &path)?)
        }
        "multi_select" => {
            let items = inner
                .as_array()
                .ok_or_else(|| format!("{path} should be an array, instead was `{inner}`."))?;
            if items.len() > 100 {
                return Err(format!(
                    "{path}.length should be ≤ `100`, instead was `{}`.",
                    items.len()
                ));
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(option(p, item, &format!("{path}[{i}]"))?);
            }
            Ok(Value::Array(out))
        }
        other => Err(format!(
            "{path}: the emulator cannot write {other} properties."
        )),
    }
}

/// Finds or creates a select option (by name or id).
fn option(p: &mut PropDef, v: &Value, path: &str) -> Result<Value, Invalid> {
    if let Some(id) = v.get("id").and_then(Value::as_str) {
        return p
            .options
            .iter()
            .find(|(oid, _, _)| oid == id)
            .map(|(id, name, color)| json!({"id": id, "name": name, "color": color}))
            .ok_or_else(|| format!("{path}.id: no option with id {id}."));
    }
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}.name should be defined, instead was `undefined`."))?;
    if name.contains(',') {
        return Err(format!("{path}.name: option names cannot contain commas."));
    }
    if utf16_len(name) > 100 {
        return Err(format!(
            "{path}.name.length should be ≤ `100`, instead was `{}`.",
            utf16_len(name)
        ));
    }
    if let Some((id, name, color)) = p.options.iter().find(|(_, n, _)| n == name) {
        return Ok(json!({"id": id, "name": name, "color": color}));
    }
    let id = format!("opt{}", p.options.len());
    p.options
        .push((id.clone(), name.to_owned(), "default".into()));
    Ok(json!({"id": id, "name": name, "color": "default"}))
}

fn is_iso_date(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").is_ok()
}

/// The plain text of a title or rich_text value in response shape.
pub fn plain(value: &Value) -> String {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("plain_text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}
