//! An index of object *metadata* (resourceVersion, generation, a hash of labels, annotations
//! and owners) for the kinds the Pgpool controller reads: every Secret and Service in scope
//! (its children and the objects it points at), its PetSets and PodDisruptionBudgets. For
//! PetSets it also keeps `spec.replicas` and the revisions of their status (which template the
//! pods should run; see [`Rollout`]).
//!
//! The index is fed by metadata-only watches, so it costs a few hundred bytes per object. A
//! reconcile compares what the index says with what it saw last time (see [`super::memo`]) and
//! reads an object from the API server only when it changed.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt as _};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use pgpool_api::PetSet;
use serde::Deserialize;
use tokio::sync::watch;

use operator_kit::cache::{Synced, resource_as};

/// The kinds the index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Secret.
    Secret,
    /// `v1` Service.
    Service,
    /// PetSet.
    PetSet,
    /// `policy/v1` PodDisruptionBudget.
    Pdb,
    /// Prometheus operator ServiceMonitor (never indexed: read when needed).
    ServiceMonitor,
}

/// What the index keeps of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Hash of `metadata.resourceVersion` (see [`rv_hash`]).
    pub resource_version: u64,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Hash of labels, annotations, owner references and deletion timestamp.
    pub meta: u64,
    /// `spec.replicas` (PetSets).
    pub replicas: Option<i32>,
    /// The revisions in `status` (PetSets): which template the pods should run.
    pub rollout: Option<Arc<Rollout>>,
}

impl Record {
    /// The record of an object with metadata `meta`.
    pub fn of(meta: &ObjectMeta, replicas: Option<i32>) -> Self {
        let mut h = DefaultHasher::new();
        meta.labels.hash(&mut h);
        meta.annotations.hash(&mut h);
        for o in meta.owner_references.iter().flatten() {
            (&o.api_version, &o.kind, &o.name, &o.uid, o.controller).hash(&mut h);
            o.block_owner_deletion.hash(&mut h);
        }
        meta.deletion_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .hash(&mut h);
        Self {
            resource_version: rv_hash(meta.resource_version.as_deref()),
            generation: meta.generation,
            meta: h.finish(),
            replicas,
            rollout: None,
        }
    }

    /// The record with a PetSet's revisions (kept when it has an update revision).
    pub fn with_rollout(mut self, rollout: &Rollout) -> Self {
        self.rollout = rollout
            .update_revision
            .is_some()
            .then(|| Arc::new(rollout.clone()));
        self
    }

    /// What tells two states of an object apart for the Pgpool controller. Secrets and
    /// Services: the resourceVersion (any change). PetSets, PodDisruptionBudgets and
    /// ServiceMonitors: generation and metadata, so that the status their own controllers
    /// write does not count as a change.
    pub fn fingerprint(&self, kind: Kind) -> u64 {
        let mut h = DefaultHasher::new();
        match kind {
            Kind::Secret | Kind::Service => self.resource_version.hash(&mut h),
            Kind::PetSet | Kind::Pdb | Kind::ServiceMonitor => {
                (self.generation, self.meta).hash(&mut h)
            }
        }
        h.finish()
    }
}

/// A hash of a resourceVersion (the index keeps no strings but names).
pub fn rv_hash(resource_version: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    resource_version.unwrap_or_default().hash(&mut h);
    h.finish()
}

/// The fingerprint (see [`Record::fingerprint`]) of an object read from the API server.
pub fn fingerprint_of(kind: Kind, meta: &ObjectMeta) -> u64 {
    Record::of(meta, None).fingerprint(kind)
}

type ByName = HashMap<String, HashMap<String, Record>>;

/// Metadata of the objects of one kind, by namespace and name.
#[derive(Debug, Default)]
pub struct KindIndex {
    by_ns: RwLock<ByName>,
}

impl KindIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, ByName> {
        self.by_ns.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ByName> {
        self.by_ns.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `ns`/`name`.
    pub fn get(&self, ns: &str, name: &str) -> Option<Record> {
        self.read().get(ns)?.get(name).cloned()
    }

    /// Whether `ns`/`name` exists.
    pub fn contains(&self, ns: &str, name: &str) -> bool {
        self.read().get(ns).is_some_and(|m| m.contains_key(name))
    }

    /// Number of objects (for tests and metrics).
    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    /// Whether the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, meta: &ObjectMeta, record: Record) {
        let (Some(ns), Some(name)) = (meta.namespace.as_ref(), meta.name.as_ref()) else {
            return;
        };
        self.write()
            .entry(ns.clone())
            .or_default()
            .insert(name.clone(), record);
    }

    fn remove(&self, meta: &ObjectMeta) {
        let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            return;
        };
        let mut map = self.write();
        if let Some(names) = map.get_mut(ns) {
            names.remove(name);
            if names.is_empty() {
                map.remove(ns);
            }
        }
    }

    fn replace(&self, all: ByName) {
        *self.write() = all;
    }
}

/// The index of every kind.
#[derive(Debug, Default)]
pub struct MetaIndex {
    /// Secrets.
    pub secrets: KindIndex,
    /// Services.
    pub services: KindIndex,
    /// PetSets (ours).
    pub petsets: KindIndex,
    /// PodDisruptionBudgets (ours).
    pub pdbs: KindIndex,
}

impl MetaIndex {
    /// The index of `kind` (`None` for kinds that are not indexed).
    pub fn of(&self, kind: Kind) -> Option<&KindIndex> {
        match kind {
            Kind::Secret => Some(&self.secrets),
            Kind::Service => Some(&self.services),
            Kind::PetSet => Some(&self.petsets),
            Kind::Pdb => Some(&self.pdbs),
            Kind::ServiceMonitor => None,
        }
    }

    /// The fingerprint of `ns`/`name` of `kind`, `None` when it does not exist.
    pub fn fingerprint(&self, kind: Kind, ns: &str, name: &str) -> Option<u64> {
        self.of(kind)?.get(ns, name).map(|r| r.fingerprint(kind))
    }
}

/// What an index feed reports to its subscriber.
#[derive(Debug)]
pub enum Change<'a> {
    /// An object was added or changed.
    Applied(&'a ObjectMeta),
    /// An object was deleted.
    Deleted(&'a ObjectMeta),
    /// The watch started over and the index was rebuilt: anything may have changed.
    Relisted,
}

/// A PetSet as the index needs it: metadata, `spec.replicas` and the revisions in its status.
#[derive(Clone, Debug, Deserialize)]
pub struct PetSetReplicas {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec.replicas` only.
    #[serde(default)]
    pub spec: ReplicasOnly,
    /// The revisions of `status`.
    #[serde(default)]
    pub status: Rollout,
}

impl PetSetReplicas {
    /// The index record of this PetSet.
    pub fn record(&self) -> Record {
        Record::of(&self.metadata, self.spec.replicas).with_rollout(&self.status)
    }
}

/// A PetSet's `status.currentRevision`, `status.updateRevision` and `status.updatedReplicas`:
/// with `OnDelete`, pods whose `controller-revision-hash` is not the update revision run an
/// older template until they are deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The revision the PetSet counts as current (every pod ran it at the last full rollout).
    #[serde(default)]
    pub current_revision: Option<String>,
    /// The revision of the PetSet's template now: new pods get it.
    #[serde(default)]
    pub update_revision: Option<String>,
    /// Pods that run the update revision.
    #[serde(default)]
    pub updated_replicas: Option<i32>,
}

/// `spec.replicas`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReplicasOnly {
    /// `spec.replicas`.
    #[serde(default)]
    pub replicas: Option<i32>,
}

resource_as!(PetSetReplicas, PetSet);

/// Feeds `index` from watch `events` of objects that `parts` splits into metadata and
/// index record, and tells `notify` about each change once the index shows it. Runs until the
/// stream ends (never, with backoff; abort the task). `synced` becomes true after the first
/// complete list.
pub async fn run_feed<T, S>(
    events: S,
    index: &KindIndex,
    parts: fn(&T) -> (&ObjectMeta, Record),
    synced: watch::Sender<bool>,
    notify: impl Fn(Change<'_>),
) where
    S: Stream<Item = Result<watcher::Event<T>, watcher::Error>>,
{
    let mut events = std::pin::pin!(events);
    let mut relist: Option<ByName> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(obj)) => {
                let (meta, record) = parts(&obj);
                index.insert(meta, record);
                notify(Change::Applied(meta));
            }
            Ok(watcher::Event::Delete(obj)) => {
                let (meta, _) = parts(&obj);
                index.remove(meta);
                notify(Change::Deleted(meta));
            }
            Ok(watcher::Event::Init) => relist = Some(ByName::new()),
            Ok(watcher::Event::InitApply(obj)) => {
                let (meta, record) = parts(&obj);
                if let (Some(buf), Some(ns), Some(name)) =
                    (relist.as_mut(), meta.namespace.as_ref(), meta.name.as_ref())
                {
                    buf.entry(ns.clone())
                        .or_default()
                        .insert(name.clone(), record);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(all) = relist.take() {
                    index.replace(all);
                }
                if *synced.borrow() {
                    notify(Change::Relisted);
                } else {
                    synced.send_replace(true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metadata watch failed; retrying"),
        }
    }
}

/// A sender for [`run_feed`] and the matching [`Synced`].
pub fn sync_pair() -> (watch::Sender<bool>, Synced) {
    let (tx, rx) = watch::channel(false);
    (tx, Synced::from_receiver(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use serde_json::json;

    fn meta(name: &str, rv: &str, generation: i64, label: &str) -> ObjectMeta {
        serde_json::from_value(json!({
            "name": name, "namespace": "ns", "resourceVersion": rv, "generation": generation,
            "labels": {"l": label}
        }))
        .unwrap()
    }

    #[test]
    fn fingerprints_follow_the_kind() {
        let a = Record::of(&meta("a", "1", 1, "x"), None);
        let status_write = Record::of(&meta("a", "2", 1, "x"), None);
        let spec_edit = Record::of(&meta("a", "3", 2, "x"), None);
        let label_edit = Record::of(&meta("a", "4", 1, "y"), None);
        // rv: any write counts
        assert_ne!(
            a.fingerprint(Kind::Secret),
            status_write.fingerprint(Kind::Secret)
        );
        // generation + metadata: a status write does not
        assert_eq!(
            a.fingerprint(Kind::PetSet),
            status_write.fingerprint(Kind::PetSet)
        );
        assert_ne!(
            a.fingerprint(Kind::PetSet),
            spec_edit.fingerprint(Kind::PetSet)
        );
        assert_ne!(
            a.fingerprint(Kind::PetSet),
            label_edit.fingerprint(Kind::PetSet)
        );
        assert_eq!(
            fingerprint_of(Kind::Pdb, &meta("a", "9", 1, "x")),
            a.fingerprint(Kind::Pdb)
        );
    }

    #[tokio::test]
    async fn the_feed_keeps_the_index_and_reports_changes() {
        type Ev = Result<watcher::Event<PetSetReplicas>, watcher::Error>;
        let ps = |name: &str, rv: &str, replicas: i32| PetSetReplicas {
            metadata: meta(name, rv, 1, "x"),
            spec: ReplicasOnly {
                replicas: Some(replicas),
            },
            status: Rollout::default(),
        };
        let events: Vec<Ev> = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(ps("a", "1", 1))),
            Ok(watcher::Event::InitApply(ps("b", "1", 2))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(ps("a", "2", 3))),
            Ok(watcher::Event::Delete(ps("b", "3", 2))),
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(ps("c", "5", 1))),
            Ok(watcher::Event::InitDone),
        ];
        let index = KindIndex::default();
        let (tx, synced) = sync_pair();
        let seen = std::sync::Mutex::new(Vec::new());
        run_feed(
            stream::iter(events),
            &index,
            |p: &PetSetReplicas| (&p.metadata, p.record()),
            tx,
            |c| {
                let s = match c {
                    Change::Applied(m) => format!("+{}", m.name.as_deref().unwrap_or_default()),
                    Change::Deleted(m) => format!("-{}", m.name.as_deref().unwrap_or_default()),
                    Change::Relisted => "relisted".to_string(),
                };
                seen.lock().unwrap().push(s);
            },
        )
        .await;
        assert!(synced.is_synced());
        assert_eq!(*seen.lock().unwrap(), vec!["+a", "-b", "relisted"]);
        assert!(!index.contains("ns", "a"), "gone in the re-list");
        assert_eq!(index.get("ns", "c").unwrap().replicas, Some(1));
        assert_eq!(index.len(), 1);
    }
}
