//! OAuth 2.0 for a public integration (notion-api.md §1): the authorize URL, the code exchange and
//! the refresh grant. Hand-written rather than with the `oauth2` crate: Notion's flow is three small
//! requests with a non-standard response (no expiry, workspace fields) and two error styles.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::notion::NotionClient;
use crate::notion::error::{ApiError, ErrorCode, NotionError, printable};

/// Notion's answer to a token request. The secrets are kept apart from the rest.
#[derive(Clone)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token, if any.
    pub refresh_token: Option<SecretString>,
    /// Always "bearer".
    pub token_type: String,
    /// The bot user id.
    pub bot_id: String,
    /// The workspace id.
    pub workspace_id: String,
    /// The workspace name, if any.
    pub workspace_name: Option<String>,
    /// The rest of the response, without the secrets.
    pub rest: Value,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("workspace_id", &self.workspace_id)
            .field("workspace_name", &self.workspace_name)
            .field("bot_id", &self.bot_id)
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    /// Parses the body, moving the secrets out of the JSON.
    pub fn parse(mut body: Value) -> Result<TokenResponse, String> {
        let obj = body
            .as_object_mut()
            .ok_or("the token response is not a JSON object")?;
        let access_token = match obj.remove("access_token") {
            Some(Value::String(s)) if !s.is_empty() => SecretString::from(s),
            _ => return Err("the token response has no access_token".into()),
        };
        let refresh_token = match obj.remove("refresh_token") {
            Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s)),
            _ => None,
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(TokenResponse {
            token_type: text("token_type").unwrap_or_else(|| "bearer".into()),
            bot_id: text("bot_id").unwrap_or_default(),
            workspace_id: text("workspace_id").unwrap_or_default(),
            // Chosen by whoever connects: made safe as it is read.
            workspace_name: text("workspace_name").map(|n| crate::text::label(&n)),
            access_token,
            refresh_token,
            rest: body,
        })
    }

    /// The name (or email) of the user who authorized, if the response names one.
    pub fn owner_name(&self) -> Option<String> {
        let user = self.rest.get("owner")?.get("user")?;
        user.get("name")
            .and_then(Value::as_str)
            .or_else(|| user.get("person")?.get("email")?.as_str())
            .map(crate::text::label)
    }
}

/// The URL to open in the user's browser.
pub fn authorize_url(api_base: &Url, client_id: &str, redirect_uri: &Url, state: &str) -> Url {
    let mut url = api_base.join("/v1/oauth/authorize").expect("a valid path");
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("owner", "user")
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("state", state);
    url
}

/// A fresh random `state` value (128 bits, hex).
pub fn new_state() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses an OAuth error body, in Notion's style or RFC 6749's.
pub fn parse_oauth_error(status: u16, body: &Value, request_id: Option<String>) -> ApiError {
    let (code, message) = if let Some(code) = body.get("code").and_then(Value::as_str) {
        (
            code.to_owned(),
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    } else if let Some(code) = body.get("error").and_then(Value::as_str) {
        (
            code.to_owned(),
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    } else {
        (
            ErrorCode::for_status(status).as_str().to_owned(),
            String::new(),
        )
    };
    ApiError {
        status,
        code: ErrorCode::parse(&code),
        message,
        request_id: body
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(request_id),
        retry_after: None,
    }
}

impl NotionClient {
    /// Exchanges an authorization code for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &Url,
    ) -> Result<TokenResponse, NotionError> {
        let body = serde_json::json!({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri.as_str(),
        });
        self.token_request(body).await
    }

    /// Uses a refresh token; Notion rotates it, so the caller must persist the new pair.
    pub async fn refresh_token(
        &self,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, NotionError> {
        let body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose_secret(),
        });
        self.token_request(body).await
    }

    /// Revokes `token` (`POST /v1/oauth/revoke`): the authorization ends, as if the user had
    /// removed the integration.
    pub async fn revoke(&self, token: &SecretString) -> Result<(), NotionError> {
        let (client_id, secret) = self.oauth_credentials()?;
        let body = serde_json::json!({"token": token.expose_secret()});
        self.basic_post("/v1/oauth/revoke", client_id, secret, &body)
            .await
            .map(|_| ())
    }

    async fn token_request(&self, body: Value) -> Result<TokenResponse, NotionError> {
        let (client_id, secret) = self.oauth_credentials()?;
        let value = self
            .basic_post("/v1/oauth/token", client_id, secret, &body)
            .await?;
        TokenResponse::parse(value).map_err(|detail| NotionError::Decode {
            endpoint: "POST /v1/oauth/token".into(),
            detail,
        })
    }
}

/// Why a token could not be refreshed, and whether a person must act (only for
/// [`RefreshError::Refused`]). No variant holds a secret: the causes are Notion's answers (Notion
/// does not echo tokens), transport errors (URLs only) and I/O errors.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Trying again later may work, and the authorization still stands: the token endpoint could
    /// not be reached, failed (5xx), asked to wait (429), or its answer was lost or unreadable.
    /// After a lost answer Notion may have rotated the pair already; the next attempt then gets
    /// `invalid_grant`, which is [`RefreshError::Refused`].
    #[error(
        "cannot refresh the token for now ({what}); the authorization still stands and the refresh is tried again later"
    )]
    Transient {
        /// What failed, in a few words.
        what: String,
        /// How long the token endpoint asked to wait, if it did.
        retry_after: Option<Duration>,
        /// The failure.
        #[source]
        source: Box<NotionError>,
    },
    /// Notion refused the refresh (`invalid_grant`, `invalid_client`, `unauthorized_client`), or
    /// this token cannot be refreshed at all: a person must act, as `reason` says.
    #[error("{reason}")]
    Refused {
        /// What was refused and the fix.
        reason: String,
        /// Notion's answer, if it answered.
        #[source]
        source: Option<Box<NotionError>>,
    },
    /// The OAuth client secret cannot be loaded (its file is open to others, unreadable,
    /// missing or empty): fixable on this machine, so it is tried again, with no authorization.
    /// The file is read again at each attempt.
    #[error(
        "cannot refresh the token: the OAuth client secret cannot be loaded; the refresh is tried again by itself once the file is fixed"
    )]
    ClientSecret {
        /// What is wrong with the file, and the fix.
        #[source]
        source: crate::state::private::PrivateFileError,
    },
    /// The token file (or its lock file) cannot be read, written or locked.
    #[error("cannot {action} the token file {path}: {fix}")]
    Io {
        /// What was being done: "read", "lock", "save the refreshed token to"...
        action: &'static str,
        /// The token file.
        path: PathBuf,
        /// What to do about it.
        fix: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RefreshError {
    /// Whether a person must authorize again (or fix the client credentials): true only for
    /// [`RefreshError::Refused`]. A transient failure never de-authorizes a target.
    pub fn needs_authorization(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    /// Classifies a failed request to the token endpoint. Which error answers refuse the refresh
    /// is the core's reading (`notion_inbox_core::answer::refresh_refused`); a transport failure
    /// or an unreadable answer is transient: retrying does no harm (at worst it meets the refusal
    /// then), and de-authorizing would need a person.
    /// A [`NotionError::Token`] here means the OAuth client credentials are missing: refused. A
    /// [`NotionError::Local`] means the client secret's file cannot be used:
    /// [`RefreshError::ClientSecret`].
    pub fn from_token_endpoint(error: NotionError) -> RefreshError {
        let what = match &error {
            NotionError::Api(api) if notion_inbox_core::answer::refresh_refused(&api.wire()) => {
                let reason = if api.code == ErrorCode::InvalidGrant {
                    "Notion refused the refresh token (invalid_grant: it was used, revoked or has expired); run `notion-inbox authorize` for this target again"
                } else {
                    "Notion refused the OAuth client when refreshing the token: check client_id and the client secret in [notion] of the configuration, then run `notion-inbox authorize` for this target if the refresh is still refused"
                };
                return Self::refused(reason, Some(error));
            }
            NotionError::Token(_) => {
                return Self::refused(
                    "the token cannot be refreshed without the OAuth client credentials: set client_id and client_secret_file in [notion] of the configuration",
                    Some(error),
                );
            }
            NotionError::Api(api) => {
                format!("the token endpoint answered {} {}", api.status, api.code)
            }
            NotionError::Transport {
                what, sent: false, ..
            } => what.clone(),
            NotionError::Transport {
                what, sent: true, ..
            } => {
                format!("{what}, after the request may have reached Notion")
            }
            NotionError::Decode { .. } => "the token endpoint's answer cannot be read".to_owned(),
            NotionError::Local(_) => {
                let NotionError::Local(source) = error else {
                    unreachable!("this arm matched a local error")
                };
                return RefreshError::ClientSecret { source };
            }
        };
        RefreshError::Transient {
            what,
            retry_after: error.api().and_then(|a| a.retry_after),
            source: Box::new(error),
        }
    }

    /// The file on this machine whose fix lets the refresh work: the client secret's file
    /// ([`RefreshError::ClientSecret`]) or the token file ([`RefreshError::Io`]).
    pub fn local_file(&self) -> Option<&std::path::Path> {
        match self {
            Self::ClientSecret { source } => Some(source.path()),
            Self::Io { path, .. } => Some(path),
            Self::Transient { .. } | Self::Refused { .. } => None,
        }
    }

    /// A refusal that needs a person, `reason` saying what to do.
    pub fn refused(reason: impl Into<String>, source: Option<NotionError>) -> RefreshError {
        RefreshError::Refused {
            reason: reason.into(),
            source: source.map(Box::new),
        }
    }
}

/// For callers that only report the failure: the message with its causes.
impl From<RefreshError> for NotionError {
    fn from(e: RefreshError) -> NotionError {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        NotionError::Token(text)
    }
}

/// What an OAuth redirect carried, once its `state` matched.
#[derive(Debug)]
pub enum Redirect {
    /// The user allowed access: the authorization code, a secret until it is exchanged.
    Code(SecretString),
    /// The user refused, or Notion failed: what it said, for people.
    Error(String),
}

/// Why a request to the redirect URI is not this authorization's redirect. None of them echoes
/// what the request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// No `state` parameter: not a redirect of this program's authorize URL.
    #[error("the redirect has no state parameter")]
    NoState,
    /// Another `state`: a stale redirect (of an earlier `authorize`) or a forged one.
    #[error("the redirect's state does not match this authorization (a stale or forged redirect)")]
    StateMismatch,
    /// A parameter given twice, which OAuth forbids (RFC 6749 §3.1): which one to believe is
    /// not for this program to guess.
    #[error("the redirect repeats its {0} parameter")]
    Repeated(&'static str),
    /// The right `state`, but neither `code` nor `error`.
    #[error("the redirect carries neither a code nor an error")]
    NoCode,
}

/// Reads a redirect's query string, checking `state` first: a request whose `state` is missing
/// or wrong is refused before anything else in it is looked at.
pub fn parse_redirect(query: &str, expected_state: &str) -> Result<Redirect, RedirectError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &'static str| -> Result<Option<String>, RedirectError> {
        let mut values = pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(RedirectError::Repeated(k)),
            (value, _) => Ok(value.cloned()),
        }
    };
    match get("state")? {
        Some(s) if same_secret(&s, expected_state) => {}
        Some(_) => return Err(RedirectError::StateMismatch),
        None => return Err(RedirectError::NoState),
    }
    if let Some(error) = get("error")? {
        // Whoever sent the request chose these texts: they are shown without control characters.
        let text = match error.as_str() {
            "access_denied" => {
                "access was denied on Notion's consent page (Cancel was chosen)".to_owned()
            }
            other => format!(
                "Notion refused the authorization: {}{}",
                printable(other),
                get("error_description")?
                    .map(|d| format!(" ({})", printable(&d)))
                    .unwrap_or_default()
            ),
        };
        return Ok(Redirect::Error(text));
    }
    match get("code")? {
        Some(code) if !code.is_empty() => Ok(Redirect::Code(SecretString::from(code))),
        _ => Err(RedirectError::NoCode),
    }
}

/// Compares two secrets without stopping at the first difference, so the time taken does not
/// tell how much of a guess was right (only whether the lengths differ, which is no secret).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_has_every_parameter() {
        let base = Url::parse("https://api.notion.com").unwrap();
        let redirect = Url::parse("http://localhost:8765/callback").unwrap();
        let url = authorize_url(&base, "cid", &redirect, "st");
        assert_eq!(
            url.as_str(),
            "https://api.notion.com/v1/oauth/authorize?client_id=cid&response_type=code&owner=user&redirect_uri=http%3A%2F%2Flocalhost%3A8765%2Fcallback&state=st"
        );
    }

    #[test]
    fn redirects_are_checked() {
        assert!(matches!(
            parse_redirect("code=abc&state=s1", "s1"),
            Ok(Redirect::Code(c)) if c.expose_secret() == "abc"
        ));
        assert!(matches!(
            parse_redirect("error=access_denied&state=s1", "s1"),
            Ok(Redirect::Error(e)) if e.contains("denied")
        ));
        for (query, why) in [
            ("code=abc&state=evil", RedirectError::StateMismatch),
            ("code=abc&state=s", RedirectError::StateMismatch),
            ("error=access_denied&state=s2", RedirectError::StateMismatch),
            ("code=abc", RedirectError::NoState),
            ("state=s1", RedirectError::NoCode),
            ("code=&state=s1", RedirectError::NoCode),
            ("code=a&state=s1&state=s1", RedirectError::Repeated("state")),
            ("code=a&code=b&state=s1", RedirectError::Repeated("code")),
        ] {
            assert_eq!(parse_redirect(query, "s1").unwrap_err(), why, "{query}");
        }
    }

    #[test]
    fn a_redirect_error_is_shown_with_its_control_characters_escaped() {
        let query = "state=s1&error=odd%1B%5B2J&error_description=line%0D%0Aover%07";
        match parse_redirect(query, "s1").unwrap() {
            Redirect::Error(text) => {
                assert_eq!(
                    text,
                    "Notion refused the authorization: odd\\u{1b}[2J (line\\u{d}\\u{a}over\\u{7})"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_code_is_not_in_debug_output() {
        let r = parse_redirect("code=sekrit&state=s1", "s1").unwrap();
        assert!(!format!("{r:?}").contains("sekrit"));
    }

    #[test]
    fn both_error_styles_parse() {
        let notion = serde_json::json!({"object":"error","status":400,"code":"invalid_grant","message":"Invalid code.","request_id":"r1"});
        let e = parse_oauth_error(400, &notion, None);
        assert_eq!(
            (e.code, e.message.as_str(), e.request_id.as_deref()),
            (ErrorCode::InvalidGrant, "Invalid code.", Some("r1"))
        );
        let rfc = serde_json::json!({"error":"invalid_client","error_description":"bad secret"});
        let e = parse_oauth_error(401, &rfc, Some("h".into()));
        assert_eq!(
            (e.code, e.message.as_str(), e.request_id.as_deref()),
            (ErrorCode::InvalidClient, "bad secret", Some("h"))
        );
    }

    fn token_endpoint(status: u16, body: Value) -> RefreshError {
        let mut api = parse_oauth_error(status, &body, None);
        api.retry_after = (status == 429).then(|| Duration::from_secs(3));
        RefreshError::from_token_endpoint(NotionError::Api(api))
    }

    #[test]
    fn only_an_oauth_refusal_needs_authorization() {
        use serde_json::json;
        for (status, body) in [
            (400, json!({"error": "invalid_grant"})),
            (
                400,
                json!({"object": "error", "status": 400, "code": "invalid_grant", "message": "m"}),
            ),
            (401, json!({"error": "invalid_client"})),
            (400, json!({"error": "unauthorized_client"})),
        ] {
            let e = token_endpoint(status, body.clone());
            assert!(e.needs_authorization(), "{status} {body}: {e}");
            assert!(e.to_string().contains("notion-inbox authorize"), "{e}");
        }
        for (status, body) in [
            (
                503,
                json!({"object": "error", "code": "service_unavailable", "message": "m"}),
            ),
            (500, Value::Null),
            (502, Value::Null),
            (
                429,
                json!({"object": "error", "code": "rate_limited", "message": "m"}),
            ),
            // A refusal code with a status that does not refuse (a confused proxy): retried.
            (503, json!({"error": "invalid_grant"})),
            (400, json!({"error": "invalid_request"})),
        ] {
            let e = token_endpoint(status, body.clone());
            assert!(!e.needs_authorization(), "{status} {body}: {e}");
            assert!(matches!(e, RefreshError::Transient { .. }), "{e:?}");
        }
        assert!(matches!(
            token_endpoint(429, json!({"code": "rate_limited"})),
            RefreshError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        for sent in [false, true] {
            let e = RefreshError::from_token_endpoint(NotionError::Transport {
                what: "cannot connect to http://x/".into(),
                detail: "dns error".into(),
                sent,
            });
            assert!(!e.needs_authorization(), "{e}");
        }
        let decode = RefreshError::from_token_endpoint(NotionError::Decode {
            endpoint: "POST /v1/oauth/token".into(),
            detail: "the body is not JSON".into(),
        });
        assert!(!decode.needs_authorization(), "{decode}");
        let no_client = RefreshError::from_token_endpoint(NotionError::Token(
            "no OAuth client_id is configured".into(),
        ));
        assert!(no_client.needs_authorization(), "{no_client}");
        assert!(no_client.to_string().contains("client_id"), "{no_client}");
    }

    #[test]
    fn refresh_errors_keep_their_cause_as_source_and_convert_with_it() {
        let e = token_endpoint(
            503,
            serde_json::json!({"code": "service_unavailable", "message": "down"}),
        );
        let text = e.to_string();
        assert!(text.starts_with("cannot refresh the token for now (the token endpoint answered 503 service_unavailable)"), "{text}");
        assert!(!text.ends_with('.'), "{text}");
        let source = std::error::Error::source(&e).expect("a source").to_string();
        assert!(source.contains("down"), "{source}");
        let as_notion = NotionError::from(e).to_string();
        assert!(
            as_notion.contains(&text) && as_notion.contains("down"),
            "{as_notion}"
        );
    }

    #[test]
    fn secrets_leave_the_json_and_debug() {
        let body = serde_json::json!({"access_token":"ntn_SECRET1","refresh_token":"rt_SECRET2","token_type":"bearer","bot_id":"b","workspace_id":"w","workspace_name":"Acme","owner":{"type":"user","user":{"name":"Ada"}}});
        let r = TokenResponse::parse(body).unwrap();
        assert_eq!(r.owner_name().as_deref(), Some("Ada"));
        let shown = format!("{r:?} {}", r.rest);
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
