//! Query filters and sorts: a request's `filter` and `sorts` are checked against the data source's
//! schema once (with Notion's messages), compiled, then applied to each row. No I/O, no clock but
//! the `now` it is given.
//!
//! Where Notion's reference is silent, the emulator says so here: text conditions compare exactly
//! (case and all); rows with an empty value sort last in either direction; a query without
//! `sorts` keeps creation order.

use std::cmp::Ordering;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::objects::{Version, plain};
use super::state::{Ds, PropDef, Row};
use super::values::is_iso_date;

/// A failed check: the message, sent as 400 `validation_error`.
pub(crate) type Invalid = String;

/// A compiled filter.
#[derive(Debug)]
pub(crate) enum Cond {
    /// Every one holds.
    And(Vec<Cond>),
    /// At least one holds.
    Or(Vec<Cond>),
    /// A condition on one property, by name.
    Prop(String, Op),
    /// A condition on `created_time` (false) or `last_edited_time` (true).
    Timestamp(bool, DateOp),
}

/// A condition on a property's value.
#[derive(Debug)]
pub(crate) enum Op {
    /// Text (title, rich_text, url, email, phone_number): operator and operand.
    Text(&'static str, String),
    /// Number: operator and operand.
    Number(&'static str, f64),
    /// Checkbox: equals (true) or does_not_equal (false) this.
    Checkbox(bool, bool),
    /// Select: equals (true) or does_not_equal (false) one of these names.
    Select(bool, Vec<String>),
    /// Multi-select: contains (true) or does_not_contain (false) these names.
    Multi(bool, Vec<String>),
    /// Date.
    Date(DateOp),
    /// is_empty (true) or is_not_empty (false).
    Empty(bool),
}

/// A date condition: an operator and the instants it compares with, or a range of them.
#[derive(Debug)]
pub(crate) enum DateOp {
    /// equals: the same day (a date) or instant (a date-time).
    On(NaiveDateTime, bool),
    /// before, after, on_or_before, on_or_after.
    Cmp(&'static str, NaiveDateTime),
    /// past_week, this_week, next_month…: start inclusive, end exclusive.
    Range(NaiveDateTime, NaiveDateTime),
    /// is_empty (true) or is_not_empty (false).
    Empty(bool),
}

const TEXT_OPS: [&str; 6] = [
    "equals",
    "does_not_equal",
    "contains",
    "does_not_contain",
    "starts_with",
    "ends_with",
];
const NUMBER_OPS: [&str; 6] = [
    "equals",
    "does_not_equal",
    "greater_than",
    "less_than",
    "greater_than_or_equal_to",
    "less_than_or_equal_to",
];

/// Compiles `filter` (null: everything matches) against `ds`.
pub(crate) fn compile(
    ds: &Ds,
    filter: &Value,
    v: Version,
    now: DateTime<Utc>,
) -> Result<Option<Cond>, Invalid> {
    if filter.is_null() {
        return Ok(None);
    }
    compile_at(ds, filter, v, now, "body.filter", 0).map(Some)
}

fn compile_at(
    ds: &Ds,
    f: &Value,
    v: Version,
    now: DateTime<Utc>,
    path: &str,
    depth: usize,
) -> Result<Cond, Invalid> {
    let bad = |m: String| format!("body failed validation: {m}");
    let obj = f
        .as_object()
        .ok_or_else(|| bad(format!("{path} should be an object, instead was `{f}`.")))?;
    for (key, make) in [
        ("and", Cond::And as fn(Vec<Cond>) -> Cond),
        ("or", Cond::Or),
    ] {
        let Some(list) = obj.get(key) else { continue };
        // Notion nests compound filters at most two levels deep.
        if depth >= 2 {
            return Err(bad(format!(
                "{path}.{key}: compound filters can be nested at most two levels deep."
            )));
        }
        let list = list.as_array().ok_or_else(|| {
            bad(format!(
                "{path}.{key} should be an array, instead was `{list}`."
            ))
        })?;
        let conds = list
            .iter()
            .enumerate()
            .map(|(i, f)| compile_at(ds, f, v, now, &format!("{path}.{key}[{i}]"), depth + 1))
            .collect::<Result<_, _>>()?;
        return Ok(make(conds));
    }
    if let Some(ts) = obj.get("timestamp") {
        let which = match ts.as_str() {
            Some("created_time") => false,
            Some("last_edited_time") => true,
            _ => {
                return Err(bad(format!(
                    "{path}.timestamp should be `\"created_time\"` or `\"last_edited_time\"`, instead was `{ts}`."
                )));
            }
        };
        let key = ts.as_str().unwrap_or_default();
        let cond = obj.get(key).ok_or_else(|| {
            bad(format!(
                "{path}.{key} should be defined, instead was `undefined`."
            ))
        })?;
        return Ok(Cond::Timestamp(
            which,
            date_op(cond, &format!("{path}.{key}"), now)?,
        ));
    }
    let name = obj.get("property").and_then(Value::as_str).ok_or_else(|| {
        bad(format!(
            "{path}.property should be defined, instead was `undefined`."
        ))
    })?;
    let p = ds
        .props
        .iter()
        .find(|p| p.name == name || p.id == name)
        .ok_or_else(|| format!("Could not find property with name or id: {name}"))?;
    let (key, cond) = obj
        .iter()
        .find(|(k, _)| *k != "property" && *k != "type")
        .ok_or_else(|| {
            bad(format!(
                "{path}.{} should be defined, instead was `undefined`.",
                p.ty
            ))
        })?;
    if !key_fits(key, p, v) {
        return Err(format!(
            "database property {} does not match filter {key}",
            p.ty
        ));
    }
    Ok(Cond::Prop(
        p.name.clone(),
        op(p, cond, &format!("{path}.{key}"), now)?,
    ))
}

/// Whether a filter keyword fits a property's type: its own type, and before 2022-02-22 also
/// `text` for title and rich_text and `phone` for phone_number.
fn key_fits(key: &str, p: &PropDef, v: Version) -> bool {
    key == p.ty
        || (v.legacy_filter_keywords()
            && ((key == "text" && matches!(p.ty, "title" | "rich_text"))
                || (key == "phone" && p.ty == "phone_number")))
}

/// The one operator of a condition object, and its operand.
fn one_op<'a>(cond: &'a Value, path: &str) -> Result<(&'a str, &'a Value), Invalid> {
    let obj = cond.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        format!("body failed validation: {path} should be an object with one condition, instead was `{cond}`.")
    })?;
    let (k, v) = obj.iter().next().expect("one entry");
    Ok((k.as_str(), v))
}

fn op(p: &PropDef, cond: &Value, path: &str, now: DateTime<Utc>) -> Result<Op, Invalid> {
    let bad = |m: String| format!("body failed validation: {m}");
    if p.ty == "date" {
        return date_op(cond, path, now).map(Op::Date);
    }
    let (name, operand) = one_op(cond, path)?;
    if name == "is_empty" || name == "is_not_empty" {
        if operand != &Value::Bool(true) {
            return Err(bad(format!(
                "{path}.{name} should be `true`, instead was `{operand}`."
            )));
        }
        return Ok(Op::Empty(name == "is_empty"));
    }
    let wrong = |what: &str| {
        bad(format!(
            "{path}.{name} should be {what}, instead was `{operand}`."
        ))
    };
    let unknown = |ops: &[&str]| {
        bad(format!(
            "{path}.{name} is not a condition for a {} property; use one of {}, is_empty, is_not_empty.",
            p.ty,
            ops.join(", ")
        ))
    };
    match p.ty {
        "title" | "rich_text" | "url" | "email" | "phone_number" => {
            let op = TEXT_OPS
                .iter()
                .find(|o| **o == name)
                .ok_or_else(|| unknown(&TEXT_OPS))?;
            let s = operand.as_str().ok_or_else(|| wrong("a string"))?;
            Ok(Op::Text(op, s.to_owned()))
        }
        "number" => {
            let op = NUMBER_OPS
                .iter()
                .find(|o| **o == name)
                .ok_or_else(|| unknown(&NUMBER_OPS))?;
            let n = operand.as_f64().ok_or_else(|| wrong("a number"))?;
            Ok(Op::Number(op, n))
        }
        "checkbox" => {
            let b = operand.as_bool().ok_or_else(|| wrong("a boolean"))?;
            match name {
                "equals" | "does_not_equal" => Ok(Op::Checkbox(name == "equals", b)),
                _ => Err(unknown(&["equals", "does_not_equal"])),
            }
        }
        "select" | "multi_select" => {
            let names: Vec<String> = match operand {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) if a.iter().all(Value::is_string) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                _ => return Err(wrong("a string or an array of strings")),
            };
            match (p.ty, name) {
                ("select", "equals" | "does_not_equal") => Ok(Op::Select(name == "equals", names)),
                ("multi_select", "contains" | "does_not_contain") => {
                    Ok(Op::Multi(name == "contains", names))
                }
                ("select", _) => Err(unknown(&["equals", "does_not_equal"])),
                _ => Err(unknown(&["contains", "does_not_contain"])),
            }
        }
        other => Err(bad(format!(
            "{path}: the emulator does not filter {other} properties."
        ))),
    }
}

/// A date condition; relative dates (`today`, `one_week_ago`…) and ranges (`past_week`,
/// `this_week`, `next_month`…) are taken from `now`, in UTC.
fn date_op(cond: &Value, path: &str, now: DateTime<Utc>) -> Result<DateOp, Invalid> {
    let bad = |m: String| format!("body failed validation: {m}");
    let (name, operand) = one_op(cond, path)?;
    let today = now.date_naive();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight");
    let range = |from: NaiveDate, to: NaiveDate| Ok(DateOp::Range(midnight(from), midnight(to)));
    let week_start = today - Duration::days(i64::from(today.weekday().num_days_from_sunday()));
    match name {
        "is_empty" | "is_not_empty" => return Ok(DateOp::Empty(name == "is_empty")),
        "past_week" => return range(today - Duration::days(7), today + Duration::days(1)),
        "past_month" => return range(today - Duration::days(30), today + Duration::days(1)),
        "past_year" => return range(today - Duration::days(365), today + Duration::days(1)),
        "next_week" => return range(today, today + Duration::days(8)),
        "next_month" => return range(today, today + Duration::days(31)),
        "next_year" => return range(today, today + Duration::days(366)),
        "this_week" => return range(week_start, week_start + Duration::days(7)),
        _ => {}
    }
    let ops = ["equals", "before", "after", "on_or_before", "on_or_after"];
    let op = ops.iter().find(|o| **o == name).ok_or_else(|| {
        bad(format!(
            "{path}.{name} is not a date condition; use one of {}, past_week, past_month, past_year, this_week, next_week, next_month, next_year, is_empty, is_not_empty.",
            ops.join(", ")
        ))
    })?;
    let s = operand.as_str().unwrap_or_default();
    let relative = match s {
        "today" => Some(today),
        "tomorrow" => Some(today + Duration::days(1)),
        "yesterday" => Some(today - Duration::days(1)),
        "one_week_ago" => Some(today - Duration::days(7)),
        "one_week_from_now" => Some(today + Duration::days(7)),
        "one_month_ago" => Some(today - Duration::days(30)),
        "one_month_from_now" => Some(today + Duration::days(30)),
        _ => None,
    };
    let (at, day) = match relative {
        Some(d) => (midnight(d), true),
        None if is_iso_date(s) => instant(s).ok_or_else(|| {
            bad(format!(
                "{path}.{name} should be a valid ISO 8601 date string, instead was `{operand}`."
            ))
        })?,
        None => {
            return Err(bad(format!(
                "{path}.{name} should be a valid ISO 8601 date string or a relative date, instead was `{operand}`."
            )));
        }
    };
    Ok(match *op {
        "equals" => DateOp::On(at, day),
        other => DateOp::Cmp(other, at),
    })
}

/// A date or date-time as an instant in UTC, and whether it was a date only.
fn instant(s: &str) -> Option<(NaiveDateTime, bool)> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some((d.and_hms_opt(0, 0, 0)?, true));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some((t.naive_utc(), false));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| (t, false))
}

/// Whether `row` satisfies `cond`.
pub(crate) fn matches(cond: &Cond, row: &Row) -> bool {
    match cond {
        Cond::And(all) => all.iter().all(|c| matches(c, row)),
        Cond::Or(any) => any.iter().any(|c| matches(c, row)),
        Cond::Timestamp(edited, op) => {
            let t = if *edited {
                &row.times.edited
            } else {
                &row.times.created
            };
            date_matches(op, instant(t))
        }
        Cond::Prop(name, op) => {
            let value = &row.page.properties[name.as_str()];
            let ty = value["type"].as_str().unwrap_or_default();
            prop_matches(op, ty, &value[ty])
        }
    }
}

fn prop_matches(op: &Op, ty: &str, v: &Value) -> bool {
    let text = || match ty {
        "title" | "rich_text" => plain(v),
        _ => v.as_str().unwrap_or_default().to_owned(),
    };
    let names = || -> Vec<&str> {
        match v {
            Value::Array(a) => a.iter().filter_map(|o| o["name"].as_str()).collect(),
            Value::Object(_) => v["name"].as_str().into_iter().collect(),
            _ => Vec::new(),
        }
    };
    match op {
        Op::Empty(empty) => {
            let is_empty = match ty {
                "title" | "rich_text" | "url" | "email" | "phone_number" => text().is_empty(),
                "select" | "multi_select" => names().is_empty(),
                "checkbox" => false,
                _ => v.is_null(),
            };
            is_empty == *empty
        }
        Op::Text(op, s) => {
            let t = text();
            match *op {
                "equals" => t == *s,
                "does_not_equal" => t != *s,
                "contains" => t.contains(s.as_str()),
                "does_not_contain" => !t.contains(s.as_str()),
                "starts_with" => t.starts_with(s.as_str()),
                _ => t.ends_with(s.as_str()),
            }
        }
        Op::Number(op, n) => v.as_f64().is_some_and(|x| match *op {
            "equals" => x == *n,
            "does_not_equal" => x != *n,
            "greater_than" => x > *n,
            "less_than" => x < *n,
            "greater_than_or_equal_to" => x >= *n,
            _ => x <= *n,
        }),
        Op::Checkbox(equals, b) => (v.as_bool().unwrap_or(false) == *b) == *equals,
        Op::Select(equals, want) => names().iter().any(|n| want.iter().any(|w| w == n)) == *equals,
        Op::Multi(contains, want) => {
            let have = names();
            want.iter().all(|w| have.contains(&w.as_str())) == *contains
        }
        Op::Date(op) => date_matches(op, v["start"].as_str().and_then(instant)),
    }
}

fn date_matches(op: &DateOp, value: Option<(NaiveDateTime, bool)>) -> bool {
    match (op, value) {
        (DateOp::Empty(empty), v) => v.is_none() == *empty,
        (_, None) => false,
        (DateOp::On(at, true), Some((t, _))) => t.date() == at.date(),
        (DateOp::On(at, false), Some((t, _))) => t == *at,
        (DateOp::Cmp(op, at), Some((t, _))) => match *op {
            "before" => t < *at,
            "after" => t > *at,
            "on_or_before" => t <= *at,
            _ => t >= *at,
        },
        (DateOp::Range(from, to), Some((t, _))) => t >= *from && t < *to,
    }
}

/// One sort: a property by name (or a timestamp: `created_time`, `last_edited_time`), and
/// whether descending.
#[derive(Debug)]
pub(crate) struct Sort {
    key: SortKey,
    descending: bool,
}

#[derive(Debug)]
enum SortKey {
    Prop(String),
    Created,
    Edited,
}

/// Compiles `sorts` (null: none) against `ds`.
pub(crate) fn compile_sorts(ds: &Ds, sorts: &Value) -> Result<Vec<Sort>, Invalid> {
    let bad = |m: String| format!("body failed validation: {m}");
    let list = match sorts {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        other => {
            return Err(bad(format!(
                "body.sorts should be an array, instead was `{other}`."
            )));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let path = format!("body.sorts[{i}]");
            let descending = match s.get("direction").and_then(Value::as_str) {
                Some("ascending") => false,
                Some("descending") => true,
                _ => {
                    return Err(bad(format!(
                        "{path}.direction should be `\"ascending\"` or `\"descending\"`, instead was `{}`.",
                        s.get("direction").unwrap_or(&Value::Null)
                    )));
                }
            };
            let key = match (s.get("property").and_then(Value::as_str), s.get("timestamp").and_then(Value::as_str)) {
                (Some(name), None) => {
                    let p = ds.props.iter().find(|p| p.name == name || p.id == name).ok_or_else(
                        || format!("Could not find sort property with name or id: {name}"),
                    )?;
                    SortKey::Prop(p.name.clone())
                }
                (None, Some("created_time")) => SortKey::Created,
                (None, Some("last_edited_time")) => SortKey::Edited,
                _ => {
                    return Err(bad(format!(
                        "{path} should have a `property`, or a `timestamp` of `\"created_time\"` or `\"last_edited_time\"`, instead was `{s}`."
                    )));
                }
            };
            Ok(Sort { key, descending })
        })
        .collect()
}

/// Orders two rows by `sorts`, the first sort first.
pub(crate) fn compare(sorts: &[Sort], ds: &Ds, a: &Row, b: &Row) -> Ordering {
    for s in sorts {
        let (ka, kb) = (sort_value(&s.key, ds, a), sort_value(&s.key, ds, b));
        let o = match (ka, kb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) if s.descending => y.cmp(&x),
            (Some(x), Some(y)) => x.cmp(&y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A value to order by: numbers by value, selects by their options' order in the schema, text
/// case-insensitively; None when empty.
#[derive(Debug, PartialEq)]
enum Key {
    Num(f64),
    Text(String),
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            (Key::Num(_), Key::Text(_)) => Ordering::Less,
            (Key::Text(_), Key::Num(_)) => Ordering::Greater,
        }
    }
}

fn sort_value(key: &SortKey, ds: &Ds, row: &Row) -> Option<Key> {
    let name = match key {
        SortKey::Created => return Some(Key::Text(row.times.created.clone())),
        SortKey::Edited => return Some(Key::Text(row.times.edited.clone())),
        SortKey::Prop(name) => name,
    };
    let value = &row.page.properties[name.as_str()];
    let ty = value["type"].as_str().unwrap_or_default();
    let v = &value[ty];
    match ty {
        "number" => v.as_f64().map(Key::Num),
        "checkbox" => Some(Key::Num(if v.as_bool() == Some(true) { 1.0 } else { 0.0 })),
        "date" => v["start"]
            .as_str()
            .and_then(instant)
            .map(|(t, _)| Key::Text(t.to_string())),
        "select" => {
            let p = ds.props.iter().find(|p| &p.name == name)?;
            let n = v["name"].as_str()?;
            p.options
                .iter()
                .position(|(_, o, _)| o == n)
                .map(|i| Key::Num(i as f64))
        }
        "multi_select" => {
            let names: Vec<&str> = v
                .as_array()?
                .iter()
                .filter_map(|o| o["name"].as_str())
                .collect();
            (!names.is_empty()).then(|| Key::Text(names.join(",").to_lowercase()))
        }
        "title" | "rich_text" => Some(plain(v))
            .filter(|t| !t.is_empty())
            .map(|t| Key::Text(t.to_lowercase())),
        _ => v
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| Key::Text(t.to_lowercase())),
    }
}
