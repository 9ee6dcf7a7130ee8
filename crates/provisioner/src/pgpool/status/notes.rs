//! The remarks of a running Pgpool in its status: the `ProvisioningStarted` reason and one
//! event per remark reason.

use super::EventNote;
use crate::pgpool::validate::Note;

/// Reason of `ProvisioningStarted` when no remark asks for another.
pub const REASON_PROVISIONING_STARTED: &str = "ProvisioningStarted";

/// The `ProvisioningStarted` reason: the first remark's that has one (waiting for
/// certificates), else [`REASON_PROVISIONING_STARTED`].
pub fn started_reason(notes: &[Note]) -> &'static str {
    notes
        .iter()
        .find_map(Note::condition_reason)
        .unwrap_or(REASON_PROVISIONING_STARTED)
}

/// The `ProvisioningStarted` message: the children are applied, then every remark.
pub fn started_message(notes: &[Note]) -> String {
    let mut message = "the children are applied".to_string();
    for note in notes {
        message.push_str("; ");
        message.push_str(&note.message);
    }
    message
}

/// One event per remark reason (in the order of first appearance) whose remarks are not all
/// in `old_message` (the `ProvisioningStarted` message before), with those remarks joined.
pub fn note_events(notes: &[Note], old_message: Option<&str>) -> Vec<EventNote> {
    let mut out: Vec<EventNote> = Vec::new();
    let mut reasons: Vec<&'static str> = Vec::new();
    for note in notes {
        if !reasons.contains(&note.reason) {
            reasons.push(note.reason);
        }
    }
    for reason in reasons {
        let group: Vec<&Note> = notes.iter().filter(|n| n.reason == reason).collect();
        let known = old_message.is_some_and(|m| group.iter().all(|n| m.contains(&n.message)));
        if known {
            continue;
        }
        out.push(EventNote {
            warning: group.iter().any(|n| n.is_warning()),
            reason: reason.to_string(),
            message: group
                .iter()
                .map(|n| n.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    out
}

#[cfg(test)]
#[path = "notes_tests.rs"]
mod tests;
