//! Prometheus metrics at `[daemon] metrics_listen`: read from the targets' counters at scrape time
//! (a `prometheus-client` collector), so the delivery path pays nothing for them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::daemon::health::{Health, TargetState};
use crate::serve::{Limits, Server};

/// The targets being run, as the metrics see them; the supervisor keeps it current.
#[derive(Debug, Default, Clone)]
pub struct Targets(Arc<Mutex<BTreeMap<String, Arc<TargetState>>>>);

impl Targets {
    /// Replaces the set of targets.
    pub fn set(&self, targets: impl IntoIterator<Item = Arc<TargetState>>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map = targets.into_iter().map(|t| (t.name.clone(), t)).collect();
    }

    /// Replaces the entries of some targets: each name with the target that runs under it now,
    /// or none (a change of a few tenants touches only their entries).
    pub fn update<'a>(
        &self,
        changed: impl IntoIterator<Item = (&'a str, Option<Arc<TargetState>>)>,
    ) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, state) in changed {
            match state {
                Some(state) => map.insert(name.to_owned(), state),
                None => map.remove(name),
            };
        }
    }

    fn snapshot(&self) -> Vec<Arc<TargetState>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl Collector for Targets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let targets = self.snapshot();
        let load = |t: &TargetState, f: fn(&TargetState) -> &std::sync::atomic::AtomicU64| {
            f(t).load(Ordering::Relaxed)
        };
        type Get = fn(&TargetState) -> &std::sync::atomic::AtomicU64;
        let counters: [(&str, &str, Get); 5] = [
            (
                "delivered",
                "Records delivered to Notion (created, or found already there by key).",
                |t| &t.counters.delivered,
            ),
            (
                "dead_lettered",
                "Records written to the dead-letter file.",
                |t| &t.counters.dead_lettered,
            ),
            (
                "rate_limited",
                "Requests Notion answered with 429 or 529.",
                |t| &t.counters.rate_limited,
            ),
            (
                "outcome_unknown",
                "Creates whose outcome was unknown (5xx, timeout, connection lost).",
                |t| &t.counters.outcome_unknown,
            ),
            (
                "possible_duplicates",
                "Records sent again without a way to check for an earlier row (no dedupe_property).",
                |t| &t.counters.possible_duplicates,
            ),
        ];
        for (name, help, get) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for t in &targets {
                let labels = [("target", t.name.as_str())];
                ConstCounter::new(load(t, get)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "retries",
            "Retried requests, by reason.",
            None,
            MetricType::Counter,
        )?;
        for t in &targets {
            for (reason, value) in [
                (
                    "rate_limited",
                    t.counters.rate_limited.load(Ordering::Relaxed),
                ),
                (
                    "outcome_unknown",
                    t.counters.outcome_unknown.load(Ordering::Relaxed),
                ),
                ("other", t.counters.retried.load(Ordering::Relaxed)),
            ] {
                let labels = [("target", t.name.as_str()), ("reason", reason)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let gauges: [(&str, &str, Get); 4] = [
            ("in_flight", "Creates in flight.", |t| &t.counters.in_flight),
            (
                "effective_rate_millirequests_per_second",
                "The request rate the client allows itself now, in thousandths per second (lowered after 429s).",
                |t| &t.counters.effective_rate_milli,
            ),
            ("backlog_bytes", "Bytes of the inbox not read yet.", |t| {
                &t.counters.backlog_bytes
            }),
            (
                "last_success_timestamp_seconds",
                "Unix time of the last delivery (0: none yet).",
                |t| &t.counters.last_delivery_ms,
            ),
        ];
        for (name, help, get) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for t in &targets {
                let mut v = load(t, get) as i64;
                if name == "last_success_timestamp_seconds" {
                    v /= 1000;
                }
                let labels = [("target", t.name.as_str())];
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "up",
            "1 while the target delivers or is idle with nothing to deliver (0: starting, paused, waiting for authorization, or stopped).",
            None,
            MetricType::Gauge,
        )?;
        for t in &targets {
            let up = matches!(t.health(), Health::Ok | Health::Idle) as i64;
            let labels = [("target", t.name.as_str())];
            ConstGauge::new(up).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Renders the metrics in Prometheus text format.
pub fn render(targets: &Targets) -> String {
    let mut registry = Registry::with_prefix("notion_inbox");
    registry.register_collector(Box::new(targets.clone()));
    crate::notion::timing::TIMING.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// Serves `GET /metrics` on `addr` until the returned server is shut down, through
/// [`crate::serve::Server`]: anyone who can reach the port may connect, and its connections are
/// bounded in number and time.
pub async fn serve(addr: SocketAddr, targets: Targets) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on metrics_listen = \"{addr}\": {e}; pick a free port in [daemon]"
            ),
        )
    })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let targets = targets.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render(&targets),
                )
            }
        }),
    );
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    Ok(Server::start(vec![listener], app, Limits::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_per_target() {
        let t = Arc::new(TargetState::new("tweets".into()));
        t.counters.delivered.store(7, Ordering::Relaxed);
        t.counters.backlog_bytes.store(123, Ordering::Relaxed);
        t.counters
            .effective_rate_milli
            .store(2100, Ordering::Relaxed);
        let targets = Targets::default();
        targets.set([t]);
        let text = render(&targets);
        for needle in [
            "notion_inbox_delivered_total{target=\"tweets\"} 7",
            "notion_inbox_backlog_bytes{target=\"tweets\"} 123",
            "notion_inbox_retries_total{target=\"tweets\",reason=\"rate_limited\"} 0",
            "notion_inbox_dead_lettered_total{target=\"tweets\"} 0",
            "notion_inbox_in_flight{target=\"tweets\"} 0",
            "notion_inbox_effective_rate_millirequests_per_second{target=\"tweets\"} 2100",
            "notion_inbox_up{target=\"tweets\"}",
        ] {
            assert!(text.contains(needle), "missing {needle} in:\n{text}");
        }
    }
}
