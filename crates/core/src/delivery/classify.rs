//! What Notion's answer to a create or a check by key means for the record: the one place the
//! delivery rules read an [`Answer`] (through [`meaning`]).

use super::{CheckResult, Core, SendResult};
use crate::answer::{Answer, DEFAULT_WAIT, ErrorAnswer, Meaning, Reply, meaning};
use crate::delivery::NotionErrorInfo;
use crate::position::Segment;

impl<P, S: Segment> Core<P, S> {
    /// What the answer to a create means. A refusal that may come from a stale view of the
    /// database (403, 404, the trash, a record refused) also asks the runner to forget its cached
    /// resolution ([`super::Action::ForgetResolution`]).
    pub(super) fn classify_send(&mut self, reply: Reply<String>) -> SendResult {
        let error = match reply.answer {
            Answer::Ok(page_id) => {
                tracing::debug!(target_name = %self.cfg.name, %page_id, "delivered");
                return SendResult::Created;
            }
            Answer::NotSent(_) => return SendResult::Wait(DEFAULT_WAIT),
            Answer::Lost(error) => return SendResult::Unknown(error),
            Answer::NoToken(error) => {
                return SendResult::Unauthorized {
                    generation: reply.generation,
                    error,
                };
            }
            Answer::Error(e) => e,
        };
        let destination = &self.cfg.destination;
        match meaning(&error) {
            Meaning::RateLimited(wait) | Meaning::Overloaded(wait) => {
                tracing::debug!(target_name = %self.cfg.name, "Notion asked to wait {wait:?}: {error}");
                SendResult::Wait(wait)
            }
            Meaning::Unknown => SendResult::Unknown(error.to_string()),
            Meaning::Unauthorized => SendResult::Unauthorized {
                generation: reply.generation,
                error: error.to_string(),
            },
            Meaning::Forbidden | Meaning::NotFound => {
                self.resolution_stale = true;
                SendResult::Unreachable(format!("Notion refuses access to {destination} ({error})"))
            }
            Meaning::Trashed => {
                self.resolution_stale = true;
                SendResult::Unreachable(format!(
                    "{destination} is in Notion's trash ({error}); restore it in Notion (Trash, then Restore) and delivery resumes by itself, nothing is lost meanwhile"
                ))
            }
            Meaning::Invalid => {
                // A property renamed or retyped in Notion makes rows invalid too.
                self.resolution_stale = true;
                SendResult::Invalid {
                    reason: format!(
                        "Notion refused the record: {}; fix the record or the database, then `notion-inbox requeue --target {}`",
                        error.message, self.cfg.name
                    ),
                    error: info(error),
                }
            }
        }
    }

    /// What the answer to a check by key (`true`: a row with the key exists) means.
    pub(super) fn classify_check(&self, reply: Reply<bool>) -> CheckResult {
        let error = match reply.answer {
            Answer::Ok(true) => return CheckResult::Found,
            Answer::Ok(false) => return CheckResult::Absent,
            Answer::NotSent(error) | Answer::Lost(error) => return CheckResult::Failed(error),
            Answer::NoToken(error) => {
                return CheckResult::Unauthorized {
                    generation: reply.generation,
                    error,
                };
            }
            Answer::Error(e) => e,
        };
        let property = self.cfg.dedupe_property.as_deref().unwrap_or_default();
        match meaning(&error) {
            Meaning::RateLimited(wait) | Meaning::Overloaded(wait) => CheckResult::Wait(wait),
            Meaning::Unauthorized => CheckResult::Unauthorized {
                generation: reply.generation,
                error: error.to_string(),
            },
            Meaning::Invalid | Meaning::Trashed => CheckResult::Broken(format!(
                "Notion refused the check by key on dedupe_property \"{property}\" ({error}); make it a Text property of the database, or fix dedupe_property"
            )),
            Meaning::Forbidden | Meaning::NotFound => CheckResult::Broken(format!(
                "Notion refuses access to the database for the check by key ({error})"
            )),
            Meaning::Unknown => CheckResult::Failed(error.to_string()),
        }
    }
}

/// What a dead-letter entry keeps of Notion's refusal.
fn info(e: ErrorAnswer) -> NotionErrorInfo {
    NotionErrorInfo {
        status: e.status,
        code: e.code,
        message: e.message,
        request_id: e.request_id,
    }
}
