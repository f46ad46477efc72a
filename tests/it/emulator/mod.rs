//! The Notion API emulator, endpoint by endpoint, with a plain HTTP client: responses per version,
//! errors as Notion sends them, rate limits, every fault, OAuth, the inspection API, the binary.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use notion_emulator::{Emulator, EmulatorOptions, Faults, RateLimit};
use serde_json::{Value, json};

mod fidelity;
mod workspaces;

struct T {
    rt: tokio::runtime::Runtime,
    emu: Emulator,
    http: reqwest::Client,
}

/// The emulator with room for every request a test sends at once.
fn fast() -> EmulatorOptions {
    crate::support::limited_to(1000.0)
}

impl T {
    fn new(opts: EmulatorOptions) -> T {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt.block_on(Emulator::start(opts)).unwrap();
        T {
            rt,
            emu,
            http: reqwest::Client::new(),
        }
    }

    /// An API call with the internal token; returns (status, headers, body).
    fn call(
        &self,
        method: &str,
        path: &str,
        version: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let token = self.emu.info().token.clone();
        self.call_as(&token, method, path, version, body)
    }

    fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        version: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{}{path}", self.emu.url()))
                .bearer_auth(token);
            if let Some(v) = version {
                req = req.header("Notion-Version", v);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap();
            (
                status,
                headers,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    fn create(&self, version: &str, properties: Value) -> (u16, Value) {
        let parent =
            json!({"type": "data_source_id", "data_source_id": self.emu.info().data_source_id});
        let (s, _, b) = self.call(
            "POST",
            "/v1/pages",
            Some(version),
            Some(json!({"parent": parent, "properties": properties})),
        );
        (s, b)
    }
}

const V25: Option<&str> = Some("2025-09-03");
const V22: Option<&str> = Some("2022-06-28");
const V26: Option<&str> = Some("2026-03-11");

fn title(s: &str) -> Value {
    json!({"title": [{"type": "text", "text": {"content": s}}]})
}

#[track_caller]
fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, message_part: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(message_part),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
}

#[test]
fn authentication_and_version_are_required() {
    let t = T::new(fast());
    let (s, h, b) = t.call("GET", "/v1/users/me", V25, None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["type"], "bot");
    assert_eq!(b["bot"]["workspace_name"], "Acme");
    assert!(h.contains_key("x-notion-request-id"));
    let (s, _, b) = t.call("GET", "/v1/users/me", None, None);
    assert_error(s, &b, 400, "missing_version", "Notion-Version");
    let (s, _, b) = t.call("GET", "/v1/users/me", Some("2021-01-01"), None);
    assert_error(s, &b, 400, "validation_error", "2021-01-01");
    let (s, h, b) = t.call_as("ntn_nope", "GET", "/v1/users/me", V25, None);
    assert_error(s, &b, 401, "unauthorized", "API token is invalid");
    assert_eq!(
        h["x-notion-request-id"].to_str().unwrap(),
        b["request_id"].as_str().unwrap()
    );
    let (s, _, b) = t.call("GET", "/v1/nothing", V25, None);
    assert_error(s, &b, 400, "invalid_request_url", "/v1/nothing");
}

#[test]
fn databases_and_data_sources_per_version() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let db = format!("/v1/databases/{}", info.database_id);
    let (s, _, b) = t.call("GET", &db, V25, None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "database");
    assert_eq!(b["title"][0]["plain_text"], "Twitter");
    assert_eq!(
        b["data_sources"],
        json!([{"id": info.data_source_id, "name": "Twitter"}])
    );
    assert!(b.get("properties").is_none());
    assert_eq!(b["archived"], false);
    let (_, _, b) = t.call("GET", &db, V22, None);
    assert!(b.get("data_sources").is_none());
    assert_eq!(b["properties"]["handle"]["id"], "title");
    assert_eq!(b["properties"]["handle"]["type"], "title");
    let (_, _, b) = t.call("GET", &db, V26, None);
    assert!(b.get("archived").is_none() && b["in_trash"] == false, "{b}");
    // Ids without dashes work; the hidden database is invisible.
    let (s, _, _) = t.call("GET", &db.replace('-', ""), V25, None);
    assert_eq!(s, 200);
    let (s, _, b) = t.call(
        "GET",
        &format!("/v1/databases/{}", info.hidden_database_id),
        V25,
        None,
    );
    assert_error(
        s,
        &b,
        404,
        "object_not_found",
        "shared with your integration",
    );
    let (s, _, b) = t.call(
        "GET",
        &format!("/v1/data_sources/{}", info.data_source_id),
        V25,
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "data_source");
    assert_eq!(b["parent"]["database_id"], info.database_id);
    let props = b["properties"].as_object().unwrap();
    assert_eq!(props.len(), 11);
    for (ty, name) in [
        ("rich_text", "tweet"),
        ("url", "Link"),
        ("date", "When"),
        ("number", "Score"),
        ("select", "Kind"),
        ("multi_select", "Tags"),
        ("checkbox", "Done"),
        ("email", "Email"),
        ("phone_number", "Phone"),
    ] {
        assert_eq!(props[name]["type"], ty);
        assert_ne!(props[name]["id"], name, "ids are not names");
    }
    let (s, _, b) = t.call(
        "GET",
        &format!("/v1/data_sources/{}", info.data_source_id),
        V22,
        None,
    );
    assert_error(s, &b, 400, "invalid_request_url", "2025-09-03");
    let (_, _, b) = t.call(
        "GET",
        &format!("/v1/databases/{}", info.multi_source_database_id),
        V25,
        None,
    );
    assert_eq!(b["data_sources"].as_array().unwrap().len(), 2);
}

#[test]
fn search_filters_and_pages_through_results() {
    let t = T::new(fast());
    let (s, _, b) = t.call(
        "POST",
        "/v1/search",
        V25,
        Some(json!({"filter": {"property": "object", "value": "data_source"}})),
    );
    assert_eq!(s, 200, "{b}");
    let names: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"][0]["plain_text"].as_str().unwrap())
        .collect();
    // Most recently edited first, as Notion orders search results without a sort.
    assert_eq!(names, ["Bugs", "Tasks", "Twitter"]);
    assert_eq!(b["object"], "list");
    let (s, _, b) = t.call(
        "POST",
        "/v1/search",
        V25,
        Some(json!({"filter": {"property": "object", "value": "database"}})),
    );
    assert_error(s, &b, 400, "validation_error", "data_source");
    let (_, _, b) = t.call(
        "POST",
        "/v1/search",
        V22,
        Some(json!({"filter": {"property": "object", "value": "database"}})),
    );
    assert_eq!(b["results"].as_array().unwrap().len(), 2);
    let (_, _, b) = t.call("POST", "/v1/search", V25, Some(json!({"query": "inbox"})));
    assert_eq!(b["results"][0]["object"], "page");
    let (s, _, b) = t.call("POST", "/v1/search", V25, Some(json!({"page_size": 101})));
    assert_error(s, &b, 400, "validation_error", "page_size");
    // Pagination: one at a time until has_more is false.
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let mut body =
            json!({"page_size": 1, "filter": {"property": "object", "value": "data_source"}});
        if let Some(c) = &cursor {
            body["start_cursor"] = json!(c);
        }
        let (_, _, b) = t.call("POST", "/v1/search", V25, Some(body));
        seen += b["results"].as_array().unwrap().len();
        if b["has_more"] == false {
            assert!(b["next_cursor"].is_null());
            break;
        }
        cursor = Some(b["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, 3);
    let (s, _, b) = t.call("POST", "/v1/search", V25, Some(json!({"bogus": 1})));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.bogus should be not present",
    );
}

#[test]
fn page_creation_validates_like_notion() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let (s, b) = t.create("2025-09-03", json!({"handle": title("@a"), "tw%3Dt": {"rich_text": [{"text": {"content": "by id"}}]}, "Kind": {"select": {"name": "brand-new"}}}));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "page");
    assert_eq!(b["parent"]["type"], "data_source_id");
    assert_eq!(
        b["properties"]["tweet"]["rich_text"][0]["plain_text"],
        "by id"
    );
    assert_eq!(b["properties"]["Kind"]["select"]["name"], "brand-new");
    assert_eq!(t.emu.pages().len(), 1);
    let cases = [
        (
            json!({"Nope": title("x")}),
            "Nope is not a property that exists",
        ),
        (
            json!({"handle": {"rich_text": []}}),
            "body.properties.handle.title should be defined",
        ),
        (
            json!({"tweet": {"rich_text": [{"text": {"content": "x".repeat(2001)}}]}}),
            "body.properties.tweet.rich_text[0].text.content.length should be ≤ `2000`, instead was `2001`.",
        ),
        (
            json!({"tweet": {"rich_text": vec![json!({"text": {"content": "x"}}); 101]}}),
            "rich_text.length should be ≤ `100`, instead was `101`",
        ),
        (
            json!({"Score": {"number": "5"}}),
            "body.properties.Score.number should be a number",
        ),
        (
            json!({"Done": {"checkbox": "yes"}}),
            "checkbox should be a boolean",
        ),
        (
            json!({"When": {"date": {"start": "yesterday"}}}),
            "ISO 8601",
        ),
        (
            json!({"Email": {"email": "a".repeat(201)}}),
            "email.length should be ≤ `200`",
        ),
        (
            json!({"Link": {"url": "u".repeat(2001)}}),
            "url.length should be ≤ `2000`",
        ),
        (json!({"Kind": {"select": {"name": "a,b"}}}), "commas"),
    ];
    for (props, message) in cases {
        let (s, b) = t.create("2025-09-03", props.clone());
        assert_error(s, &b, 400, "validation_error", message);
    }
    // 2000 UTF-16 units exactly is fine, counting an emoji as 2.
    let (s, b) = t.create(
        "2025-09-03",
        json!({"tweet": {"rich_text": [{"text": {"content": format!("{}😀", "x".repeat(1998))}}]}}),
    );
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = t.call("POST", "/v1/pages", V25, Some(json!({"parent": {"data_source_id": info.data_source_id}, "properties": {}, "extra": 1})));
    assert_error(
        s,
        &b,
        400,
        "validation_error",
        "body.extra should be not present",
    );
    let (s, b) = t.rt.block_on(async {
        let r = t
            .http
            .post(format!("{}/v1/pages", t.emu.url()))
            .bearer_auth(&info.token)
            .header("Notion-Version", "2025-09-03")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    assert_error(s, &b, 400, "invalid_json", "JSON");
    // Parents per version.
    let (s, _, b) = t.call("POST", "/v1/pages", V25, Some(json!({"parent": {"database_id": info.database_id}, "properties": {"handle": title("@db")}})));
    assert_eq!(
        s, 200,
        "one data source: a database parent is accepted: {b}"
    );
    let (s, _, b) = t.call(
        "POST",
        "/v1/pages",
        V25,
        Some(json!({"parent": {"database_id": info.multi_source_database_id}, "properties": {}})),
    );
    assert_error(s, &b, 400, "validation_error", "multiple data sources");
    let (s, _, b) = t.call(
        "POST",
        "/v1/pages",
        V22,
        Some(json!({"parent": {"data_source_id": info.data_source_id}, "properties": {}})),
    );
    assert_error(s, &b, 400, "validation_error", "2022-06-28");
    let (s, _, b) = t.call("POST", "/v1/pages", V22, Some(json!({"parent": {"database_id": info.database_id}, "properties": {"handle": title("@old")}})));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["parent"],
        json!({"type": "database_id", "database_id": info.database_id})
    );
    let (s, _, b) = t.call("POST", "/v1/pages", V25, Some(json!({"parent": {"data_source_id": info.data_source_id.replace('1', "2")}, "properties": {}})));
    assert_eq!(s, 404, "{b}");
}

#[test]
fn queries_filter_by_text_and_lag_behind_writes_when_told() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    for (h, k) in [("@a", "k1"), ("@b", "k2")] {
        let (s, b) = t.create(
            "2025-09-03",
            json!({"handle": title(h), "Inbox ID": {"rich_text": [{"text": {"content": k}}]}}),
        );
        assert_eq!(s, 200, "{b}");
    }
    let q = format!("/v1/data_sources/{}/query", info.data_source_id);
    let (s, _, b) = t.call("POST", &q, V25, Some(json!({"filter": {"property": "Inbox ID", "rich_text": {"equals": "k2"}}, "page_size": 1})));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        b["results"][0]["properties"]["handle"]["title"][0]["plain_text"],
        "@b"
    );
    let (_, _, b) = t.call(
        "POST",
        &q,
        V25,
        Some(json!({"filter": {"property": "iN%40d", "rich_text": {"equals": "k3"}}})),
    );
    assert_eq!(b["results"], json!([]), "by property id, no match");
    let (_, _, b) = t.call("POST", &q, V25, Some(json!({"filter": {"or": [{"property": "title", "title": {"equals": "@a"}}, {"property": "handle", "title": {"equals": "@b"}}]}})));
    assert_eq!(b["results"].as_array().unwrap().len(), 2);
    let dbq = format!("/v1/databases/{}/query", info.database_id);
    let (s, _, b) = t.call(
        "POST",
        &dbq,
        V22,
        Some(json!({"filter": {"property": "handle", "title": {"equals": "@a"}}})),
    );
    assert_eq!(
        (s, b["results"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{b}"
    );
    let (s, _, b) = t.call("POST", &dbq, V25, Some(json!({})));
    assert_error(s, &b, 400, "invalid_request_url", "data_sources");
    // Query lag: a new page is invisible for a while, then visible.
    t.emu.set_faults(Faults {
        query_lag: Duration::from_millis(400),
        ..Faults::default()
    });
    t.create(
        "2025-09-03",
        json!({"handle": title("@late"), "Inbox ID": {"rich_text": [{"text": {"content": "k9"}}]}}),
    );
    let find = json!({"filter": {"property": "Inbox ID", "rich_text": {"equals": "k9"}}});
    let (_, _, b) = t.call("POST", &q, V25, Some(find.clone()));
    assert_eq!(b["results"], json!([]), "not visible yet");
    let start = Instant::now();
    loop {
        let (_, _, b) = t.call("POST", &q, V25, Some(find.clone()));
        if b["results"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never visible");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rate_limits_per_token_and_per_workspace() {
    let t = T::new(EmulatorOptions {
        rate: RateLimit {
            requests_per_second: 0.5,
            burst: 3,
        },
        workspace_rate: Some(RateLimit {
            requests_per_second: 0.5,
            burst: 4,
        }),
        ..EmulatorOptions::default()
    });
    let statuses: Vec<u16> = (0..4)
        .map(|_| t.call("GET", "/v1/users/me", V25, None).0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let (s, h, b) = t.call("GET", "/v1/users/me", V25, None);
    assert_error(s, &b, 429, "rate_limited", "rate limited");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another token of the same workspace has its own bucket but shares the workspace's: one
    // more request fits (4 in all), then 429.
    let other = t.emu.mint_token();
    assert_eq!(t.call_as(&other, "GET", "/v1/users/me", V25, None).0, 200);
    assert_eq!(t.call_as(&other, "GET", "/v1/users/me", V25, None).0, 429);
    assert!(t.emu.stats().rate_limited_total() >= 3);
}

#[test]
fn faults_before_and_after_the_write() {
    let t = T::new(fast());
    t.emu.set_faults(Faults {
        error_before_write: 1.0,
        seed: Some(1),
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(t.create("2025-09-03", json!({"handle": title("@x")})).0);
    }
    assert!(
        statuses.iter().all(|s| [500, 502, 503, 504].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&502) && statuses.contains(&500),
        "{statuses:?}"
    );
    assert_eq!(t.emu.pages().len(), 0, "nothing stored before the write");
    // Reproducible: the same seed gives the same statuses.
    t.emu.set_faults(Faults {
        error_before_write: 1.0,
        seed: Some(1),
        ..Faults::default()
    });
    let again: Vec<u16> = (0..12)
        .map(|_| t.create("2025-09-03", json!({"handle": title("@x")})).0)
        .collect();
    assert_eq!(again, statuses);

    t.emu.set_faults(Faults {
        timeout_after_write: 1.0,
        ..Faults::default()
    });
    let (s, b) = t.create("2025-09-03", json!({"handle": title("@stored")}));
    assert_error(s, &b, 504, "gateway_timeout", "timed out");
    assert_eq!(t.emu.pages().len(), 1, "stored despite the 504");

    t.emu.set_faults(Faults {
        drop_after_write: 1.0,
        ..Faults::default()
    });
    let err = t.rt.block_on(async {
        t.http
            .post(format!("{}/v1/pages", t.emu.url()))
            .bearer_auth(&t.emu.info().token)
            .header("Notion-Version", "2025-09-03")
            .json(&json!({"parent": {"data_source_id": t.emu.info().data_source_id}, "properties": {"handle": title("@dropped")}}))
            .send()
            .await
            .unwrap_err()
    });
    assert!(
        !err.is_timeout() && !err.is_connect(),
        "a reset after sending: {err:?}"
    );
    assert_eq!(
        t.emu.pages().len(),
        2,
        "stored before the connection was dropped"
    );

    for (faults, status, code) in [
        (
            Faults {
                storm_429: 1.0,
                ..Faults::default()
            },
            429,
            "rate_limited",
        ),
        (
            Faults {
                storm_529: 1.0,
                ..Faults::default()
            },
            529,
            "service_overload",
        ),
    ] {
        t.emu.set_faults(faults);
        let (s, h, b) = t.call("GET", "/v1/users/me", V25, None);
        assert_error(s, &b, status, code, "");
        assert_eq!(h["retry-after"], "1");
    }
    // `storm_token` confines the storms to one token's requests.
    let other = t.emu.mint_token();
    t.emu.set_faults(Faults {
        storm_429: 1.0,
        storm_token: Some(other.clone()),
        ..Faults::default()
    });
    assert_eq!(t.call("GET", "/v1/users/me", V25, None).0, 200);
    assert_eq!(t.call_as(&other, "GET", "/v1/users/me", V25, None).0, 429);
    t.emu.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    let start = Instant::now();
    t.call("GET", "/v1/users/me", V25, None);
    assert!(start.elapsed() >= Duration::from_millis(150));
    let faults = t.emu.stats().faults;
    for kind in [
        "timeout_after_write",
        "drop_after_write",
        "storm_429",
        "storm_529",
    ] {
        assert!(
            faults.get(kind).copied().unwrap_or(0) >= 1,
            "{kind}: {faults:?}"
        );
    }
}

/// Runs the consent form and returns the code, without following the redirect.
fn code_for(t: &T, redirect: &str, decision: &str) -> (u16, String) {
    let info = t.emu.info().clone();
    t.rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut url = url::Url::parse(&format!("{}/v1/oauth/authorize", info.url)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", &info.client_id)
            .append_pair("response_type", "code")
            .append_pair("owner", "user")
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "st8");
        let page = http.get(url).send().await.unwrap();
        let status = page.status().as_u16();
        let html = page.text().await.unwrap();
        if status != 200 {
            return (status, html);
        }
        for field in [
            "name=\"client_id\"",
            "name=\"redirect_uri\"",
            "name=\"state\"",
            "name=\"database\"",
            "value=\"allow\"",
            "value=\"cancel\"",
            "Twitter",
            "Hidden",
        ] {
            assert!(html.contains(field), "consent page lacks {field}: {html}");
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &info.client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "st8")
            .append_pair("database", &info.database_id)
            .append_pair("decision", decision)
            .finish();
        let r = http
            .post(format!("{}/v1/oauth/authorize", info.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 302);
        (302, r.headers()["location"].to_str().unwrap().to_owned())
    })
}

fn token_call(t: &T, basic: (&str, &str), body: Value) -> (u16, Value) {
    t.rt.block_on(async {
        let r = t
            .http
            .post(format!("{}/v1/oauth/token", t.emu.url()))
            .basic_auth(basic.0, Some(basic.1))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    })
}

#[test]
fn oauth_consent_code_exchange_refresh_rotation_revoke_and_introspect() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let redirect = info.redirect_uris[0].clone();
    let creds = (info.client_id.as_str(), info.client_secret.as_str());
    // Cancel.
    let (_, location) = code_for(&t, &redirect, "cancel");
    assert_eq!(
        location,
        format!("{redirect}?error=access_denied&state=st8")
    );
    // An unregistered redirect URI: an error page, no redirect.
    let (s, html) = code_for(&t, "http://localhost:1/evil", "allow");
    assert_eq!(s, 400);
    assert!(html.contains("not registered"), "{html}");
    // Allow, then exchange once.
    let (_, location) = code_for(&t, &redirect, "allow");
    let url = url::Url::parse(&location).unwrap();
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st8");
    let code = q["code"].clone();
    let (s, b) = token_call(
        &t,
        creds,
        json!({"grant_type": "authorization_code", "code": code, "redirect_uri": "http://localhost:9/other"}),
    );
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let (s, b) = token_call(
        &t,
        (creds.0, "wrong"),
        json!({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}),
    );
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "{b}"
    );
    let (s, tokens) = token_call(
        &t,
        creds,
        json!({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}),
    );
    assert_eq!(s, 200, "{tokens}");
    for k in [
        "access_token",
        "token_type",
        "refresh_token",
        "bot_id",
        "workspace_id",
        "workspace_name",
        "workspace_icon",
        "owner",
        "duplicated_template_id",
        "request_id",
    ] {
        assert!(tokens.get(k).is_some(), "missing {k}: {tokens}");
    }
    assert_eq!(tokens["owner"]["type"], "user");
    let (s, b) = token_call(
        &t,
        creds,
        json!({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}),
    );
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code is single-use: {b}"
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // The token sees what was picked, and only that.
    assert_eq!(
        t.call_as(
            &access,
            "GET",
            &format!("/v1/databases/{}", info.database_id),
            V25,
            None
        )
        .0,
        200
    );
    assert_eq!(
        t.call_as(
            &access,
            "GET",
            &format!("/v1/databases/{}", info.multi_source_database_id),
            V25,
            None
        )
        .0,
        404
    );
    // Refresh rotates; the old refresh token is then refused.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (s, fresh) = token_call(
        &t,
        creds,
        json!({"grant_type": "refresh_token", "refresh_token": refresh}),
    );
    assert_eq!(s, 200, "{fresh}");
    assert_ne!(fresh["refresh_token"], tokens["refresh_token"]);
    let (s, b) = token_call(
        &t,
        creds,
        json!({"grant_type": "refresh_token", "refresh_token": refresh}),
    );
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    // A form body works too.
    let (s, _) = t.rt.block_on(async {
        let form = format!(
            "grant_type=refresh_token&refresh_token={}",
            fresh["refresh_token"].as_str().unwrap()
        );
        let r = t
            .http
            .post(format!("{}/v1/oauth/token", t.emu.url()))
            .basic_auth(creds.0, Some(creds.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    });
    assert_eq!(s, 200);
    // Introspect, expire, revoke.
    let post = |path: &str, token: &str| -> Value {
        t.rt.block_on(async {
            t.http
                .post(format!("{}{path}", t.emu.url()))
                .basic_auth(creds.0, Some(creds.1))
                .json(&json!({"token": token}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    assert_eq!(post("/v1/oauth/introspect", &access)["active"], true);
    t.emu.expire_token(&access);
    assert_eq!(t.call_as(&access, "GET", "/v1/users/me", V25, None).0, 401);
    let fresh_access = fresh["access_token"].as_str().unwrap();
    post("/v1/oauth/revoke", fresh_access);
    assert_eq!(post("/v1/oauth/introspect", fresh_access)["active"], false);
    assert_eq!(
        t.call_as(fresh_access, "GET", "/v1/users/me", V25, None).0,
        401
    );
}

#[test]
fn the_inspection_api_sees_and_changes_the_state() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    t.create("2025-09-03", json!({"handle": title("@seen")}));
    let get = |path: &str| -> Value {
        t.rt.block_on(async {
            t.http
                .get(format!("{}{path}", t.emu.url()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    assert_eq!(
        get("/_emulator/pages")[0]["properties"]["handle"]["title"][0]["plain_text"],
        "@seen"
    );
    assert_eq!(get("/_emulator/stats")["pages_created"], 1);
    assert_eq!(get("/_emulator/info")["database_id"], info.database_id);
    let post = |path: &str, body: Value| -> u16 {
        t.rt.block_on(async {
            t.http
                .post(format!("{}{path}", t.emu.url()))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(
        post(
            &format!("/_emulator/databases/{}/unshare", info.database_id),
            json!({})
        ),
        204
    );
    assert_eq!(
        t.call(
            "GET",
            &format!("/v1/databases/{}", info.database_id),
            V25,
            None
        )
        .0,
        404
    );
    assert_eq!(
        post(
            &format!("/_emulator/databases/{}/share", info.database_id),
            json!({})
        ),
        204
    );
    assert_eq!(
        t.call(
            "GET",
            &format!("/v1/databases/{}", info.database_id),
            V25,
            None
        )
        .0,
        200
    );
    let minted: Value = t.rt.block_on(async {
        t.http
            .post(format!("{}/_emulator/tokens", t.emu.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let token = minted["token"].as_str().unwrap();
    assert_eq!(t.call_as(token, "GET", "/v1/users/me", V25, None).0, 200);
    assert_eq!(
        post("/_emulator/tokens/revoke", json!({"token": token})),
        204
    );
    assert_eq!(t.call_as(token, "GET", "/v1/users/me", V25, None).0, 401);
    let status = t.rt.block_on(async {
        t.http
            .put(format!("{}/_emulator/faults", t.emu.url()))
            .json(&json!({"storm_529": 1.0}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 204);
    assert_eq!(t.call("GET", "/v1/users/me", V25, None).0, 529);
}

#[test]
fn the_binary_prints_its_credentials_as_json_first() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_notion-inbox"))
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).expect("the first line is JSON");
    for k in [
        "url",
        "token",
        "client_id",
        "client_secret",
        "database_id",
        "data_source_id",
    ] {
        assert!(
            info[k].as_str().is_some_and(|s| !s.is_empty()),
            "{k} in {info}"
        );
    }
    let url = info["url"].as_str().unwrap().to_owned();
    let token = info["token"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/v1/users/me"))
            .bearer_auth(token)
            .header("Notion-Version", "2025-09-03")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    // SIGTERM ends it cleanly.
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) on our child.
    unsafe { kill(child.id() as i32, 15) };
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}
