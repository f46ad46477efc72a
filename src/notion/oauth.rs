//! OAuth 2.0 for a public integration (notion-api.md §1): the authorize URL, the code exchange and
//! the refresh grant. Hand-written rather than with the `oauth2` crate: Notion's flow is three small
//! requests with a non-standard response (no expiry, workspace fields) and two error styles.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::notion::NotionClient;
use crate::notion::error::{ApiError, ErrorCode, NotionError};

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
            workspace_name: text("workspace_name"),
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
            .map(str::to_owned)
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

/// What an OAuth redirect carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    /// The user allowed access.
    Code(String),
    /// The user refused, or the server failed (`error` and its description).
    Error(String),
}

/// Reads a redirect's query string, checking `state`.
pub fn parse_redirect(query: &str, expected_state: &str) -> Result<Redirect, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match get("state") {
        Some(s) if s == expected_state => {}
        Some(_) => {
            return Err("the redirect's state does not match this authorization (a stale or forged redirect); start `notion-inbox authorize` again".into());
        }
        None => return Err("the redirect has no state parameter".into()),
    }
    if let Some(error) = get("error") {
        let text = match error.as_str() {
            "access_denied" => {
                "access was denied on Notion's consent page (Cancel was chosen)".to_owned()
            }
            other => format!(
                "Notion refused the authorization: {other}{}",
                get("error_description")
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        };
        return Ok(Redirect::Error(text));
    }
    match get("code") {
        Some(code) if !code.is_empty() => Ok(Redirect::Code(code)),
        _ => Err("the redirect carries neither a code nor an error".into()),
    }
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
        assert_eq!(
            parse_redirect("code=abc&state=s1", "s1"),
            Ok(Redirect::Code("abc".into()))
        );
        assert!(matches!(
            parse_redirect("error=access_denied&state=s1", "s1"),
            Ok(Redirect::Error(e)) if e.contains("denied")
        ));
        assert!(
            parse_redirect("code=abc&state=evil", "s1")
                .unwrap_err()
                .contains("does not match")
        );
        assert!(parse_redirect("code=abc", "s1").is_err());
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

    #[test]
    fn secrets_leave_the_json_and_debug() {
        let body = serde_json::json!({"access_token":"ntn_SECRET1","refresh_token":"rt_SECRET2","token_type":"bearer","bot_id":"b","workspace_id":"w","workspace_name":"Acme","owner":{"type":"user","user":{"name":"Ada"}}});
        let r = TokenResponse::parse(body).unwrap();
        assert_eq!(r.owner_name().as_deref(), Some("Ada"));
        let shown = format!("{r:?} {}", r.rest);
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
