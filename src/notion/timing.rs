//! How long requests to Notion take, per endpoint, and how long they wait for the rate limiter
//! first: histograms shared by every client of the process (a reload makes a new client; the
//! histograms go on), exported by `/metrics`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The labels of a request's latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct Endpoint {
    /// `POST /v1/pages`, `POST /v1/data_sources/{id}/query`…: ids are replaced by `{id}`, so
    /// that the label's values are few.
    pub endpoint: String,
    /// `2xx`, `4xx`, `429`, `5xx`, or `error` (no answer: connection, timeout).
    pub outcome: &'static str,
}

/// The histograms.
#[derive(Debug)]
pub struct Timing {
    /// Seconds from sending a request to its answer read whole.
    pub latency: Family<Endpoint, Histogram>,
    /// Seconds a request waited for its token's (and workspace's) turn before it was sent.
    pub limiter_wait: Histogram,
}

fn latency_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The process's histograms.
pub static TIMING: LazyLock<Timing> = LazyLock::new(|| Timing {
    latency: Family::new_with_constructor(latency_histogram),
    // 1 ms to about 16 min (a Retry-After pause is capped at 15 min).
    limiter_wait: Histogram::new(exponential_buckets(0.001, 2.0, 21)),
});

impl Timing {
    /// Records one request.
    pub fn answered(&self, method: &str, path: &str, status: Option<u16>, took: Duration) {
        let outcome = match status {
            None => "error",
            Some(429) => "429",
            Some(s) if s < 300 => "2xx",
            Some(s) if s < 500 => "4xx",
            Some(_) => "5xx",
        };
        let labels = Endpoint {
            endpoint: format!("{method} {}", template(path)),
            outcome,
        };
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records a wait for the limiter.
    pub fn waited(&self, took: Duration) {
        self.limiter_wait.observe(took.as_secs_f64());
    }

    /// Registers the histograms (`request_duration_seconds`, `limiter_wait_seconds`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "request_duration_seconds",
            "Time from sending a request to Notion to its answer, by endpoint and outcome.",
            self.latency.clone(),
        );
        registry.register(
            "limiter_wait_seconds",
            "Time a request waited for its token's and workspace's rate limit before it was sent.",
            self.limiter_wait.clone(),
        );
    }
}

/// `path` with its ids (segments of 32 hex digits, with or without dashes) replaced by `{id}`,
/// and without its query.
pub fn template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|segment| {
            let hex = segment.chars().filter(char::is_ascii_hexdigit).count();
            let only = segment.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            if only && hex == 32 { "{id}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn ids_become_a_placeholder() {
        assert_eq!(template("/v1/pages"), "/v1/pages");
        assert_eq!(
            template("/v1/data_sources/0123456789abcdef0123456789abcdef/query?x=1"),
            "/v1/data_sources/{id}/query"
        );
        assert_eq!(
            template("/v1/databases/01234567-89ab-cdef-0123-456789abcdef"),
            "/v1/databases/{id}"
        );
        assert_eq!(template("/v1/users/me"), "/v1/users/me");
    }
}
