//! What once passed against the emulator and failed against Notion, or the reverse: search order
//! and matching, strict query bodies, page retrieve/update/trash and property items, filters and
//! sorts, rich text beyond plain text, older versions, and Notion's small habits (list types,
//! JSON answers to wrong methods, uuid checks, request ids).

use super::*;

fn titles(b: &Value) -> Vec<String> {
    b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let t = if r["object"] == "page" {
                r["properties"]
                    .as_object()
                    .unwrap()
                    .values()
                    .find(|v| v["type"] == "title")
                    .unwrap()["title"]
                    .clone()
            } else {
                r["title"].clone()
            };
            t.as_array()
                .unwrap()
                .iter()
                .map(|i| i["plain_text"].as_str().unwrap())
                .collect()
        })
        .collect()
}

fn text(s: &str) -> Value {
    json!({"rich_text": [{"type": "text", "text": {"content": s}}]})
}

const DS_FILTER: &str = r#"{"property": "object", "value": "data_source"}"#;

#[test]
fn search_orders_by_last_edited_time_and_matches_database_titles() {
    let t = T::new(fast());
    let filter: Value = serde_json::from_str(DS_FILTER).unwrap();
    let (_, _, b) = t.call("POST", "/v1/search", V25, Some(json!({"filter": filter})));
    assert_eq!(titles(&b), ["Bugs", "Tasks", "Twitter"]);
    let (_, _, b) = t.call(
        "POST",
        "/v1/search",
        V25,
        Some(json!({"filter": filter, "sort": {"timestamp": "last_edited_time", "direction": "ascending"}})),
    );
    assert_eq!(titles(&b), ["Twitter", "Tasks", "Bugs"]);
    // A row written now is the most recently edited object: first without a filter, so code
    // that takes results[0] as "the database" breaks here as it would on Notion.
    let (s, _) = t.create("2025-09-03", json!({"handle": title("@newest")}));
    assert_eq!(s, 200);
    let (_, _, b) = t.call("POST", "/v1/search", V25, Some(json!({})));
    assert_eq!(b["results"][0]["object"], "page", "{b}");
    assert_eq!(titles(&b)[0], "@newest");
    // Under 2025-09-03 a query matches a data source's name and its database's title.
    let (_, _, b) = t.call(
        "POST",
        "/v1/search",
        V25,
        Some(json!({"query": "projects"})),
    );
    assert_eq!(titles(&b), ["Bugs", "Tasks"]);
    let (_, _, b) = t.call("POST", "/v1/search", V25, Some(json!({"query": "Tasks"})));
    assert_eq!(titles(&b), ["Tasks"]);
    let (_, _, b) = t.call(
        "POST",
        "/v1/search",
        V22,
        Some(json!({"query": "Projects"})),
    );
    assert_eq!(titles(&b), ["Projects"]);
    assert_eq!(b["type"], "page_or_database");
    for bad in [
        json!({"sort": {"timestamp": "created_time", "direction": "ascending"}}),
        json!({"sort": {"timestamp": "last_edited_time", "direction": "up"}}),
        json!({"query": 5}),
    ] {
        let (s, _, b) = t.call("POST", "/v1/search", V25, Some(bad));
        assert_error(s, &b, 400, "validation_error", "body.");
    }
}

/// Creates rows with a handle, a score, a kind, tags, done and a date; returns their ids.
fn seed_rows(t: &T) -> Vec<String> {
    let rows = [
        ("@ann", 3.0, "reply", vec!["rust"], true, "2026-01-10"),
        (
            "@bob",
            10.0,
            "quote",
            vec!["rust", "notion"],
            false,
            "2026-02-01T10:00:00Z",
        ),
        ("@cat", 7.5, "post", vec![], false, "2026-03-05"),
    ];
    rows.iter()
        .map(|(h, score, kind, tags, done, when)| {
            let tags: Vec<Value> = tags.iter().map(|n| json!({"name": n})).collect();
            let (s, b) = t.create(
                "2025-09-03",
                json!({"handle": title(h), "tweet": text(&format!("hello from {h}")),
                    "Score": {"number": score}, "Kind": {"select": {"name": kind}},
                    "Tags": {"multi_select": tags}, "Done": {"checkbox": done},
                    "When": {"date": {"start": when}}}),
            );
            assert_eq!(s, 200, "{b}");
            b["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn query(t: &T, body: Value) -> (u16, Value) {
    let path = format!("/v1/data_sources/{}/query", t.emu.info().data_source_id);
    let (s, _, b) = t.call("POST", &path, V25, Some(body));
    (s, b)
}

#[test]
fn filters_of_every_simple_type_compound_and_checked_against_the_schema() {
    let t = T::new(fast());
    seed_rows(&t);
    for (filter, want) in [
        (
            json!({"property": "Score", "number": {"greater_than": 5}}),
            vec!["@bob", "@cat"],
        ),
        (
            json!({"property": "Score", "number": {"less_than_or_equal_to": 3}}),
            vec!["@ann"],
        ),
        (
            json!({"property": "handle", "title": {"starts_with": "@b"}}),
            vec!["@bob"],
        ),
        (
            json!({"property": "tweet", "rich_text": {"ends_with": "cat"}}),
            vec!["@cat"],
        ),
        (
            json!({"property": "tweet", "rich_text": {"does_not_contain": "ann"}}),
            vec!["@bob", "@cat"],
        ),
        (
            json!({"property": "Done", "checkbox": {"equals": true}}),
            vec!["@ann"],
        ),
        (
            json!({"property": "Kind", "select": {"equals": "quote"}}),
            vec!["@bob"],
        ),
        (
            json!({"property": "Tags", "multi_select": {"contains": "notion"}}),
            vec!["@bob"],
        ),
        (
            json!({"property": "Tags", "multi_select": {"is_empty": true}}),
            vec!["@cat"],
        ),
        (
            json!({"property": "When", "date": {"on_or_after": "2026-02-01"}}),
            vec!["@bob", "@cat"],
        ),
        (
            json!({"property": "When", "date": {"equals": "2026-02-01"}}),
            vec!["@bob"],
        ),
        (
            json!({"property": "Link", "url": {"is_empty": true}}),
            vec!["@ann", "@bob", "@cat"],
        ),
        (
            json!({"timestamp": "created_time", "created_time": {"past_week": {}}}),
            vec!["@ann", "@bob", "@cat"],
        ),
        (
            json!({"timestamp": "created_time", "created_time": {"before": "2026-01-01"}}),
            vec![],
        ),
        (
            json!({"or": [{"property": "Score", "number": {"equals": 3}},
                {"and": [{"property": "Done", "checkbox": {"equals": false}},
                         {"property": "Kind", "select": {"does_not_equal": "quote"}}]}]}),
            vec!["@ann", "@cat"],
        ),
    ] {
        let (s, b) = query(&t, json!({"filter": filter}));
        assert_eq!(s, 200, "{filter}: {b}");
        assert_eq!(titles(&b), want, "{filter}");
    }
    let too_deep =
        json!({"and": [{"or": [{"and": [{"property": "Done", "checkbox": {"equals": true}}]}]}]});
    for (filter, message) in [
        (
            json!({"property": "Score", "rich_text": {"equals": "3"}}),
            "database property number does not match filter rich_text",
        ),
        (
            json!({"property": "Score", "number": {"starts_with": 3}}),
            "body.filter.number.starts_with",
        ),
        (
            json!({"property": "Score", "number": {"equals": "3"}}),
            "should be a number",
        ),
        (
            json!({"property": "Nope", "number": {"equals": 3}}),
            "Could not find property with name or id: Nope",
        ),
        (
            json!({"property": "When", "date": {"equals": "yesterday-ish"}}),
            "ISO 8601",
        ),
        (too_deep, "nested at most two levels deep"),
    ] {
        let (s, b) = query(&t, json!({"filter": filter}));
        assert_error(s, &b, 400, "validation_error", message);
    }
}

#[test]
fn query_sorts_the_trash_and_strict_bodies() {
    let t = T::new(fast());
    let ids = seed_rows(&t);
    let (_, b) = query(
        &t,
        json!({"sorts": [{"property": "Score", "direction": "descending"}]}),
    );
    assert_eq!(titles(&b), ["@bob", "@cat", "@ann"]);
    let (_, b) = query(
        &t,
        json!({"sorts": [{"property": "handle", "direction": "descending"}], "page_size": 2}),
    );
    assert_eq!(titles(&b), ["@cat", "@bob"]);
    assert_eq!(b["has_more"], true);
    let (_, b) = query(
        &t,
        json!({"sorts": [{"timestamp": "created_time", "direction": "ascending"}]}),
    );
    assert_eq!(titles(&b), ["@ann", "@bob", "@cat"]);
    // Kind sorts by the order of its options in the schema: reply, quote, post.
    let (_, b) = query(
        &t,
        json!({"sorts": [{"property": "Kind", "direction": "ascending"}]}),
    );
    assert_eq!(titles(&b), ["@ann", "@bob", "@cat"]);
    let (s, b) = query(
        &t,
        json!({"sorts": [{"property": "Nope", "direction": "ascending"}]}),
    );
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "Could not find sort property",
    );
    let (s, b) = query(
        &t,
        json!({"sorts": [{"property": "Score", "direction": "up"}]}),
    );
    assert_error(s, &b, 400, "validation_error", "direction");
    let (s, b) = query(&t, json!({"sorts": {"property": "Score"}}));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.sorts should be an array",
    );
    let (s, b) = query(&t, json!({"archived": "yes"}));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.archived should be a boolean",
    );
    let (s, b) = query(&t, json!({"result_type": "row"}));
    assert_error(s, &b, 400, "validation_error", "result_type");
    // The trash: a trashed row leaves queries, and `in_trash: true` finds only it.
    let (s, _, b) = t.call(
        "PATCH",
        &format!("/v1/pages/{}", ids[1]),
        V25,
        Some(json!({"in_trash": true})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["in_trash"].clone(), b["archived"].clone()),
        (json!(true), json!(true))
    );
    let (_, b) = query(&t, json!({}));
    assert_eq!(titles(&b), ["@ann", "@cat"]);
    let (_, b) = query(&t, json!({"in_trash": true}));
    assert_eq!(titles(&b), ["@bob"]);
    let (_, b) = query(&t, json!({"archived": true}));
    assert_eq!(titles(&b), ["@bob"]);
}

#[test]
fn pages_are_retrieved_updated_trashed_and_read_property_by_property() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let ids = seed_rows(&t);
    let page = format!("/v1/pages/{}", ids[0]);
    let (s, _, b) = t.call("GET", &page, V25, None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["properties"]["Score"]["number"], 3.0);
    assert_eq!(b["in_trash"], false);
    // `is_archived` is not in Notion's reference but the JS SDK's PageObjectResponse requires it.
    assert_eq!(b["is_archived"], false);
    let (_, _, b) = t.call(
        "GET",
        &format!("{page}?filter_properties=sC%3Fr"),
        V25,
        None,
    );
    assert_eq!(
        b["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["Score"]
    );
    // An update changes what it names and keeps the rest.
    let (s, _, b) = t.call(
        "PATCH",
        &page,
        V25,
        Some(json!({"properties": {"Score": {"number": 9}}})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["properties"]["Score"]["number"], 9);
    assert_eq!(b["properties"]["handle"]["title"][0]["plain_text"], "@ann");
    assert!(
        b["last_edited_time"].as_str() > b["created_time"].as_str()
            || b["last_edited_time"] == b["created_time"]
    );
    let (s, _, b) = t.call(
        "PATCH",
        &page,
        V25,
        Some(json!({"properties": {"Score": {"number": "9"}}})),
    );
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.properties.Score.number should be a number",
    );
    // In the trash: readable, not editable unless it leaves the trash in the same request.
    let (s, _, _) = t.call("PATCH", &page, V26, Some(json!({"in_trash": true})));
    assert_eq!(s, 200);
    let (_, _, b) = t.call("GET", &page, V26, None);
    assert_eq!(b["in_trash"], true);
    assert!(b.get("archived").is_none());
    let (s, _, b) = t.call(
        "PATCH",
        &page,
        V25,
        Some(json!({"properties": {"Score": {"number": 1}}})),
    );
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "Can't edit block that is archived",
    );
    let (s, _, b) = t.call(
        "PATCH",
        &page,
        V25,
        Some(json!({"in_trash": false, "properties": {"Score": {"number": 1}}})),
    );
    assert_eq!(
        (s, b["properties"]["Score"]["number"].clone()),
        (200, json!(1)),
        "{b}"
    );
    let (s, _, b) = t.call("PATCH", &page, V25, Some(json!({"in_trash": "no"})));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.in_trash should be a boolean",
    );
    // Property items: a number as one item; a title as a list of items; the id raw or escaped.
    let (s, _, b) = t.call("GET", &format!("{page}/properties/sC%3Fr"), V25, None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"object": "property_item", "id": "sC%3Fr", "type": "number", "number": 1})
    );
    let (_, _, b) = t.call("GET", &format!("{page}/properties/title"), V25, None);
    assert_eq!(b["object"], "list");
    assert_eq!(b["type"], "property_item");
    assert_eq!(b["property_item"]["type"], "title");
    assert_eq!(b["results"][0]["title"]["plain_text"], "@ann");
    let (s, _, _) = t.call("GET", &format!("{page}/properties/tw%253Dt"), V25, None);
    assert_eq!(s, 200);
    let (s, _, b) = t.call("GET", &format!("{page}/properties/nope"), V25, None);
    assert_error(s, &b, 404, "object_not_found", "nope");
    // A trashed database takes no new rows; its rows and schema are still readable.
    t.emu.trash_database(&info.database_id);
    let (s, b) = t.create("2025-09-03", json!({"handle": title("@late")}));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "Can't edit block that is archived",
    );
    let (_, _, b) = t.call(
        "GET",
        &format!("/v1/databases/{}", info.database_id),
        V25,
        None,
    );
    assert_eq!(b["in_trash"], true);
    let edit = json!({"properties": {"Score": {"number": 2}}});
    let (s, _, b) = t.call("PATCH", &page, V25, Some(edit));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "Can't edit block that is archived",
    );
    let (_, _, b) = t.call("POST", "/v1/search", V25, Some(json!({"query": "Twitter"})));
    assert_eq!(
        b["results"].as_array().unwrap().len(),
        0,
        "nothing in the trash: {b}"
    );
    t.emu.restore_database(&info.database_id);
    assert_eq!(
        t.create("2025-09-03", json!({"handle": title("@back")})).0,
        200
    );
}

#[test]
fn rich_text_takes_mentions_equations_annotations_and_bounded_links() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let items = json!([
        {"type": "text", "text": {"content": "bold "}, "annotations": {"bold": true, "color": "red"}},
        {"type": "mention", "mention": {"type": "date", "date": {"start": "2026-01-31"}}},
        {"mention": {"database": {"id": info.database_id}}},
        {"type": "equation", "equation": {"expression": "e^{i\\pi}+1=0"}},
        {"mention": {"type": "template_mention", "template_mention": {"type": "template_mention_date", "template_mention_date": "today"}}},
        {"text": {"content": "link", "link": {"url": "https://example.com/x"}}}
    ]);
    let (s, b) = t.create(
        "2025-09-03",
        json!({"handle": title("@rt"), "tweet": {"rich_text": items}}),
    );
    assert_eq!(s, 200, "{b}");
    let rt = &b["properties"]["tweet"]["rich_text"];
    assert_eq!(rt[0]["annotations"]["bold"], true);
    assert_eq!(rt[0]["annotations"]["color"], "red");
    assert_eq!(rt[0]["annotations"]["italic"], false);
    assert_eq!(rt[1]["mention"]["date"]["start"], "2026-01-31");
    assert_eq!(rt[1]["plain_text"], "2026-01-31");
    assert_eq!(rt[2]["mention"]["type"], "database");
    assert_eq!(rt[2]["plain_text"], "Twitter");
    assert_eq!(rt[3]["plain_text"], "e^{i\\pi}+1=0");
    assert_eq!(rt[4]["plain_text"], "@Today");
    assert_eq!(rt[5]["href"], "https://example.com/x");
    let long = format!("https://example.com/{}", "a".repeat(2000 - 20));
    assert_eq!(long.len(), 2000);
    let link = |url: &str| json!({"handle": title("@l"), "tweet": {"rich_text": [{"text": {"content": "x", "link": {"url": url}}}]}});
    assert_eq!(t.create("2025-09-03", link(&long)).0, 200);
    for (props, message) in [
        (
            link(&format!("{long}b")),
            "tweet.rich_text[0].text.link.url.length should be ≤ `2000`, instead was `2001`",
        ),
        (
            json!({"tweet": {"rich_text": [{"text": {"content": "x"}, "annotations": {"color": "teal"}}]}}),
            "annotations.color should be one of",
        ),
        (
            json!({"tweet": {"rich_text": [{"text": {"content": "x"}, "annotations": {"bold": "yes"}}]}}),
            "annotations.bold should be a boolean",
        ),
        (
            json!({"tweet": {"rich_text": [{"mention": {"page": {"id": "nope"}}}]}}),
            "mention.page.id should be a valid uuid",
        ),
        (
            json!({"tweet": {"rich_text": [{"equation": {"expression": "x".repeat(1001)}}]}}),
            "expression.length should be ≤ `1000`",
        ),
        (
            json!({"tweet": {"rich_text": [{"type": "image", "image": {}}]}}),
            "rich_text[0].type should be",
        ),
    ] {
        let (s, b) = t.create("2025-09-03", props);
        assert_error(s, &b, 400, "validation_error", message);
    }
}

#[test]
fn older_versions_are_spoken_with_their_own_filter_keywords() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    seed_rows(&t);
    let q = format!("/v1/databases/{}/query", info.database_id);
    for v in ["2021-08-16", "2022-02-22", "2022-06-28"] {
        let (s, _, b) = t.call(
            "GET",
            &format!("/v1/databases/{}", info.database_id),
            Some(v),
            None,
        );
        assert_eq!(s, 200, "{v}: {b}");
        assert_eq!(b["properties"]["handle"]["type"], "title", "{v}");
        let (_, _, b) = t.call("POST", &q, Some(v), Some(json!({})));
        assert_eq!(b["type"], "page_or_database", "{v}");
        assert!(b.get("page_or_database").is_some(), "{v}");
    }
    // `text` filtered rich_text until 2022-02-22.
    let legacy = json!({"filter": {"property": "tweet", "text": {"contains": "bob"}}});
    let (s, _, b) = t.call("POST", &q, Some("2021-08-16"), Some(legacy.clone()));
    assert_eq!(s, 200, "{b}");
    assert_eq!(titles(&b), ["@bob"]);
    let (s, _, b) = t.call("POST", &q, Some("2022-02-22"), Some(legacy));
    assert_error(s, &b, 400, "validation_error", "does not match filter text");
    let (s, _, b) = t.call("GET", "/v1/users/me", Some("2021-05-11"), None);
    assert_error(s, &b, 400, "validation_error", "2021-08-16");
}

#[test]
fn notions_small_habits_json_for_wrong_methods_uuid_checks_and_fresh_request_ids() {
    let t = T::new(fast());
    let (s, _, b) = t.call("GET", "/v1/search", V25, None);
    assert_error(s, &b, 400, "invalid_request_url", "GET /v1/search");
    for (path, name) in [
        ("/v1/databases/abc", "path.database_id"),
        ("/v1/data_sources/abc", "path.data_source_id"),
        ("/v1/pages/abc", "path.page_id"),
    ] {
        let (s, _, b) = t.call("GET", path, V25, None);
        assert_error(
            s,
            &b,
            400,
            "validation_error",
            &format!("{name} should be a valid uuid, instead was `\"abc\"`"),
        );
    }
    let (s, _, b) = t.call(
        "POST",
        "/v1/pages",
        V25,
        Some(json!({"parent": {"data_source_id": "abc"}, "properties": {}})),
    );
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.parent.data_source_id should be a valid uuid",
    );
    let (s, b) = t.create("2025-09-03", json!({"Nope": {"rich_text": []}}));
    assert_error(s, &b, 400, "validation_error", "");
    assert_eq!(b["message"], "Nope is not a property that exists.");
    // Request ids: unique within a run, and another run (same seed) does not repeat them.
    let ids = |t: &T| -> Vec<String> {
        (0..5)
            .map(|_| {
                t.call("GET", "/v1/users/me", V25, None).1["x-notion-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let first = ids(&t);
    let second = ids(&T::new(fast()));
    let all: std::collections::BTreeSet<&String> = first.iter().chain(&second).collect();
    assert_eq!(all.len(), 10, "{first:?} {second:?}");
}

#[test]
fn the_next_requests_can_be_rate_limited_deterministically() {
    let t = T::new(fast());
    t.emu.set_faults(Faults {
        rate_limit_next: 2,
        ..Faults::default()
    });
    let statuses: Vec<u16> = (0..3)
        .map(|_| t.call("GET", "/v1/users/me", V25, None).0)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    let (s, h, b) = {
        t.emu.set_faults(Faults {
            rate_limit_next: 1,
            ..Faults::default()
        });
        t.call("GET", "/v1/users/me", V25, None)
    };
    assert_error(s, &b, 429, "rate_limited", "rate limited");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(t.emu.stats().faults["rate_limit_next"], 3);
}
