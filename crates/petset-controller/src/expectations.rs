//! Expectations: what the controller has just written for a PetSet and its watch caches have
//! not shown yet (the classic controller-expectations pattern).
//!
//! The controller plans from caches. Right after it created a pod, the pod cache may not hold
//! it yet, and a plan made then would create the pod again. So every pod or revision write is
//! recorded here *before* it is sent, the watch feeds report what they see, and a PetSet with
//! writes not yet seen is not planned again until they are (or [`TIMEOUT`] has passed, in
//! case an event was lost). A status write is remembered until the PetSet cache moves past
//! the version it was written over, so that a lagging cache does not cause the same status to
//! be written twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgpool_api::petset::PetSetStatus;

/// How long unseen writes block a PetSet at most.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Pending {
    created_pods: HashSet<String>,
    deleted_pods: HashSet<String>,
    created_revisions: HashSet<String>,
    deleted_revisions: HashSet<String>,
    /// The status written and the resourceVersion of the PetSet it was written over.
    status: Option<(PetSetStatus, Option<String>)>,
    since: Instant,
}

impl Pending {
    fn new(now: Instant) -> Self {
        Self {
            created_pods: HashSet::new(),
            deleted_pods: HashSet::new(),
            created_revisions: HashSet::new(),
            deleted_revisions: HashSet::new(),
            status: None,
            since: now,
        }
    }

    fn blocks(&self) -> bool {
        !(self.created_pods.is_empty()
            && self.deleted_pods.is_empty()
            && self.created_revisions.is_empty()
            && self.deleted_revisions.is_empty())
    }

    fn is_empty(&self) -> bool {
        !self.blocks() && self.status.is_none()
    }
}

/// Unseen writes per PetSet (keyed `namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: HashMap<String, Pending>,
}

impl Expectations {
    fn entry(&mut self, key: &str, now: Instant) -> &mut Pending {
        let p = self
            .pending
            .entry(key.to_string())
            .or_insert_with(|| Pending::new(now));
        if !p.blocks() {
            p.since = now;
        }
        p
    }

    fn cleanup(&mut self, key: &str) {
        if self.pending.get(key).is_some_and(Pending::is_empty) {
            self.pending.remove(key);
        }
    }

    /// About to create pod `name`.
    pub fn expect_pod_created(&mut self, key: &str, name: &str, now: Instant) {
        self.entry(key, now).created_pods.insert(name.to_string());
    }

    /// About to delete the pod with `uid`.
    pub fn expect_pod_deleted(&mut self, key: &str, uid: &str, now: Instant) {
        self.entry(key, now).deleted_pods.insert(uid.to_string());
    }

    /// About to create revision `name`.
    pub fn expect_revision_created(&mut self, key: &str, name: &str, now: Instant) {
        self.entry(key, now)
            .created_revisions
            .insert(name.to_string());
    }

    /// About to delete revision `name`.
    pub fn expect_revision_deleted(&mut self, key: &str, name: &str, now: Instant) {
        self.entry(key, now)
            .deleted_revisions
            .insert(name.to_string());
    }

    /// About to write `status` over the PetSet version `resource_version`.
    pub fn expect_status(
        &mut self,
        key: &str,
        status: PetSetStatus,
        resource_version: Option<String>,
        now: Instant,
    ) {
        self.entry(key, now).status = Some((status, resource_version));
    }

    /// A write that failed in a way that means no event will come for it (or it was not
    /// sent): forget it.
    pub fn forget_pod_created(&mut self, key: &str, name: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.created_pods.remove(name);
        }
        self.cleanup(key);
    }

    /// See [`Self::forget_pod_created`].
    pub fn forget_pod_deleted(&mut self, key: &str, uid: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.deleted_pods.remove(uid);
        }
        self.cleanup(key);
    }

    /// See [`Self::forget_pod_created`].
    pub fn forget_revision_created(&mut self, key: &str, name: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.created_revisions.remove(name);
        }
        self.cleanup(key);
    }

    /// See [`Self::forget_pod_created`].
    pub fn forget_revision_deleted(&mut self, key: &str, name: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.deleted_revisions.remove(name);
        }
        self.cleanup(key);
    }

    /// See [`Self::forget_pod_created`].
    pub fn forget_status(&mut self, key: &str) {
        if let Some(p) = self.pending.get_mut(key) {
            p.status = None;
        }
        self.cleanup(key);
    }

    /// The pod cache saw pod `name` (uid `uid`) of PetSet `key`: added or changed, or
    /// deleted (`gone`) or being deleted (`terminating`).
    pub fn pod_seen(&mut self, key: &str, name: &str, uid: &str, terminating: bool, gone: bool) {
        let Some(p) = self.pending.get_mut(key) else {
            return;
        };
        if !gone {
            p.created_pods.remove(name);
        }
        if gone || terminating {
            p.deleted_pods.remove(uid);
        }
        self.cleanup(key);
    }

    /// The revision cache saw revision `name` of PetSet `key` (deleted when `gone`).
    pub fn revision_seen(&mut self, key: &str, name: &str, gone: bool) {
        let Some(p) = self.pending.get_mut(key) else {
            return;
        };
        if gone {
            p.deleted_revisions.remove(name);
        } else {
            p.created_revisions.remove(name);
        }
        self.cleanup(key);
    }

    /// The PetSet cache now holds version `resource_version` of PetSet `key`.
    pub fn petset_seen(&mut self, key: &str, resource_version: Option<&str>) {
        let Some(p) = self.pending.get_mut(key) else {
            return;
        };
        if p.status
            .as_ref()
            .is_some_and(|(_, before)| before.as_deref() != resource_version)
        {
            p.status = None;
        }
        self.cleanup(key);
    }

    /// The PetSet is gone: forget everything about it.
    pub fn petset_gone(&mut self, key: &str) {
        self.pending.remove(key);
    }

    /// How long to wait before planning PetSet `key` again: `None` when every pod and
    /// revision write has been seen (or they are older than [`TIMEOUT`], then forgotten).
    pub fn wait(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let p = self.pending.get_mut(key)?;
        if !p.blocks() {
            return None;
        }
        let age = now.saturating_duration_since(p.since);
        if age >= TIMEOUT {
            tracing::debug!(
                petset = key,
                "writes not seen in the caches in time; planning anyway"
            );
            p.created_pods.clear();
            p.deleted_pods.clear();
            p.created_revisions.clear();
            p.deleted_revisions.clear();
            self.cleanup(key);
            return None;
        }
        Some(TIMEOUT - age)
    }

    /// Whether `status` is what was just written for PetSet `key` and the cache has not
    /// moved past the version it was written over.
    pub fn status_written(&self, key: &str, status: &PetSetStatus) -> bool {
        self.pending
            .get(key)
            .and_then(|p| p.status.as_ref())
            .is_some_and(|(s, _)| s == status)
    }

    /// Number of PetSets with unseen writes (for tests).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no PetSet has unseen writes.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ns/web";

    #[test]
    fn creations_block_until_seen() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        assert_eq!(e.wait(K, t0), None);
        e.expect_revision_created(K, "web-1", t0);
        e.expect_pod_created(K, "web-0", t0);
        assert_eq!(e.wait(K, t0), Some(TIMEOUT));
        e.revision_seen(K, "web-1", false);
        assert!(e.wait(K, t0).is_some(), "the pod is still unseen");
        e.pod_seen(K, "web-0", "u1", false, true);
        assert!(
            e.wait(K, t0).is_some(),
            "a deletion does not show a creation"
        );
        e.pod_seen(K, "web-0", "u1", false, false);
        assert_eq!(e.wait(K, t0), None);
        assert!(e.is_empty());
    }

    #[test]
    fn deletions_are_seen_when_gone_or_terminating() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        e.expect_pod_deleted(K, "u1", t0);
        e.expect_pod_deleted(K, "u2", t0);
        e.expect_revision_deleted(K, "web-old", t0);
        e.pod_seen(K, "web-1", "u1", true, false);
        e.pod_seen(K, "web-2", "u2", false, false);
        assert!(e.wait(K, t0).is_some(), "u2 is not being deleted yet");
        e.pod_seen(K, "web-2", "u2", false, true);
        e.revision_seen(K, "web-old", false);
        assert!(e.wait(K, t0).is_some(), "the revision still exists");
        e.revision_seen(K, "web-old", true);
        assert_eq!(e.wait(K, t0), None);
    }

    #[test]
    fn unseen_writes_expire() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        e.expect_pod_created(K, "web-0", t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(e.wait(K, later), Some(TIMEOUT - Duration::from_secs(10)));
        assert_eq!(e.wait(K, t0 + TIMEOUT), None);
        assert!(e.is_empty());
    }

    #[test]
    fn forgotten_writes_do_not_block() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        e.expect_pod_created(K, "web-0", t0);
        e.forget_pod_created(K, "web-0");
        e.expect_pod_deleted(K, "u", t0);
        e.forget_pod_deleted(K, "u");
        e.expect_revision_created(K, "r", t0);
        e.forget_revision_created(K, "r");
        e.expect_revision_deleted(K, "r", t0);
        e.forget_revision_deleted(K, "r");
        assert_eq!(e.wait(K, t0), None);
        assert!(e.is_empty());
    }

    #[test]
    fn a_written_status_is_remembered_until_the_cache_moves_on() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        let status = PetSetStatus {
            replicas: 1,
            ..PetSetStatus::default()
        };
        e.expect_status(K, status.clone(), Some("5".into()), t0);
        assert_eq!(e.wait(K, t0), None, "a status write does not block");
        assert!(e.status_written(K, &status));
        assert!(!e.status_written(K, &PetSetStatus::default()));
        e.petset_seen(K, Some("5"));
        assert!(e.status_written(K, &status), "still the old version");
        e.petset_seen(K, Some("6"));
        assert!(!e.status_written(K, &status));
        assert!(e.is_empty());
    }

    #[test]
    fn a_gone_petset_is_forgotten() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        e.expect_pod_created(K, "web-0", t0);
        e.petset_gone(K);
        assert_eq!(e.len(), 0);
    }
}
