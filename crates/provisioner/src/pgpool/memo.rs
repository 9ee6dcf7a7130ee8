//! What the last full reconcile of each Pgpool saw, so that the next reconcile can tell from
//! the caches alone that nothing it depends on changed, and skip straight to the status.
//!
//! A full reconcile reads the Pgpool's dependencies (catalog version, AppBindings, Secrets,
//! standby Services) and its children, applies what differs and records a [`Memo`]: a hash of
//! the dependencies' versions and, per child, the fingerprint of the object as it left it
//! (see [`super::index::Record::fingerprint`]). Later reconciles compare that with the
//! metadata index. A child written by the reconcile may not be in the index yet: the memo
//! also keeps the fingerprint the index showed *before* the write, and the index still showing
//! that one for a short while ([`LAG`]) counts as unchanged. A deletion of a child (or a
//! re-list of a watch) throws the memos concerned away ([`Memos::invalidate`]), and a memo is
//! only stored if no invalidation happened while its reconcile ran ([`Ticket`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::index::Kind;
use super::validate::Problem;

/// How long a child may still show its pre-write version in the index.
pub const LAG: Duration = Duration::from_secs(30);

/// A child of a Pgpool as the last full reconcile left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildMemo {
    /// Kind.
    pub kind: Kind,
    /// Name (in the Pgpool's namespace).
    pub name: String,
    /// Fingerprint after the reconcile; `None`: absent.
    pub value: Option<u64>,
    /// Fingerprint the index showed before the reconcile read or wrote it.
    pub prev: Option<u64>,
}

impl ChildMemo {
    /// Whether `current` (from the index; `None`: absent) means the child is as left.
    fn unchanged(&self, current: Option<u64>, fresh: bool) -> bool {
        current == self.value || (fresh && current == self.prev)
    }
}

/// How the last full reconcile ended.
#[derive(Clone, Debug, PartialEq)]
pub enum MemoOutcome {
    /// Children in place; remarks for the status.
    Running {
        /// `ProvisioningStarted` remarks.
        notes: Vec<crate::pgpool::validate::Note>,
    },
    /// A problem the user has to fix.
    Problem(Problem),
}

/// What the last full reconcile of a Pgpool saw.
#[derive(Clone, Debug)]
pub struct Memo {
    /// The Pgpool's uid.
    pub uid: String,
    /// Hash of the dependencies (see the module documentation).
    pub deps: u64,
    /// Its children.
    pub children: Vec<ChildMemo>,
    /// Its outcome.
    pub outcome: MemoOutcome,
    /// When it was recorded.
    pub at: Instant,
}

impl Memo {
    /// The outcome, when nothing changed: same Pgpool, same dependencies, and every child as
    /// `current` says (`current(kind, name)`: the fingerprint now, `None`: absent).
    pub fn still_valid(
        &self,
        uid: &str,
        deps: u64,
        now: Instant,
        mut current: impl FnMut(Kind, &str) -> Option<u64>,
    ) -> Option<&MemoOutcome> {
        if self.uid != uid || self.deps != deps {
            return None;
        }
        let fresh = now.saturating_duration_since(self.at) < LAG;
        self.children
            .iter()
            .all(|c| c.unchanged(current(c.kind, &c.name), fresh))
            .then_some(&self.outcome)
    }

    /// Why [`Self::still_valid`] says no (for logs); `None` when it says yes.
    pub fn changed(
        &self,
        uid: &str,
        deps: u64,
        now: Instant,
        mut current: impl FnMut(Kind, &str) -> Option<u64>,
    ) -> Option<String> {
        if self.uid != uid {
            return Some("another Pgpool of that name".into());
        }
        if self.deps != deps {
            return Some("its spec or what it points at".into());
        }
        let fresh = now.saturating_duration_since(self.at) < LAG;
        self.children
            .iter()
            .find(|c| !c.unchanged(current(c.kind, &c.name), fresh))
            .map(|c| format!("{:?} {}", c.kind, c.name))
    }

    /// The memo of child `kind`/`name`.
    pub fn child(&self, kind: Kind, name: &str) -> Option<&ChildMemo> {
        self.children
            .iter()
            .find(|c| c.kind == kind && c.name == name)
    }
}

/// Proof that no invalidation happened since it was taken (see [`Memos::store`]).
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// The memos of all Pgpools, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Memos {
    entries: Mutex<HashMap<String, Memo>>,
    invalidations: AtomicU64,
}

impl Memos {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memo>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The memo of `key`.
    pub fn get(&self, key: &str) -> Option<Memo> {
        self.entries().get(key).cloned()
    }

    /// Calls `f` with the memo of `key` without copying it.
    pub fn with<R>(&self, key: &str, f: impl FnOnce(Option<&Memo>) -> R) -> R {
        f(self.entries().get(key))
    }

    /// Taken before a full reconcile reads anything.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.invalidations.load(Ordering::SeqCst))
    }

    /// Stores `memo` for `key`, unless something was invalidated since `ticket` was taken.
    pub fn store(&self, key: &str, memo: Memo, ticket: Ticket) -> bool {
        let mut entries = self.entries();
        if self.invalidations.load(Ordering::SeqCst) != ticket.0 {
            entries.remove(key);
            return false;
        }
        entries.insert(key.to_string(), memo);
        true
    }

    /// Throws away the memos of `keys` and makes running reconciles' memos void.
    pub fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.entries();
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        for key in keys {
            entries.remove(key);
        }
    }

    /// Throws away every memo.
    pub fn invalidate_all(&self) {
        let mut entries = self.entries();
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    /// Forgets `key` (the Pgpool is gone).
    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }

    /// Number of memos.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memo(at: Instant) -> Memo {
        Memo {
            uid: "u".into(),
            deps: 7,
            children: vec![
                ChildMemo {
                    kind: Kind::Secret,
                    name: "a".into(),
                    value: Some(2),
                    prev: None,
                },
                ChildMemo {
                    kind: Kind::PetSet,
                    name: "p".into(),
                    value: Some(5),
                    prev: Some(4),
                },
            ],
            outcome: MemoOutcome::Running { notes: Vec::new() },
            at,
        }
    }

    fn index<'a>(
        secret: Option<u64>,
        petset: Option<u64>,
    ) -> impl FnMut(Kind, &str) -> Option<u64> + 'a {
        move |kind, _| match kind {
            Kind::Secret => secret,
            _ => petset,
        }
    }

    #[test]
    fn unchanged_inputs_give_the_outcome() {
        let t = Instant::now();
        let m = memo(t);
        assert!(m.still_valid("u", 7, t, index(Some(2), Some(5))).is_some());
        assert!(
            m.still_valid("other", 7, t, index(Some(2), Some(5)))
                .is_none()
        );
        assert!(m.still_valid("u", 8, t, index(Some(2), Some(5))).is_none());
        assert!(m.still_valid("u", 7, t, index(Some(3), Some(5))).is_none());
        // gone after the lag window: changed
        assert!(
            m.still_valid("u", 7, t + LAG, index(None, Some(5)))
                .is_none()
        );
    }

    #[test]
    fn the_index_may_lag_behind_a_write_for_a_while() {
        let t = Instant::now();
        let m = memo(t);
        // the index still shows what was there before the reconcile wrote
        assert!(m.still_valid("u", 7, t, index(None, Some(4))).is_some());
        let late = t + LAG;
        assert!(m.still_valid("u", 7, late, index(None, Some(4))).is_none());
        assert!(
            m.still_valid("u", 7, late, index(Some(2), Some(5)))
                .is_some()
        );
    }

    #[test]
    fn invalidation_voids_memos_being_made() {
        let memos = Memos::default();
        let t = Instant::now();
        let ticket = memos.ticket();
        assert!(memos.store("ns/a", memo(t), ticket));
        assert!(memos.get("ns/a").is_some());

        let ticket = memos.ticket();
        memos.invalidate(["ns/a"]);
        assert!(memos.get("ns/a").is_none());
        assert!(
            !memos.store("ns/a", memo(t), ticket),
            "made before the deletion"
        );
        assert!(memos.store("ns/a", memo(t), memos.ticket()));
        memos.invalidate_all();
        assert!(memos.is_empty());
    }
}
