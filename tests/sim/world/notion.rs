//! The simulated Notion: creates, queries by key and token refreshes, with seeded faults.

use std::time::Duration;

use notion_inbox_core::answer::{Answer, ErrorAnswer, Reply};
use notion_inbox_core::delivery::RefreshResult;
use rand::Rng;

use super::{Event, P, SETTLE, World};

/// An error answer of Notion's.
fn error<T>(status: u16, code: &str, message: &str, retry_after: Option<Duration>) -> Answer<T> {
    Answer::Error(ErrorAnswer {
        status,
        code: code.into(),
        message: message.into(),
        request_id: Some("sim".into()),
        retry_after,
    })
}

impl World {
    pub(super) fn authorized(&self, token_gen: u64) -> bool {
        !self.notion.expired && token_gen == self.notion.valid_gen
    }

    /// Notion's answer to a create, as it would come over the wire.
    pub(super) fn create(&mut self, payload: &P, token_gen: u64) -> Reply<String> {
        let reply = |answer| Reply {
            generation: token_gen,
            answer,
        };
        let (key, tweet) = payload.clone();
        if !self.authorized(token_gen) {
            return reply(error(401, "unauthorized", "API token is invalid.", None));
        }
        if tweet.starts_with('x') {
            return reply(error(400, "validation_error", "rejected", None));
        }
        let roll = if self.faults {
            self.rng.random_range(0..100)
        } else {
            0
        };
        let lag = Duration::from_millis(self.rng.random_range(0..SETTLE.as_millis() as u64));
        let answer = match roll {
            0..=64 => {
                self.notion.rows.push((key.clone(), tweet, self.now + lag));
                Answer::Ok(format!("page-{key}"))
            }
            65..=74 => {
                let wait = match self.rng.random_range(0..5) {
                    // A hostile or buggy Retry-After: the core must cap it, not overflow.
                    0 => Some(Duration::from_secs(u64::MAX)),
                    1 => None,
                    _ => Some(Duration::from_millis(self.rng.random_range(0..3000))),
                };
                let (status, code) = match self.rng.random_range(0..3) {
                    0 => (529, "service_overload"),
                    _ => (429, "rate_limited"),
                };
                error(status, code, "slow down", wait)
            }
            75..=78 => error(502, "bad_gateway", "502 before writing", None),
            79..=80 => Answer::NotSent("cannot connect".into()),
            81..=82 => error(409, "conflict_error", "conflict", None),
            83..=88 => {
                self.notion.rows.push((key, tweet, self.now + lag));
                match self.rng.random_range(0..3) {
                    0 => error(504, "gateway_timeout", "timeout after writing", None),
                    1 => error(500, "internal_server_error", "after writing", None),
                    _ => Answer::Lost("no answer within 65s".into()),
                }
            }
            89..=90 => error(404, "object_not_found", "Could not find database", None),
            91 => error(
                400,
                "validation_error",
                "Can't edit block that is archived. You must unarchive the block before editing.",
                None,
            ),
            _ => error(403, "restricted_resource", "restricted", None),
        };
        reply(answer)
    }

    /// Notion's answer to a query by key: whether a row with it is visible.
    pub(super) fn query(&mut self, key: &str, token_gen: u64) -> Reply<bool> {
        let reply = |answer| Reply {
            generation: token_gen,
            answer,
        };
        if !self.authorized(token_gen) {
            return reply(error(401, "unauthorized", "API token is invalid.", None));
        }
        if self.faults {
            let wait = Some(Duration::from_millis(800));
            match self.rng.random_range(0..100) {
                0..=9 => return reply(error(429, "rate_limited", "slow down", wait)),
                10..=15 => return reply(error(503, "service_unavailable", "503", None)),
                16..=17 => return reply(Answer::Lost("connection reset".into())),
                18 => return reply(error(400, "validation_error", "the property is gone", None)),
                _ => {}
            }
        }
        let now = self.now;
        let found = self
            .notion
            .rows
            .iter()
            .any(|(k, _, visible)| k == key && *visible <= now);
        reply(Answer::Ok(found))
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
