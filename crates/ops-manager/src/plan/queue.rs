//! A request's place in the per-Pgpool queue (DESIGN.md §5).

use std::cmp::Ordering;

use pgpool_api::{OpsRequestPhase, PgpoolOpsRequest};

/// A request's place in the queue of its Pgpool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueDecision {
    /// Its turn: start it.
    Start,
    /// Wait behind this request.
    Wait {
        /// Name of the request ahead.
        behind: String,
    },
    /// A newer request of the same type supersedes it.
    Skip {
        /// Name of the newest such request.
        newer: String,
    },
}

/// Phase of a request; no status yet counts as Pending.
pub fn phase_of(req: &PgpoolOpsRequest) -> OpsRequestPhase {
    req.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(OpsRequestPhase::Pending)
}

/// Queue order: creation time, then name.
pub fn queue_order(a: &PgpoolOpsRequest, b: &PgpoolOpsRequest) -> Ordering {
    let ts = |r: &PgpoolOpsRequest| {
        r.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond())
            .unwrap_or(i128::MAX)
    };
    ts(a)
        .cmp(&ts(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn same(a: &PgpoolOpsRequest, b: &PgpoolOpsRequest) -> bool {
    a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

/// Decide whether `me` (not Progressing, not final) may start. `siblings` are the requests for
/// the same Pgpool in the same namespace, fresh from the API server; `me` may be among them.
///
/// Rules (DESIGN.md §5): a request with a newer live (Pending or Progressing) request of the
/// same type is Skipped; otherwise it waits while another request is Progressing; the others
/// start oldest first.
pub fn queue_decision(me: &PgpoolOpsRequest, siblings: &[PgpoolOpsRequest]) -> QueueDecision {
    // Requests being deleted before they started go away without running.
    let live: Vec<&PgpoolOpsRequest> = siblings
        .iter()
        .filter(|r| !same(r, me) && !phase_of(r).is_final())
        .filter(|r| {
            r.metadata.deletion_timestamp.is_none() || phase_of(r) == OpsRequestPhase::Progressing
        })
        .collect();
    let newest_same_type = live
        .iter()
        .filter(|r| r.spec.type_ == me.spec.type_ && queue_order(r, me) == Ordering::Greater)
        .max_by(|a, b| queue_order(a, b));
    if let Some(newer) = newest_same_type {
        return QueueDecision::Skip {
            newer: newer.metadata.name.clone().unwrap_or_default(),
        };
    }
    if let Some(running) = live
        .iter()
        .find(|r| phase_of(r) == OpsRequestPhase::Progressing)
    {
        return QueueDecision::Wait {
            behind: running.metadata.name.clone().unwrap_or_default(),
        };
    }
    let waiting = live;
    let superseded = |r: &PgpoolOpsRequest| {
        waiting.iter().any(|o| {
            o.spec.type_ == r.spec.type_ && !same(o, r) && queue_order(o, r) == Ordering::Greater
        }) || (r.spec.type_ == me.spec.type_ && queue_order(me, r) == Ordering::Greater)
    };
    let ahead = waiting
        .iter()
        .filter(|r| queue_order(r, me) == Ordering::Less && !superseded(r))
        .min_by(|a, b| queue_order(a, b));
    match ahead {
        Some(r) => QueueDecision::Wait {
            behind: r.metadata.name.clone().unwrap_or_default(),
        },
        None => QueueDecision::Start,
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
