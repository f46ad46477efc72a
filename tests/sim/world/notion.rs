//! The simulated Notion: creates, queries by key and token refreshes, with seeded faults.

use std::time::Duration;

use notion_inbox_core::delivery::{CheckResult, RefreshResult, SendResult};
use rand::Rng;

use super::{Event, P, SETTLE, World};

impl World {
    pub(super) fn authorized(&self, token_gen: u64) -> bool {
        !self.notion.expired && token_gen == self.notion.valid_gen
    }

    pub(super) fn create(&mut self, payload: &P, token_gen: u64) -> SendResult {
        let (key, tweet) = payload.clone();
        if !self.authorized(token_gen) {
            return SendResult::Unauthorized {
                generation: token_gen,
                error: "401".into(),
            };
        }
        if tweet.starts_with('x') {
            return SendResult::Invalid {
                reason: "rejected".into(),
                error: notion_inbox::state::deadletter::NotionErrorInfo {
                    status: 400,
                    code: "validation_error".into(),
                    message: "rejected".into(),
                    request_id: None,
                },
            };
        }
        let roll = if self.faults {
            self.rng.random_range(0..100)
        } else {
            0
        };
        let lag = Duration::from_millis(self.rng.random_range(0..SETTLE.as_millis() as u64));
        match roll {
            0..=64 => {
                self.notion.rows.push((key, tweet, self.now + lag));
                SendResult::Created
            }
            65..=74 => SendResult::Wait(match self.rng.random_range(0..4) {
                // A hostile or buggy Retry-After: the core must cap it, not overflow.
                0 => Duration::from_secs(u64::MAX),
                _ => Duration::from_millis(self.rng.random_range(0..3000)),
            }),
            75..=82 => SendResult::Unknown("502 before writing".into()),
            83..=90 => {
                self.notion.rows.push((key, tweet, self.now + lag));
                SendResult::Unknown("timeout after writing".into())
            }
            _ => SendResult::Unreachable("403 restricted_resource".into()),
        }
    }

    pub(super) fn query(&mut self, key: &str, token_gen: u64) -> CheckResult {
        if !self.authorized(token_gen) {
            return CheckResult::Unauthorized {
                generation: token_gen,
                error: "401".into(),
            };
        }
        if self.faults {
            match self.rng.random_range(0..100) {
                0..=9 => return CheckResult::Wait(Duration::from_millis(800)),
                10..=17 => return CheckResult::Failed("503".into()),
                18 => return CheckResult::Broken("400 the property is gone".into()),
                _ => {}
            }
        }
        let now = self.now;
        let found = self
            .notion
            .rows
            .iter()
            .any(|(k, _, visible)| k == key && *visible <= now);
        if found {
            CheckResult::Found
        } else {
            CheckResult::Absent
        }
    }

    pub(super) fn refresh(&mut self, sent_with: u64) -> RefreshResult {
        if self.token_gen > sent_with {
            return RefreshResult::Ok;
        }
        if self.notion.void {
            self.notion.refused = true;
            return RefreshResult::Refused("invalid_grant".into());
        }
        let roll = if self.faults {
            self.rng.random_range(0..100)
        } else {
            0
        };
        match roll {
            // The client secret's or token's file cannot be used (mode, owner): nothing reached
            // Notion; the operator's `chmod` comes later.
            55..=59 => RefreshResult::Local("the client secret file is mode 0644".into()),
            0..=54 => {
                self.notion.valid_gen += 1;
                self.notion.expired = false;
                self.token_gen = self.notion.valid_gen;
                RefreshResult::Ok
            }
            60..=84 => RefreshResult::Transient("503 from the token endpoint".into()),
            85..=92 => {
                // Carried out, but the answer was lost: the pair rotated, the old one is void.
                self.notion.valid_gen += 1;
                self.notion.expired = false;
                self.notion.void = true;
                RefreshResult::Transient("connection reset".into())
            }
            _ => {
                self.notion.refused = true;
                RefreshResult::Refused("invalid_grant".into())
            }
        }
    }

    /// A person authorizes again: a new token, and the daemon notices the file changed.
    pub(super) fn reauthorize(&mut self) {
        self.notion.valid_gen += 1;
        self.notion.expired = false;
        self.notion.void = false;
        self.notion.refused = false;
        self.token_gen = self.notion.valid_gen;
        if self.core.is_some() {
            self.feed(Event::TokenChanged);
        }
    }
}
