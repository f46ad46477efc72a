//! How close the connect page's caps are: tenants against `[connect] max_targets` (counted from
//! the records), and the busiest client's new connections of the last hour against
//! `max_new_per_client_per_hour` (which only the daemon knows: its connect page writes it to
//! `<state_dir>/connect.json` at each new connection or refusal). Shown by `status` and `check`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::state::layout::{Kind, StateDir};

/// What the connect page publishes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PageUsage {
    /// The most new connections one client made in the last hour, when it was written.
    pub busiest_client_last_hour: usize,
    /// When it was written.
    pub updated: String,
}

/// Writes what the page publishes (advisory: no fsync; a failure is logged at debug).
pub fn publish(state_dir: &Path, usage: &PageUsage) {
    let path = StateDir(state_dir).connect_usage();
    let written = serde_json::to_vec(usage)
        .map_err(std::io::Error::other)
        .and_then(|b| {
            crate::state::private::write_private_atomically(
                &path,
                ".connect-",
                &b,
                Kind::Status.durability(),
            )
        });
    if let Err(e) = written {
        tracing::debug!("cannot write {}: {e}", path.display());
    }
}

/// How close the caps are.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Connected workspaces (disconnected ones included).
    pub targets: usize,
    /// `max_targets`.
    pub max_targets: usize,
    /// What the page last published, if it did.
    pub page: Option<PageUsage>,
    /// `max_new_per_client_per_hour`.
    pub per_client_per_hour: u32,
}

impl Usage {
    /// The usage of `config`'s caps; None without `[connect]`.
    pub fn of(config: &Config) -> Option<Usage> {
        let connect = config.connect.as_ref()?;
        let state_dir = &config.daemon.state_dir;
        let page = std::fs::read(StateDir(state_dir).connect_usage())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Some(Usage {
            targets: super::lifecycle::count(state_dir),
            max_targets: connect.caps.max_targets,
            page,
            per_client_per_hour: connect.caps.new_per_client_per_hour,
        })
    }

    /// Whether no new workspace can connect.
    pub fn full(&self) -> bool {
        self.targets >= self.max_targets
    }

    /// In words.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} of {} connected workspaces ([connect] max_targets)",
            self.targets, self.max_targets
        );
        if let Some(p) = &self.page {
            s.push_str(&format!(
                "; the busiest client connected {} of {} new workspaces in the hour before {} (max_new_per_client_per_hour)",
                p.busiest_client_last_hour, self.per_client_per_hour, p.updated
            ));
        }
        if self.full() {
            s.push_str(": full, only workspaces that connected before may connect again");
        }
        s
    }
}
