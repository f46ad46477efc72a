//! Notion's answers as they came over the wire, and the one reading of what each means
//! (`../shared/notion-api.md`, "Errors" and "Rate limits"). The runner's client reports what it
//! received ([`Answer`]); the core decides what to do with it ([`meaning`], then the delivery
//! rules), and the client's own retry of reads asks [`meaning`] too, so that no status is matched
//! anywhere else.

use std::fmt;
use std::time::Duration;

/// The wait after a 429 or 529 that carries no (readable) `Retry-After`, and after a request
/// that could not be sent.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// An error answer: the status, the body's code and message, and the headers that matter. Its
/// texts are Notion's (untrusted): the runner made them printable before they got here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// HTTP status.
    pub status: u16,
    /// Notion's error code (`validation_error`, …), or what stood in its place.
    pub code: String,
    /// Notion's message.
    pub message: String,
    /// Notion's request id, for support.
    pub request_id: Option<String>,
    /// `Retry-After`, when the answer carried one (already capped by the client).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ErrorAnswer {
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

/// How one request to Notion ended, before any reading of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// A 2xx answer, with what it said.
    Ok(T),
    /// An error answer.
    Error(ErrorAnswer),
    /// The request never left (no connection): Notion did nothing.
    NotSent(String),
    /// The request may have reached Notion and no answer was read (a timeout, a reset after
    /// sending, a 2xx body that could not be read).
    Lost(String),
    /// No request was sent because the token cannot be used as it is (its file, the client's
    /// credentials): a refresh, or a person, fixes it.
    NoToken(String),
}

/// What an error answer means, for any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// 429: over the rate limit; nothing was done. Wait this long.
    RateLimited(Duration),
    /// 529: Notion is overloaded; nothing was done. Wait this long (the rate is not at fault).
    Overloaded(Duration),
    /// 401: the token was refused.
    Unauthorized,
    /// 403: the integration lacks a capability.
    Forbidden,
    /// 404: the object is gone or no longer shared.
    NotFound,
    /// 400 "Can't edit block that is archived": the database is in the trash. notion-inbox writes
    /// no relations or mentions, so the archived block can only be the database it writes into.
    Trashed,
    /// 400, 413, 422: the request itself is refused and will be as long as it is the same.
    Invalid,
    /// Anything else (409, 5xx): it may or may not have been carried out.
    Unknown,
}

impl Meaning {
    /// The wait Notion asked for, for the two answers that say nothing was done.
    pub fn wait(self) -> Option<Duration> {
        match self {
            Meaning::RateLimited(wait) | Meaning::Overloaded(wait) => Some(wait),
            _ => None,
        }
    }
}

/// What `e` means (the one place a status is read).
pub fn meaning(e: &ErrorAnswer) -> Meaning {
    let wait = e.retry_after.unwrap_or(DEFAULT_WAIT);
    match e.status {
        429 => Meaning::RateLimited(wait),
        529 => Meaning::Overloaded(wait),
        401 => Meaning::Unauthorized,
        403 => Meaning::Forbidden,
        404 => Meaning::NotFound,
        400 if e.code == "validation_error" && e.message.to_lowercase().contains("is archived") => {
            Meaning::Trashed
        }
        400 | 413 | 422 => Meaning::Invalid,
        _ => Meaning::Unknown,
    }
}

/// The OAuth error codes that refuse a grant for good (RFC 6749 §5.2).
const REFUSALS: [&str; 3] = ["invalid_grant", "invalid_client", "unauthorized_client"];

/// Whether the token endpoint's error answer refuses a refresh for good, so that a person must
/// authorize again (or fix the client credentials): only a 400 or 401 carrying `invalid_grant`,
/// `invalid_client` or `unauthorized_client`. Any other status (5xx, 429, another 4xx) is
/// transient: retrying does no harm (at worst it meets the refusal then), and de-authorizing
/// would need a person.
pub fn refresh_refused(e: &ErrorAnswer) -> bool {
    matches!(e.status, 400 | 401) && REFUSALS.contains(&e.code.as_str())
}

/// What came back for a request sent with the token of `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<T> {
    /// The generation of the token the request carried (a 401 refreshes that generation only).
    pub generation: u64,
    /// The answer.
    pub answer: Answer<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str, message: &str) -> ErrorAnswer {
        ErrorAnswer {
            status,
            code: code.into(),
            message: message.into(),
            request_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn every_status_means_what_notion_api_md_says() {
        let cases = [
            (
                answer(400, "validation_error", "body failed"),
                Meaning::Invalid,
            ),
            (
                answer(
                    400,
                    "validation_error",
                    "Can't edit block that is archived. You must unarchive the block before editing.",
                ),
                Meaning::Trashed,
            ),
            (answer(401, "unauthorized", "m"), Meaning::Unauthorized),
            (answer(403, "restricted_resource", "m"), Meaning::Forbidden),
            (answer(404, "object_not_found", "m"), Meaning::NotFound),
            (answer(409, "conflict_error", "m"), Meaning::Unknown),
            (answer(413, "payload_too_large", "m"), Meaning::Invalid),
            (
                answer(429, "rate_limited", "m"),
                Meaning::RateLimited(DEFAULT_WAIT),
            ),
            (
                answer(529, "service_overload", "m"),
                Meaning::Overloaded(DEFAULT_WAIT),
            ),
            (answer(500, "internal_server_error", "m"), Meaning::Unknown),
            (answer(502, "bad_gateway", "m"), Meaning::Unknown),
            (answer(503, "service_unavailable", "m"), Meaning::Unknown),
            (answer(504, "gateway_timeout", "m"), Meaning::Unknown),
        ];
        for (e, want) in cases {
            assert_eq!(meaning(&e), want, "{e}");
        }
        let mut slow = answer(429, "rate_limited", "m");
        slow.retry_after = Some(Duration::from_secs(7));
        assert_eq!(meaning(&slow).wait(), Some(Duration::from_secs(7)));
        assert_eq!(Meaning::Forbidden.wait(), None);
    }

    #[test]
    fn only_a_grant_refused_by_its_code_refuses_a_refresh() {
        assert!(refresh_refused(&answer(400, "invalid_grant", "m")));
        assert!(refresh_refused(&answer(401, "invalid_client", "m")));
        assert!(refresh_refused(&answer(400, "unauthorized_client", "m")));
        assert!(!refresh_refused(&answer(400, "invalid_request", "m")));
        assert!(!refresh_refused(&answer(500, "invalid_grant", "m")));
        assert!(!refresh_refused(&answer(429, "rate_limited", "m")));
        assert!(!refresh_refused(&answer(503, "service_unavailable", "m")));
    }
}
