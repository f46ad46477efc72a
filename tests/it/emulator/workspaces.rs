//! Several workspaces on the consent page, the integration's template, and a user removing the
//! integration: what public onboarding is tested against.

use super::*;

const REDIRECT: &str = "http://localhost:8765/callback";

/// Posts the consent form with `extra` fields (Allow); returns the redirect's `code`, or the
/// error page's status and text.
fn consent(t: &T, extra: &[(&str, &str)]) -> Result<String, (u16, String)> {
    let info = t.emu.info().clone();
    t.rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("client_id", &info.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "s")
            .append_pair("decision", "allow");
        for (k, v) in extra {
            form.append_pair(k, v);
        }
        let r = http
            .post(format!("{}/v1/oauth/authorize", info.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 302 {
            return Err((r.status().as_u16(), r.text().await.unwrap()));
        }
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        Ok(location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap())
    })
}

/// Exchanges `code`; returns the token response.
fn exchange(t: &T, code: &str) -> Value {
    token_grant(
        t,
        json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}),
    )
}

fn token_grant(t: &T, body: Value) -> Value {
    let info = t.emu.info().clone();
    t.rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/v1/oauth/token", info.url))
            .basic_auth(&info.client_id, Some(&info.client_secret))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn a_user_picks_the_workspace_and_its_databases_on_the_consent_page() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let page = t.rt.block_on(async {
        let url = format!(
            "{}/v1/oauth/authorize?client_id={}&response_type=code&owner=user&redirect_uri={REDIRECT}&state=s",
            info.url, info.client_id
        );
        reqwest::get(url).await.unwrap().text().await.unwrap()
    });
    for part in [
        "name=\"workspace\"",
        "Acme (as Ada Lovelace)",
        "Globex (as Grace Hopper)",
        "Tweets",
    ] {
        assert!(page.contains(part), "the consent page lacks {part}: {page}");
    }
    let code = consent(
        &t,
        &[
            ("workspace", &info.other_workspace_id),
            ("database", &info.other_database_id),
        ],
    )
    .unwrap();
    let token = exchange(&t, &code);
    assert_eq!(token["workspace_name"], "Globex", "{token}");
    assert_eq!(token["workspace_id"], info.other_workspace_id.as_str());
    assert_eq!(token["owner"]["user"]["name"], "Grace Hopper");
    assert_ne!(token["bot_id"], info.workspace_id.as_str());
    let access = token["access_token"].as_str().unwrap();
    let (_, _, me) = t.call_as(access, "GET", "/v1/users/me", V25, None);
    assert_eq!(me["bot"]["workspace_name"], "Globex");
    assert_eq!(me["id"], token["bot_id"]);
    let (_, _, found) = t.call_as(access, "POST", "/v1/search", V25, Some(json!({})));
    let titles: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"][0]["plain_text"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Tweets"], "only what was shared in Globex");
    let (s, _, b) = t.call_as(
        access,
        "GET",
        &format!("/v1/databases/{}", info.database_id),
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
    // A database of another workspace than the one chosen is refused.
    let refused = consent(
        &t,
        &[
            ("workspace", &info.other_workspace_id),
            ("database", &info.database_id),
        ],
    );
    let (status, text) = refused.unwrap_err();
    assert_eq!(status, 400);
    assert!(text.contains("of the workspace you chose"), "{text}");
}

#[test]
fn the_template_is_duplicated_and_named_in_the_token_response() {
    let t = T::new(EmulatorOptions {
        template: true,
        ..fast()
    });
    let info = t.emu.info().clone();
    let code = consent(
        &t,
        &[
            ("workspace", &info.other_workspace_id),
            ("pages", "template"),
        ],
    )
    .unwrap();
    let token = exchange(&t, &code);
    let page_id = token["duplicated_template_id"]
        .as_str()
        .expect("a duplicated template")
        .to_owned();
    let access = token["access_token"].as_str().unwrap();
    let (s, _, page) = t.call_as(access, "GET", &format!("/v1/pages/{page_id}"), V25, None);
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        page["properties"]["title"]["title"][0]["plain_text"],
        "notion-inbox"
    );
    let filter = json!({"filter": {"property": "object", "value": "data_source"}});
    let (_, _, found) = t.call_as(access, "POST", "/v1/search", V25, Some(filter));
    let ds = &found["results"][0];
    let db_id = ds["parent"]["database_id"].as_str().unwrap();
    assert_ne!(
        db_id, info.other_database_id,
        "a new database, not Globex's own"
    );
    assert_eq!(ds["database_parent"]["page_id"], page_id.as_str());
    let (_, _, db) = t.call_as(access, "GET", &format!("/v1/databases/{db_id}"), V25, None);
    assert_eq!(db["parent"], json!({"type": "page_id", "page_id": page_id}));
    // A refresh keeps what the template granted.
    let fresh = token_grant(
        &t,
        json!({"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}),
    );
    let access = fresh["access_token"].as_str().unwrap();
    let (s, _, _) = t.call_as(access, "GET", &format!("/v1/pages/{page_id}"), V25, None);
    assert_eq!(s, 200);
    // Without the template option, the choice is not offered and picks are used.
    let plain = T::new(fast());
    let code = consent(
        &plain,
        &[
            ("pages", "template"),
            ("database", &plain.emu.info().database_id),
        ],
    )
    .unwrap();
    assert!(exchange(&plain, &code)["duplicated_template_id"].is_null());
}

#[test]
fn removing_the_integration_voids_that_workspaces_tokens_only() {
    let t = T::new(fast());
    let info = t.emu.info().clone();
    let globex = exchange(
        &t,
        &consent(
            &t,
            &[
                ("workspace", &info.other_workspace_id),
                ("database", &info.other_database_id),
            ],
        )
        .unwrap(),
    );
    let acme = exchange(
        &t,
        &consent(&t, &[("database", &info.database_id)]).unwrap(),
    );
    t.emu.remove_integration(&info.other_workspace_id);
    let (s, _, b) = t.call_as(
        globex["access_token"].as_str().unwrap(),
        "GET",
        "/v1/users/me",
        V25,
        None,
    );
    assert_error(s, &b, 401, "unauthorized", "");
    let refused = token_grant(
        &t,
        json!({"grant_type": "refresh_token", "refresh_token": globex["refresh_token"]}),
    );
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    let (s, _, _) = t.call_as(
        acme["access_token"].as_str().unwrap(),
        "GET",
        "/v1/users/me",
        V25,
        None,
    );
    assert_eq!(s, 200, "Acme's authorization is untouched");
}
