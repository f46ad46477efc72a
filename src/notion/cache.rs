//! Each target's resolution (its data source or database and the schema there), kept in
//! `<state_dir>/resolved/<target>.json`, so that a restart sends no request for a target until it
//! has a record: with 10 000 targets, resolving every one at each start was 20 000 requests of
//! rate budget before the first row.
//!
//! A cached resolution is used only when it was made for the same API base, Notion-Version and
//! destination (the configured one, or the one chosen after consent and saved with the token),
//! is younger than [`MAX_AGE`], and the target's mapping fits its schema. The daemon forgets it
//! when Notion refuses a row in a way a schema change or a lost share explains (400
//! `validation_error`, 403, 404, a database in the trash), so the target's next start resolves
//! afresh. The file is a cache: one that is missing, damaged or stale only costs the requests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::NotionVersion;
use crate::notion::schema::{Property, PropertyKind, Resolved};
use crate::state::private::write_private_atomically;

/// How long a resolution is trusted: a target started later than this after it resolves again.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The cached resolution of one target.
#[derive(Debug, Clone)]
pub struct ResolutionCache {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// What was resolved: see [`ResolutionCache::key`].
    key: String,
    /// When, in seconds since the epoch.
    resolved_at: u64,
    database_id: Option<String>,
    data_source_id: Option<String>,
    title: String,
    properties: Vec<StoredProperty>,
}

impl Stored {
    fn into_resolved(self, version: NotionVersion) -> Resolved {
        Resolved {
            version,
            database_id: self.database_id,
            data_source_id: self.data_source_id,
            title: self.title,
            properties: self
                .properties
                .into_iter()
                .map(|p| Property {
                    kind: PropertyKind::parse(&p.kind),
                    name: p.name,
                    id: p.id,
                    options: p.options,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredProperty {
    name: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    options: Vec<String>,
}

impl ResolutionCache {
    /// The cache file of `target` under `state_dir`.
    pub fn new(state_dir: &Path, target: &str) -> ResolutionCache {
        ResolutionCache {
            path: crate::state::layout::StateDir(state_dir).resolved_file(target),
        }
    }

    /// The file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a resolution depends on besides the schema itself: where requests go, the version and
    /// the destination asked for.
    pub fn key(api_base: &str, version: NotionVersion, destination: &str) -> String {
        format!("{api_base} {version} {destination}")
    }

    /// The resolution stored under `key`, if there is one younger than [`MAX_AGE`] at `now`.
    pub fn load(&self, key: &str, version: NotionVersion, now: SystemTime) -> Option<Resolved> {
        let stored = self.stored()?;
        let age = now
            .duration_since(UNIX_EPOCH + Duration::from_secs(stored.resolved_at))
            .unwrap_or(Duration::MAX);
        if stored.key != key || age > MAX_AGE {
            return None;
        }
        Some(stored.into_resolved(version))
    }

    /// The last resolution stored, whatever it was made for and however old: what the daemon
    /// last saw of the destination's schema, for a tool that sends no request (`requeue`).
    pub fn last(&self, version: NotionVersion) -> Option<Resolved> {
        Some(self.stored()?.into_resolved(version))
    }

    fn stored(&self) -> Option<Stored> {
        let bytes = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&bytes)
            .map_err(|e| tracing::debug!(file = %self.path.display(), "the cached resolution is unreadable ({e})"))
            .ok()
    }

    /// Stores `resolved` under `key`, made at `now`. Best effort: a cache that cannot be written
    /// costs requests at the next start, nothing else.
    pub fn save(&self, key: &str, resolved: &Resolved, now: SystemTime) {
        let stored = Stored {
            key: key.to_owned(),
            resolved_at: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            database_id: resolved.database_id.clone(),
            data_source_id: resolved.data_source_id.clone(),
            title: resolved.title.clone(),
            properties: resolved
                .properties
                .iter()
                .map(|p| StoredProperty {
                    name: p.name.clone(),
                    id: p.id.clone(),
                    kind: p.kind.as_str().to_owned(),
                    options: p.options.clone(),
                })
                .collect(),
        };
        let written = serde_json::to_vec(&stored)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                write_private_atomically(
                    &self.path,
                    ".tmp-",
                    &bytes,
                    crate::state::layout::Kind::Resolved.durability(),
                )
            });
        if let Err(e) = written {
            tracing::debug!(file = %self.path.display(), "cannot cache the resolution ({e}); the next start resolves again");
        }
    }

    /// Forgets the resolution, so that the target's next start resolves again.
    pub fn forget(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::info!(file = %self.path.display(), "the cached resolution is dropped; the target's next start resolves its database again")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "cannot remove the cached resolution: {e}; remove it by hand so that the next start resolves again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Resolved {
        Resolved {
            version: NotionVersion::V2025_09_03,
            database_id: Some("db".into()),
            data_source_id: Some("ds".into()),
            title: "Tweets".into(),
            properties: vec![
                Property {
                    name: "Name".into(),
                    id: "title".into(),
                    kind: PropertyKind::Title,
                    options: vec![],
                },
                Property {
                    name: "Kind".into(),
                    id: "k%3A".into(),
                    kind: PropertyKind::Select,
                    options: vec!["a".into(), "b".into()],
                },
                Property {
                    name: "F".into(),
                    id: "f".into(),
                    kind: PropertyKind::Other("formula".into()),
                    options: vec![],
                },
            ],
        }
    }

    #[test]
    fn a_resolution_comes_back_only_for_its_key_and_while_young() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResolutionCache::new(dir.path(), "t");
        let now = SystemTime::now();
        let v = NotionVersion::V2025_09_03;
        assert!(cache.load("k", v, now).is_none(), "nothing cached yet");
        cache.save("k", &sample(), now);
        assert_eq!(cache.load("k", v, now), Some(sample()));
        assert!(cache.load("other", v, now).is_none(), "another destination");
        assert!(
            cache
                .load("k", v, now + MAX_AGE + Duration::from_secs(1))
                .is_none()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        cache.forget();
        assert!(cache.load("k", v, now).is_none(), "forgotten");
        std::fs::write(cache.path(), b"{\"key\":").unwrap();
        assert!(
            cache.load("k", v, now).is_none(),
            "a damaged file is a miss"
        );
    }
}
