//! What a request may write into a page's properties, checked against the data source's schema
//! with Notion's messages and paths, and returned in response shape: the property values of
//! `POST /v1/pages` and `PATCH /v1/pages/{id}`, and the rich-text items inside them.

use serde_json::{Map, Value, json};

use super::objects::url_of;
use super::state::{Ds, PropDef, Workspace, normalize};

/// A validation failure: the whole message Notion would send with `validation_error`.
pub(crate) type Invalid = String;

/// Prefixes a message about the body, as Notion does for schema failures.
fn body_failed(m: String) -> Invalid {
    format!("body failed validation: {m}")
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A property value that is not set, in response shape.
fn empty_value(p: &PropDef) -> Value {
    match p.ty {
        "title" | "rich_text" | "multi_select" => json!([]),
        "checkbox" => json!(false),
        _ => Value::Null,
    }
}

/// Validates the `properties` of a create (`current` None: every property of the schema is in the
/// answer, unset ones empty) or of an update (`current`: the page's values, the given ones
/// replaced). Returns them in response shape, keyed by name. May add select options to `ds`, as
/// Notion does.
pub(crate) fn validate_properties(
    ws: &Workspace,
    ds: &mut Ds,
    given: &Value,
    current: Option<&Value>,
) -> Result<Value, Invalid> {
    let given = match given {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(body_failed(format!(
                "body.properties should be an object, instead was `{other}`."
            )));
        }
    };
    let mut values: Map<String, Value> = Map::new();
    for (key, value) in &given {
        let Some(idx) = ds
            .props
            .iter()
            .position(|p| &p.name == key)
            .or_else(|| ds.props.iter().position(|p| &p.id == key))
        else {
            // Notion's message for this one has no "body failed validation" in front.
            return Err(format!("{key} is not a property that exists."));
        };
        let path = format!("body.properties.{key}");
        let shaped = value_of(ws, &mut ds.props[idx], value, &path).map_err(body_failed)?;
        values.insert(ds.props[idx].name.clone(), shaped);
    }
    let mut out = Map::new();
    for p in &ds.props {
        let v = values
            .remove(&p.name)
            .or_else(|| {
                current
                    .and_then(|c| c.get(&p.name))
                    .map(|c| c[p.ty].clone())
            })
            .unwrap_or_else(|| empty_value(p));
        out.insert(p.name.clone(), json!({"id": p.id, "type": p.ty, p.ty: v}));
    }
    Ok(Value::Object(out))
}

/// Checks one value; returns it in response shape.
fn value_of(ws: &Workspace, p: &mut PropDef, value: &Value, path: &str) -> Result<Value, Invalid> {
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
        "title" | "rich_text" => rich_text_array(ws, inner, &path),
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
            date(inner, &path)
        }
        "select" => {
            if inner.is_null() {
                return Ok(Value::Null);
            }
            option(p, inner, &path)
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

/// A date value `{start, end?, time_zone?}`, in response shape.
fn date(inner: &Value, path: &str) -> Result<Value, Invalid> {
    let start = inner
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}.start should be defined, instead was `undefined`."))?;
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
    let time_zone = inner.get("time_zone").cloned().unwrap_or(Value::Null);
    Ok(json!({"start": start, "end": end.cloned().unwrap_or(Value::Null), "time_zone": time_zone}))
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

/// Whether `s` is an ISO 8601 date or date-time, as Notion accepts them.
pub(crate) fn is_iso_date(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").is_ok()
}

/// The colors of `annotations.color` (the SDK's `ApiColor`).
const COLORS: [&str; 20] = [
    "default",
    "gray",
    "brown",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "red",
    "default_background",
    "gray_background",
    "brown_background",
    "orange_background",
    "yellow_background",
    "green_background",
    "blue_background",
    "purple_background",
    "pink_background",
    "red_background",
];

/// A rich-text array (at most 100 items), in response shape.
fn rich_text_array(ws: &Workspace, inner: &Value, path: &str) -> Result<Value, Invalid> {
    let items = inner
        .as_array()
        .ok_or_else(|| format!("{path} should be an array, instead was `{inner}`."))?;
    if items.len() > 100 {
        return Err(format!(
            "{path}.length should be ≤ `100`, instead was `{}`.",
            items.len()
        ));
    }
    let out = items
        .iter()
        .enumerate()
        .map(|(i, item)| rich_text_item(ws, item, &format!("{path}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(out))
}

/// One rich-text item (`text`, `mention` or `equation`), in response shape: the content, all six
/// annotations (the given ones over the defaults), `plain_text` and `href`.
fn rich_text_item(ws: &Workspace, item: &Value, path: &str) -> Result<Value, Invalid> {
    let obj = item
        .as_object()
        .ok_or_else(|| format!("{path} should be an object, instead was `{item}`."))?;
    let kinds = ["text", "mention", "equation"];
    let ty = match obj.get("type") {
        Some(Value::String(t)) if kinds.contains(&t.as_str()) => t.clone(),
        Some(other) => {
            return Err(format!(
                "{path}.type should be `\"text\"`, `\"mention\"` or `\"equation\"`, instead was `{other}`."
            ));
        }
        None => match kinds.iter().find(|k| obj.contains_key(**k)) {
            Some(k) => (*k).to_owned(),
            None => {
                return Err(format!(
                    "{path}.text should be defined, instead was `undefined`."
                ));
            }
        },
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "annotations", "plain_text", "href", ty.as_str()].contains(&k.as_str()))
    {
        return Err(format!(
            "{path}.{k} should be not present, instead was `{}`.",
            obj[k]
        ));
    }
    let inner = obj
        .get(&ty)
        .ok_or_else(|| format!("{path}.{ty} should be defined, instead was `undefined`."))?;
    let ipath = format!("{path}.{ty}");
    let (content, plain_text, href) = match ty.as_str() {
        "text" => text_content(inner, &ipath)?,
        "equation" => equation(inner, &ipath)?,
        _ => mention(ws, inner, &ipath)?,
    };
    let annotations = annotations(obj.get("annotations"), &format!("{path}.annotations"))?;
    Ok(json!({
        "type": ty,
        ty.as_str(): content,
        "annotations": annotations,
        "plain_text": plain_text,
        "href": href,
    }))
}

/// A text item's `{content, link}`: content at most 2000 characters, a link's URL at most 2000.
fn text_content(inner: &Value, path: &str) -> Result<(Value, String, Value), Invalid> {
    let content = inner
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!(
                "{path}.content should be a string, instead was `{}`.",
                inner.get("content").unwrap_or(&Value::Null)
            )
        })?;
    let n = utf16_len(content);
    if n > 2000 {
        return Err(format!(
            "{path}.content.length should be ≤ `2000`, instead was `{n}`."
        ));
    }
    let link = match inner.get("link") {
        None | Some(Value::Null) => Value::Null,
        Some(l) => {
            let url = l
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{path}.link.url should be a string, instead was `{l}`."))?;
            let n = utf16_len(url);
            if n > 2000 {
                return Err(format!(
                    "{path}.link.url.length should be ≤ `2000`, instead was `{n}`."
                ));
            }
            json!({"url": url})
        }
    };
    let href = link.get("url").cloned().unwrap_or(Value::Null);
    Ok((
        json!({"content": content, "link": link}),
        content.to_owned(),
        href,
    ))
}

/// An equation's `{expression}`, at most 1000 characters.
fn equation(inner: &Value, path: &str) -> Result<(Value, String, Value), Invalid> {
    let e = inner
        .get("expression")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}.expression should be a string, instead was `{inner}`."))?;
    if utf16_len(e) > 1000 {
        return Err(format!(
            "{path}.expression.length should be ≤ `1000`, instead was `{}`.",
            utf16_len(e)
        ));
    }
    Ok((json!({"expression": e}), e.to_owned(), Value::Null))
}

/// A mention of a user, a date, a page, a database or a template value. Link previews and custom
/// emojis are not modelled (they need objects the emulator does not keep).
fn mention(ws: &Workspace, inner: &Value, path: &str) -> Result<(Value, String, Value), Invalid> {
    let kinds = ["user", "date", "page", "database", "template_mention"];
    let ty = match inner.get("type").and_then(Value::as_str) {
        Some(t) => t,
        None => kinds
            .iter()
            .find(|k| inner.get(**k).is_some())
            .copied()
            .unwrap_or("user"),
    };
    if !kinds.contains(&ty) {
        return Err(format!(
            "{path}.type should be one of `\"user\"`, `\"date\"`, `\"page\"`, `\"database\"`, `\"template_mention\"` (the emulator does not model link previews or custom emojis), instead was `\"{ty}\"`."
        ));
    }
    let v = inner
        .get(ty)
        .ok_or_else(|| format!("{path}.{ty} should be defined, instead was `undefined`."))?;
    let ipath = format!("{path}.{ty}");
    let id = |what: &str| -> Result<String, Invalid> {
        let raw = v.get("id").and_then(Value::as_str).unwrap_or_default();
        normalize(raw).ok_or_else(|| {
            format!("{ipath}.id should be a valid uuid, instead was `\"{raw}\"`. ({what})")
        })
    };
    let (value, plain, href) = match ty {
        "user" => {
            let id = id("a user")?;
            let name = if id == ws.bot_id {
                "notion-inbox"
            } else {
                "Anonymous"
            };
            (
                json!({"object": "user", "id": id}),
                format!("@{name}"),
                Value::Null,
            )
        }
        "date" => {
            let d = date(v, &ipath)?;
            let mut plain = d["start"].as_str().unwrap_or_default().to_owned();
            if let Some(end) = d["end"].as_str() {
                plain = format!("{plain} → {end}");
            }
            (d, plain, Value::Null)
        }
        "template_mention" => template_mention(v, &ipath)?,
        _ => {
            let id = id(if ty == "page" { "a page" } else { "a database" })?;
            let title = title_of(ws, &id).unwrap_or_else(|| "Untitled".to_owned());
            (json!({"id": id}), title, json!(url_of(&id)))
        }
    };
    Ok((json!({"type": ty, ty: value}), plain, href))
}

/// `{type:"template_mention_date", template_mention_date:"today"|"now"}` or
/// `{type:"template_mention_user", template_mention_user:"me"}`.
fn template_mention(v: &Value, path: &str) -> Result<(Value, String, Value), Invalid> {
    let plain = match (
        v.get("template_mention_date").and_then(Value::as_str),
        v.get("template_mention_user").and_then(Value::as_str),
    ) {
        (Some("today"), None) => "@Today",
        (Some("now"), None) => "@Now",
        (None, Some("me")) => "@Me",
        _ => {
            return Err(format!(
                "{path} should be `{{\"template_mention_date\": \"today\" | \"now\"}}` or `{{\"template_mention_user\": \"me\"}}`, instead was `{v}`."
            ));
        }
    };
    let ty = if v.get("template_mention_date").is_some() {
        "template_mention_date"
    } else {
        "template_mention_user"
    };
    Ok((
        json!({"type": ty, ty: v[ty]}),
        plain.to_owned(),
        Value::Null,
    ))
}

/// The title of a database, a plain page or a row, by id.
fn title_of(ws: &Workspace, id: &str) -> Option<String> {
    if let Some(db) = ws.dbs.iter().find(|d| d.id == id) {
        return Some(db.title.clone());
    }
    if let Some(p) = ws.plain_pages.iter().find(|p| p.id == id) {
        return Some(p.title.clone());
    }
    let row = ws.rows.iter().find(|r| r.page.id == id)?;
    row.page
        .properties
        .as_object()?
        .values()
        .find(|v| v["type"] == "title")
        .map(|v| super::objects::plain(&v["title"]))
}

/// The six annotations: the given ones (booleans, and a color of [`COLORS`]) over the defaults.
fn annotations(given: Option<&Value>, path: &str) -> Result<Value, Invalid> {
    let mut out = json!({"bold": false, "italic": false, "strikethrough": false,
        "underline": false, "code": false, "color": "default"});
    let Some(given) = given.filter(|g| !g.is_null()) else {
        return Ok(out);
    };
    let obj = given
        .as_object()
        .ok_or_else(|| format!("{path} should be an object, instead was `{given}`."))?;
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("bold" | "italic" | "strikethrough" | "underline" | "code", Value::Bool(_)) => {}
            ("color", Value::String(c)) if COLORS.contains(&c.as_str()) => {}
            ("bold" | "italic" | "strikethrough" | "underline" | "code", _) => {
                return Err(format!(
                    "{path}.{k} should be a boolean, instead was `{v}`."
                ));
            }
            ("color", _) => {
                return Err(format!(
                    "{path}.color should be one of {}, instead was `{v}`.",
                    COLORS.map(|c| format!("`\"{c}\"`")).join(", ")
                ));
            }
            _ => {
                return Err(format!(
                    "{path}.{k} should be not present, instead was `{v}`."
                ));
            }
        }
        out[k] = v.clone();
    }
    Ok(out)
}
