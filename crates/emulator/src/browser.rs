//! A stand-in for the user's browser on the emulator's consent page: the demo and the tests
//! play the user (pick a workspace and databases, or the template, then Allow or Cancel).

use std::collections::BTreeMap;

use super::EmulatorInfo;

/// Plays the user on the consent page at `authorize_url`: picks the "Twitter" database (and
/// nothing else) and clicks Allow, or clicks Cancel; follows the redirect like a browser would.
/// Returns the final URL the browser landed on.
pub async fn consent(authorize_url: &url::Url, allow: bool) -> Result<url::Url, ConsentError> {
    consent_with(authorize_url, allow, None).await
}

/// Like [`consent`], picking `databases` (ids) instead of "Twitter".
pub async fn consent_with(
    authorize_url: &url::Url,
    allow: bool,
    databases: Option<Vec<String>>,
) -> Result<url::Url, ConsentError> {
    consent_as(
        authorize_url,
        Consent {
            allow,
            databases,
            ..Consent::default()
        },
    )
    .await
}

/// Why the stand-in user did not get through the consent page.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// A request failed, or an answer was not what a browser expects.
    #[error("the consent page could not be used: {0}")]
    Http(#[from] reqwest::Error),
    /// The consent page, or the page after it, answered with an error.
    #[error("{0}")]
    Answer(String),
}

/// What the user does on the consent page.
#[derive(Clone, Debug, Default)]
pub struct Consent {
    /// Allow (else Cancel).
    pub allow: bool,
    /// The workspace (its id; None: the first, "Acme").
    pub workspace: Option<String>,
    /// The databases picked (None: "Twitter").
    pub databases: Option<Vec<String>>,
    /// Duplicate the integration's template instead of picking databases.
    pub template: bool,
}

/// Plays the user on the consent page at `authorize_url` as `c` says, and follows the redirect
/// like a browser would. Returns the final URL the browser landed on.
pub async fn consent_as(authorize_url: &url::Url, c: Consent) -> Result<url::Url, ConsentError> {
    let Consent {
        allow,
        workspace,
        databases,
        template,
    } = c;
    let http = reqwest::Client::new();
    let page = http.get(authorize_url.clone()).send().await?;
    if !page.status().is_success() {
        return Err(ConsentError::Answer(format!(
            "the consent page answered {}: {}",
            page.status(),
            page.text().await.unwrap_or_default()
        )));
    }
    let mut base = authorize_url.clone();
    base.set_query(None);
    base.set_path("/_emulator/info");
    let info: EmulatorInfo = http.get(base.clone()).send().await?.json().await?;
    let q: BTreeMap<String, String> = authorize_url.query_pairs().into_owned().collect();
    let mut form: Vec<(String, String)> = ["client_id", "redirect_uri", "state"]
        .iter()
        .map(|k| (k.to_string(), q.get(*k).cloned().unwrap_or_default()))
        .collect();
    for db in databases.unwrap_or_else(|| vec![info.database_id.clone()]) {
        form.push(("database".into(), db));
    }
    if let Some(w) = workspace {
        form.push(("workspace".into(), w));
    }
    if template {
        form.push(("pages".into(), "template".into()));
    }
    form.push((
        "decision".into(),
        if allow { "allow" } else { "cancel" }.into(),
    ));
    base.set_path("/v1/oauth/authorize");
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let landed = http
        .post(base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded)
        .send()
        .await?;
    let url = landed.url().clone();
    if !landed.status().is_success() {
        return Err(ConsentError::Answer(format!(
            "after consent the browser landed on {url} with {}",
            landed.status()
        )));
    }
    Ok(url)
}
