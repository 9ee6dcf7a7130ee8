//! TLS of a Pgpool: the built-in CA ([`ca`], pure), what a Pgpool needs and what to issue
//! or renew ([`plan`], pure), the reads it depends on ([`observe`]), the writes and events
//! ([`apply`]), the renewal schedule ([`Renewals`]) and the pod restarts that load new
//! certificates ([`rollout`]).

pub mod apply;
pub mod ca;
pub mod names;
pub mod observe;
pub mod plan;
pub mod rollout;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::runtime::controller::Action;

/// When each Pgpool's next certificate is due (built-in CA), by `namespace/name`: a reconcile
/// is scheduled for then, and the fast path does not skip it.
#[derive(Debug, Default)]
pub struct Renewals {
    due: Mutex<HashMap<String, DateTime<Utc>>>,
    targets: Mutex<HashMap<String, rollout::Target>>,
}

impl Renewals {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the next renewal of `key` (`None`: nothing to renew).
    pub fn set(&self, key: &str, at: Option<DateTime<Utc>>) {
        match at {
            Some(at) => self.map().insert(key.to_string(), at),
            None => self.map().remove(key),
        };
    }

    /// Whether a renewal of `key` is due at `now`.
    pub fn due(&self, key: &str, now: DateTime<Utc>) -> bool {
        self.map().get(key).is_some_and(|at| *at <= now)
    }

    /// Forgets `key` (deleted or halted).
    pub fn forget(&self, key: &str) {
        self.map().remove(key);
        self.set_target(key, None);
    }

    /// Records the hashes the pods of `key` must carry (`None`: no TLS).
    pub fn set_target(&self, key: &str, target: Option<rollout::Target>) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        match target {
            Some(t) => targets.insert(key.to_string(), t),
            None => targets.remove(key),
        };
    }

    /// The hashes the pods of `key` must carry, when it has TLS.
    pub fn target(&self, key: &str) -> Option<rollout::Target> {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// What the controller does after a reconcile of `key`: wake up at the next renewal, or
    /// wait for a change.
    pub fn action(&self, key: &str, now: DateTime<Utc>) -> Action {
        match self.map().get(key) {
            Some(at) => {
                let wait = (*at - now).to_std().unwrap_or(Duration::ZERO);
                // at most half a day: a clock step must not push a renewal far out
                Action::requeue(wait.clamp(Duration::from_secs(1), Duration::from_secs(43200)))
            }
            None => Action::await_change(),
        }
    }
}
