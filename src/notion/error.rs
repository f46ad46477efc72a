//! What can go wrong talking to Notion, and what a caller should do about it.

use std::fmt;
use std::time::Duration;

use notion_inbox_core::answer::{Answer, ErrorAnswer};
use notion_inbox_core::delivery::NotionErrorInfo;

/// Notion's error codes (notion-api.md §8), plus the OAuth ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: the URL is not a Notion API URL.
    InvalidRequestUrl,
    /// 400: the request is not supported.
    InvalidRequest,
    /// 400: the body does not fit the schema (the usual per-record error).
    ValidationError,
    /// 400: no `Notion-Version` header.
    MissingVersion,
    /// 401: the token is not valid.
    Unauthorized,
    /// 403: the integration lacks a capability.
    RestrictedResource,
    /// 404: deleted, or not shared with the integration.
    ObjectNotFound,
    /// 409: a conflicting transaction; the page may exist.
    ConflictError,
    /// 429: over the rate limit.
    RateLimited,
    /// 500: Notion failed.
    InternalServerError,
    /// 502: a proxy in front of Notion failed.
    BadGateway,
    /// 503: Notion is unavailable (or a request ran over 60 s).
    ServiceUnavailable,
    /// 503: Notion's database is unavailable.
    DatabaseConnectionUnavailable,
    /// 504: a proxy timed out.
    GatewayTimeout,
    /// 529: Notion is overloaded.
    ServiceOverload,
    /// OAuth: the code or refresh token is not valid (used, expired or revoked).
    InvalidGrant,
    /// OAuth: the client id or secret is wrong.
    InvalidClient,
    /// Any other code, kept as Notion sent it.
    Other(String),
}

impl ErrorCode {
    /// Parses Notion's code string.
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "invalid_json" => Self::InvalidJson,
            "invalid_request_url" => Self::InvalidRequestUrl,
            "invalid_request" => Self::InvalidRequest,
            "validation_error" => Self::ValidationError,
            "missing_version" => Self::MissingVersion,
            "unauthorized" => Self::Unauthorized,
            "restricted_resource" => Self::RestrictedResource,
            "object_not_found" => Self::ObjectNotFound,
            "conflict_error" => Self::ConflictError,
            "rate_limited" => Self::RateLimited,
            "internal_server_error" => Self::InternalServerError,
            "bad_gateway" => Self::BadGateway,
            "service_unavailable" => Self::ServiceUnavailable,
            "database_connection_unavailable" => Self::DatabaseConnectionUnavailable,
            "gateway_timeout" => Self::GatewayTimeout,
            "service_overload" => Self::ServiceOverload,
            "invalid_grant" => Self::InvalidGrant,
            "invalid_client" => Self::InvalidClient,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The code as Notion spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidRequestUrl => "invalid_request_url",
            Self::InvalidRequest => "invalid_request",
            Self::ValidationError => "validation_error",
            Self::MissingVersion => "missing_version",
            Self::Unauthorized => "unauthorized",
            Self::RestrictedResource => "restricted_resource",
            Self::ObjectNotFound => "object_not_found",
            Self::ConflictError => "conflict_error",
            Self::RateLimited => "rate_limited",
            Self::InternalServerError => "internal_server_error",
            Self::BadGateway => "bad_gateway",
            Self::ServiceUnavailable => "service_unavailable",
            Self::DatabaseConnectionUnavailable => "database_connection_unavailable",
            Self::GatewayTimeout => "gateway_timeout",
            Self::ServiceOverload => "service_overload",
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidClient => "invalid_client",
            Self::Other(s) => s,
        }
    }

    /// The code Notion uses for a status when the body carries none (a 502 from a proxy, say).
    pub fn for_status(status: u16) -> ErrorCode {
        match status {
            400 => Self::InvalidRequest,
            401 => Self::Unauthorized,
            403 => Self::RestrictedResource,
            404 => Self::ObjectNotFound,
            409 => Self::ConflictError,
            429 => Self::RateLimited,
            500 => Self::InternalServerError,
            502 => Self::BadGateway,
            503 => Self::ServiceUnavailable,
            504 => Self::GatewayTimeout,
            529 => Self::ServiceOverload,
            other => Self::Other(format!("http_{other}")),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer from Notion.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Notion's error code.
    pub code: ErrorCode,
    /// Notion's message (never holds a secret: Notion does not echo tokens).
    pub message: String,
    /// Notion's request id, from the body or the `x-notion-request-id` header.
    pub request_id: Option<String>,
    /// `Retry-After`, when the answer carried one.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// The error with its texts (message, request id, an unknown code) rid of control characters:
    /// they come from the other end of the connection and are shown on terminals, in logs, in
    /// `status.json` and on `authorize`'s pages, where an escape sequence could rewrite what is
    /// shown.
    pub fn printable(mut self) -> ApiError {
        self.message = printable(&self.message);
        self.request_id = self.request_id.as_deref().map(printable);
        if let ErrorCode::Other(code) = &mut self.code {
            *code = printable(code);
        }
        self
    }
}

/// Text from elsewhere that is shown to people, made safe: [`crate::text::message`].
pub fn printable(text: &str) -> String {
    crate::text::message(text)
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Notion answered {} {}: {}",
            self.status, self.code, self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Any failure of a Notion request.
#[derive(Debug, thiserror::Error)]
pub enum NotionError {
    /// Notion (or a proxy in front of it) answered with an error status.
    #[error("{0}")]
    Api(ApiError),
    /// The request could not be completed. `sent` tells whether the body may have reached Notion.
    #[error("{what} ({detail})")]
    Transport {
        /// What failed, for people: "cannot connect to http://…", "no answer within 65s".
        what: String,
        /// The underlying error's text (no secrets: URLs only).
        detail: String,
        /// Whether Notion may have received the request (a timeout or reset after sending).
        sent: bool,
    },
    /// Notion answered 2xx with a body this program does not understand.
    #[error("unexpected answer from Notion for {endpoint}: {detail}")]
    Decode {
        /// The endpoint, e.g. `POST /v1/pages`.
        endpoint: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A token could not be used or refreshed (no token file, no client credentials, say).
    #[error("{0}")]
    Token(String),
    /// A file on this machine that holds a secret (a token file, the client secret file) cannot
    /// be used as it is: open to others, unreadable, missing or empty. Fixing the file is enough;
    /// no authorization is needed.
    #[error(transparent)]
    Local(#[from] crate::state::private::PrivateFileError),
}

impl NotionError {
    /// The API error, if Notion answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status, if Notion answered.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// Whether the token was refused (401).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// Whether a refresh token was refused: the user must authorize again.
    pub fn is_invalid_grant(&self) -> bool {
        self.api().is_some_and(|e| {
            e.code == ErrorCode::InvalidGrant || e.code == ErrorCode::InvalidClient
        })
    }
}

impl ApiError {
    /// The answer as the core reads it.
    pub fn wire(&self) -> ErrorAnswer {
        ErrorAnswer {
            status: self.status,
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            request_id: self.request_id.clone(),
            retry_after: self.retry_after,
        }
    }
}

/// How a request ended, as the delivery core reads it ([`notion_inbox_core::answer`], where what
/// each answer means is decided): the client never retries a create itself, only the core knows
/// whether it can check for the row first.
pub fn answer_of<T>(result: Result<T, NotionError>) -> Answer<T> {
    match result {
        Ok(t) => Answer::Ok(t),
        Err(NotionError::Api(api)) => Answer::Error(api.wire()),
        Err(e @ NotionError::Transport { sent: false, .. }) => Answer::NotSent(e.to_string()),
        Err(e @ (NotionError::Transport { sent: true, .. } | NotionError::Decode { .. })) => {
            Answer::Lost(e.to_string())
        }
        Err(e @ (NotionError::Token(_) | NotionError::Local(_))) => Answer::NoToken(e.to_string()),
    }
}

impl From<&NotionError> for NotionErrorInfo {
    fn from(e: &NotionError) -> NotionErrorInfo {
        match e.api() {
            Some(api) => NotionErrorInfo {
                status: api.status,
                code: api.code.as_str().to_owned(),
                message: api.message.clone(),
                request_id: api.request_id.clone(),
            },
            None => NotionErrorInfo {
                status: 0,
                code: "no_answer".to_owned(),
                message: e.to_string(),
                request_id: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_from_notion_have_their_control_characters_escaped() {
        let e = ApiError {
            status: 400,
            code: ErrorCode::parse("odd\u{1b}[31m"),
            message: "bad\u{1b}[2J code\u{7}\r\n\u{9b}31m$ ".into(),
            request_id: Some("r\u{0}1".into()),
            retry_after: None,
        }
        .printable();
        assert_eq!(
            e.message,
            "bad\\u{1b}[2J code\\u{7}\\u{d}\\u{a}\\u{9b}31m$ "
        );
        assert_eq!(e.code.as_str(), "odd\\u{1b}[31m");
        assert_eq!(e.request_id.as_deref(), Some("r\\u{0}1"));
        assert_eq!(printable("Acme · 東京 ✓"), "Acme · 東京 ✓");
    }

    fn api(status: u16, code: &str, retry_after: Option<u64>) -> NotionError {
        NotionError::Api(ApiError {
            status,
            code: ErrorCode::parse(code),
            message: "m".into(),
            request_id: Some("r".into()),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    #[test]
    fn every_failure_reaches_the_core_as_what_was_seen() {
        use notion_inbox_core::answer::{Meaning, meaning};
        let Answer::Error(e) = answer_of::<()>(Err(api(429, "rate_limited", Some(7)))) else {
            panic!("an API error is an error answer");
        };
        assert_eq!(meaning(&e), Meaning::RateLimited(Duration::from_secs(7)));
        assert_eq!(
            (e.code.as_str(), e.request_id.as_deref()),
            ("rate_limited", Some("r"))
        );
        let transport = |sent| NotionError::Transport {
            what: "x".into(),
            detail: "y".into(),
            sent,
        };
        assert!(matches!(
            answer_of::<()>(Err(transport(false))),
            Answer::NotSent(_)
        ));
        assert!(matches!(
            answer_of::<()>(Err(transport(true))),
            Answer::Lost(_)
        ));
        let decode = NotionError::Decode {
            endpoint: "POST /v1/pages".into(),
            detail: "no id".into(),
        };
        assert!(matches!(answer_of::<()>(Err(decode)), Answer::Lost(_)));
        let token = NotionError::Token("no token file".into());
        assert!(matches!(answer_of::<()>(Err(token)), Answer::NoToken(_)));
        assert_eq!(answer_of::<u8>(Ok(3)), Answer::Ok(3));
    }

    #[test]
    fn codes_round_trip() {
        for code in [
            "invalid_json",
            "validation_error",
            "missing_version",
            "unauthorized",
            "restricted_resource",
            "object_not_found",
            "conflict_error",
            "rate_limited",
            "internal_server_error",
            "service_unavailable",
            "service_overload",
            "invalid_grant",
            "something_new",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
    }
}
