//! Log output: text for people, JSON for pipelines, and journald-friendly text under systemd.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::cli::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over `default_filter` (the config's `log_level`).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // try_init: a second call (tests in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if under_journal => builder.without_time().with_ansi(false).try_init(),
        // Colours only on a terminal (and never when NO_COLOR is set): a log file or pipe gets plain text.
        LogFormat::Auto | LogFormat::Text => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).try_init()
        }
    };
}
