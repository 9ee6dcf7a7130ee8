//! Stored objects, resource versions, watch event history, deletion and garbage collection.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::apply::{self, Managed, strip_nulls};
use crate::error::ApiError;
use crate::registry::ResourceInfo;

/// `(namespace or "", name)`.
pub(crate) type ObjKey = (String, String);

/// One stored object and its server-side-apply bookkeeping.
pub(crate) struct Stored {
    pub obj: Arc<Value>,
    pub managed: Managed,
}

/// Watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one object, kept in the kind's history and broadcast to watchers.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub ty: EventType,
    pub obj: Arc<Value>,
    /// The object before a modification (for selector transitions).
    pub prev: Option<Arc<Value>>,
    /// The object serialised once for all watchers.
    pub json: std::sync::OnceLock<bytes::Bytes>,
}

impl Event {
    /// The object as JSON, serialised on first use.
    pub fn object_json(&self) -> &bytes::Bytes {
        self.json
            .get_or_init(|| bytes::Bytes::from(serde_json::to_vec(&*self.obj).unwrap_or_default()))
    }
}

/// Everything stored for one kind.
pub(crate) struct KindStore {
    pub info: Arc<ResourceInfo>,
    pub objects: BTreeMap<ObjKey, Stored>,
    pub history: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this one get `410 Gone`.
    pub compacted_rv: u64,
    pub tx: broadcast::Sender<Arc<Event>>,
}

/// How a write changes field ownership.
pub(crate) enum Ownership {
    /// Server-side apply computed the new field sets.
    Apply(Managed),
    /// A write other than apply by this manager key: it owns the fields it changed.
    Update(String),
    /// A change made by the server itself (deletion, garbage collection).
    System,
}

/// Options of a deletion.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOpts {
    pub propagation: Option<String>,
    pub grace: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// Result of a deletion request.
pub(crate) enum DeleteOutcome {
    /// The object is gone; the last state.
    Removed(Arc<Value>),
    /// Deletion is pending (finalizers, graceful pod termination).
    Pending(Arc<Value>),
}

struct GcItem {
    uid: String,
    owners: Vec<String>,
    namespace: Option<String>,
}

/// The whole server state, behind one mutex.
pub(crate) struct State {
    pub rv: u64,
    pub kinds: Vec<KindStore>,
    /// `(group, plural)` → index into `kinds`.
    pub index: HashMap<(String, String), usize>,
    uids: HashMap<String, (usize, ObjKey)>,
    dependents: HashMap<String, BTreeSet<(usize, ObjKey)>>,
    gc_queue: VecDeque<GcItem>,
    in_gc: bool,
    pub history_limit: usize,
    /// Namespaces where pods or PodDisruptionBudgets changed since the last budget refresh.
    pub pdb_dirty: BTreeSet<String>,
    /// The exact `data` bytes of each ControllerRevision as created: `(namespace, name)` ->
    /// `(uid, bytes)` (see [`crate::revision`]).
    pub revision_data: HashMap<ObjKey, (String, String)>,
    /// Custom kinds `(group, kind)` whose scale the disruption controller can look up (see
    /// [`crate::pdb`]); none at start, as on a freshly installed cluster.
    pub disruption_known: BTreeSet<(String, String)>,
    rng: u64,
    counter: u64,
}

pub(crate) const BROADCAST_CAPACITY: usize = 4096;

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

pub(crate) fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(m) = v else {
        unreachable!("just made an object")
    };
    let entry = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let Value::Object(md) = entry else {
        unreachable!("just made an object")
    };
    md
}

pub(crate) fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    meta(v).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn owner_uids(v: &Value) -> Vec<String> {
    meta(v)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn finalizers(v: &Value) -> Vec<String> {
    meta(v)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn set_finalizers(v: &mut Value, f: Vec<String>) {
    let m = meta_mut(v);
    if f.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(f));
    }
}

/// Whether the parts of two objects that `generation` tracks are equal: everything but
/// metadata (and status when the status subresource is enabled).
fn spec_eq(a: &Value, b: &Value, status_sub: bool) -> bool {
    let tracked = |k: &str| {
        !(matches!(k, "metadata" | "apiVersion" | "kind") || (status_sub && k == "status"))
    };
    match (a, b) {
        (Value::Object(am), Value::Object(bm)) => {
            am.iter()
                .filter(|(k, _)| tracked(k))
                .all(|(k, v)| bm.get(k) == Some(v))
                && bm.keys().filter(|k| tracked(k)).all(|k| am.contains_key(k))
        }
        _ => a == b,
    }
}

const RESTORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
];

impl State {
    pub fn new(history_limit: usize) -> Self {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            rv: 1,
            kinds: Vec::new(),
            index: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            gc_queue: VecDeque::new(),
            in_gc: false,
            history_limit: history_limit.max(1),
            pdb_dirty: BTreeSet::new(),
            revision_data: HashMap::new(),
            disruption_known: BTreeSet::new(),
            rng: seed | 1,
            counter: 0,
        }
    }

    /// Add a kind, or update the description of one already known (objects are kept).
    pub fn register(&mut self, info: ResourceInfo) -> usize {
        let key = (info.group.clone(), info.plural.clone());
        if let Some(&i) = self.index.get(&key) {
            self.kinds[i].info = Arc::new(info);
            return i;
        }
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        self.kinds.push(KindStore {
            info: Arc::new(info),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted_rv: 0,
            tx,
        });
        let i = self.kinds.len() - 1;
        self.index.insert(key, i);
        i
    }

    pub fn kind_index(&self, group: &str, plural: &str) -> Option<usize> {
        self.index
            .get(&(group.to_string(), plural.to_string()))
            .copied()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn new_uid(&mut self) -> String {
        self.counter += 1;
        let r = self.next_random();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (r >> 32) as u32,
            (r >> 16) as u16,
            (r & 0xfff) as u16,
            (self.counter >> 48) & 0xfff,
            self.counter & 0xffff_ffff_ffff
        )
    }

    pub fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.next_random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
                r /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    pub fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Drop all retained events: any watch from an older resourceVersion gets `410 Gone`.
    pub fn compact(&mut self) {
        let rv = self.rv;
        for k in &mut self.kinds {
            k.history.clear();
            k.compacted_rv = rv;
        }
    }

    fn publish(&mut self, kind: usize, ev: Event) {
        let info = &self.kinds[kind].info;
        if (info.group.is_empty() && info.plural == "pods")
            || (info.group == "policy" && info.plural == "poddisruptionbudgets")
            || info.scale.is_some()
        {
            let ns = meta_str(&ev.obj, "namespace")
                .unwrap_or_default()
                .to_string();
            self.pdb_dirty.insert(ns);
        }
        let limit = self.history_limit;
        let ks = &mut self.kinds[kind];
        let ev = Arc::new(ev);
        ks.history.push_back(ev.clone());
        while ks.history.len() > limit {
            if let Some(old) = ks.history.pop_front() {
                ks.compacted_rv = old.rv;
            }
        }
        let _ = ks.tx.send(ev);
    }

    fn index_owners(&mut self, kind: usize, key: &ObjKey, obj: &Value) {
        for u in owner_uids(obj) {
            self.dependents
                .entry(u)
                .or_default()
                .insert((kind, key.clone()));
        }
    }

    fn unindex_owners(&mut self, kind: usize, key: &ObjKey, obj: &Value) {
        for u in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&u) {
                set.remove(&(kind, key.clone()));
                if set.is_empty() {
                    self.dependents.remove(&u);
                }
            }
        }
    }

    pub fn get(&self, kind: usize, key: &ObjKey) -> Option<&Stored> {
        self.kinds[kind].objects.get(key)
    }

    /// Store a new object (ADDED).
    pub fn insert(
        &mut self,
        kind: usize,
        key: ObjKey,
        mut obj: Value,
        managed: Managed,
    ) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        if let Some(uid) = meta_str(&obj, "uid") {
            self.uids.insert(uid.to_string(), (kind, key.clone()));
        }
        self.index_owners(kind, &key, &obj);
        self.kinds[kind].objects.insert(
            key,
            Stored {
                obj: obj.clone(),
                managed,
            },
        );
        self.publish(
            kind,
            Event {
                rv,
                ty: EventType::Added,
                obj: obj.clone(),
                prev: None,
                json: Default::default(),
            },
        );
        obj
    }

    /// Replace a stored object with a changed version (MODIFIED).
    fn replace(
        &mut self,
        kind: usize,
        key: &ObjKey,
        mut obj: Value,
        managed: Option<Managed>,
    ) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        let Some(stored) = self.kinds[kind].objects.get_mut(key) else {
            return obj;
        };
        let prev = std::mem::replace(&mut stored.obj, obj.clone());
        if let Some(m) = managed {
            stored.managed = m;
        }
        self.unindex_owners(kind, key, &prev);
        self.index_owners(kind, key, &obj);
        self.publish(
            kind,
            Event {
                rv,
                ty: EventType::Modified,
                obj: obj.clone(),
                prev: Some(prev),
                json: Default::default(),
            },
        );
        obj
    }

    /// Remove a stored object (DELETED) and garbage-collect its dependents.
    fn remove(&mut self, kind: usize, key: &ObjKey, last: Option<Value>) -> Option<Arc<Value>> {
        let stored = self.kinds[kind].objects.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        let mut obj = last.unwrap_or_else(|| (*stored.obj).clone());
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        let uid = meta_str(&stored.obj, "uid").unwrap_or_default().to_string();
        self.uids.remove(&uid);
        if crate::revision::is_revisions(&self.kinds[kind].info) {
            self.revision_data.remove(key);
        }
        self.unindex_owners(kind, key, &stored.obj);
        self.publish(
            kind,
            Event {
                rv,
                ty: EventType::Deleted,
                obj: obj.clone(),
                prev: None,
                json: Default::default(),
            },
        );
        let info = self.kinds[kind].info.clone();
        self.gc_queue.push_back(GcItem {
            uid,
            owners: owner_uids(&stored.obj),
            namespace: (info.group.is_empty() && info.plural == "namespaces")
                .then(|| key.1.clone()),
        });
        self.drain_gc();
        Some(obj)
    }

    fn drain_gc(&mut self) {
        if self.in_gc {
            return;
        }
        self.in_gc = true;
        while let Some(item) = self.gc_queue.pop_front() {
            self.collect_dependents(&item.uid);
            for owner in &item.owners {
                self.maybe_finish_foreground(owner);
            }
            if let Some(ns) = &item.namespace {
                self.delete_namespace_contents(ns);
            }
        }
        self.in_gc = false;
    }

    fn collect_dependents(&mut self, uid: &str) {
        let Some(deps) = self.dependents.remove(uid) else {
            return;
        };
        for (kind, key) in deps {
            let Some(stored) = self.get(kind, &key) else {
                continue;
            };
            let obj = stored.obj.clone();
            let others_alive = owner_uids(&obj)
                .iter()
                .any(|u| u != uid && self.uids.contains_key(u));
            if others_alive {
                let mut new = (*obj).clone();
                if let Some(Value::Array(refs)) = meta_mut(&mut new).get_mut("ownerReferences") {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                }
                self.replace(kind, &key, new, None);
            } else if meta_str(&obj, "deletionTimestamp").is_none() {
                let _ = self.delete_object(kind, &key, &DeleteOpts::default());
            }
        }
    }

    fn maybe_finish_foreground(&mut self, owner_uid: &str) {
        let Some((kind, key)) = self.uids.get(owner_uid).cloned() else {
            return;
        };
        if self
            .dependents
            .get(owner_uid)
            .is_some_and(|d| !d.is_empty())
        {
            return;
        }
        let Some(stored) = self.get(kind, &key) else {
            return;
        };
        let obj = stored.obj.clone();
        let fins = finalizers(&obj);
        if meta_str(&obj, "deletionTimestamp").is_none()
            || !fins.iter().any(|f| f == "foregroundDeletion")
        {
            return;
        }
        let mut new = (*obj).clone();
        set_finalizers(
            &mut new,
            fins.into_iter()
                .filter(|f| f != "foregroundDeletion")
                .collect(),
        );
        if finalizers(&new).is_empty() {
            self.remove(kind, &key, Some(new));
        } else {
            self.replace(kind, &key, new, None);
        }
    }

    fn delete_namespace_contents(&mut self, ns: &str) {
        for kind in 0..self.kinds.len() {
            if !self.kinds[kind].info.namespaced {
                continue;
            }
            let keys: Vec<ObjKey> = self.kinds[kind]
                .objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let _ = self.delete_object(kind, &key, &DeleteOpts::default());
            }
        }
    }

    /// Remove this owner's references from its dependents (orphan propagation).
    fn orphan_dependents(&mut self, uid: &str) {
        let Some(deps) = self.dependents.remove(uid) else {
            return;
        };
        for (kind, key) in deps {
            let Some(stored) = self.get(kind, &key) else {
                continue;
            };
            let mut new = (*stored.obj).clone();
            if let Some(Value::Array(refs)) = meta_mut(&mut new).get_mut("ownerReferences") {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                if refs.is_empty() {
                    meta_mut(&mut new).remove("ownerReferences");
                }
            }
            self.replace(kind, &key, new, None);
        }
    }

    /// Delete an object: finalizers and graceful pod termination make it pending; otherwise it
    /// is removed and its dependents are garbage-collected according to the propagation policy.
    pub fn delete_object(
        &mut self,
        kind: usize,
        key: &ObjKey,
        opts: &DeleteOpts,
    ) -> Result<DeleteOutcome, ApiError> {
        let info = self.kinds[kind].info.clone();
        let Some(stored) = self.get(kind, key) else {
            return Err(ApiError::not_found(&info, &key.1));
        };
        let obj = stored.obj.clone();
        if let Some(u) = &opts.precondition_uid
            && meta_str(&obj, "uid") != Some(u.as_str())
        {
            return Err(ApiError::conflict(
                &info,
                &key.1,
                &format!(
                    "Precondition failed: UID in precondition: {u}, UID in object meta: {}",
                    meta_str(&obj, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && meta_str(&obj, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::stale(&info, &key.1));
        }
        if opts.dry_run {
            return Ok(DeleteOutcome::Pending(obj));
        }
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        if policy == "Orphan" {
            self.orphan_dependents(&uid);
        }
        let has_dependents = self.dependents.get(&uid).is_some_and(|d| !d.is_empty());
        let mut new = (*obj).clone();
        let mut fins = finalizers(&obj);
        if policy == "Foreground"
            && has_dependents
            && !fins.iter().any(|f| f == "foregroundDeletion")
        {
            fins.push("foregroundDeletion".into());
        }
        set_finalizers(&mut new, fins.clone());

        // Graceful termination of pods bound to a node: the kubelet finishes the deletion.
        let is_pod = info.group.is_empty() && info.plural == "pods";
        if is_pod {
            let bound = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            let grace = opts
                .grace
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .max(0);
            if bound && !terminal && grace > 0 {
                let current = meta(&obj)
                    .and_then(|m| m.get("deletionGracePeriodSeconds"))
                    .and_then(Value::as_i64);
                if current.is_some_and(|c| c <= grace) && new == *obj {
                    return Ok(DeleteOutcome::Pending(obj));
                }
                let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                let m = meta_mut(&mut new);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                let stored = self.replace(kind, key, new, None);
                return Ok(DeleteOutcome::Pending(stored));
            }
        }

        if fins.is_empty() {
            let last = self.remove(kind, key, None).unwrap_or(obj);
            return Ok(DeleteOutcome::Removed(last));
        }
        if meta_str(&new, "deletionTimestamp").is_none() {
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if new != *obj {
            self.replace(kind, key, new, None);
        }
        if policy == "Foreground" {
            let deps: Vec<_> = self
                .dependents
                .get(&uid)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default();
            for (dk, dkey) in deps {
                let pending = self
                    .get(dk, &dkey)
                    .is_some_and(|s| meta_str(&s.obj, "deletionTimestamp").is_some());
                if !pending {
                    let _ = self.delete_object(dk, &dkey, &DeleteOpts::default());
                }
            }
            self.maybe_finish_foreground(&uid);
        }
        match self.get(kind, key) {
            Some(s) => Ok(DeleteOutcome::Pending(s.obj.clone())),
            None => Ok(DeleteOutcome::Removed(obj)),
        }
    }

    /// Finish a write to an existing object: restore server-owned metadata, bump generation on
    /// spec changes, complete a deletion whose finalizers are gone, and store only if something
    /// changed. Returns the stored object and whether it changed.
    pub fn commit_update(
        &mut self,
        kind: usize,
        key: &ObjKey,
        mut new: Value,
        ownership: Ownership,
        dry_run: bool,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let info = self.kinds[kind].info.clone();
        let Some(stored) = self.get(kind, key) else {
            return Err(ApiError::not_found(&info, &key.1));
        };
        let old = stored.obj.clone();
        strip_nulls(&mut new);
        if let Value::Object(m) = &mut new {
            m.insert(
                "apiVersion".into(),
                old.get("apiVersion").cloned().unwrap_or(Value::Null),
            );
            m.insert("kind".into(), json!(info.kind));
        }
        {
            let old_meta = meta(&old).cloned().unwrap_or_default();
            let nm = meta_mut(&mut new);
            for f in RESTORED_META {
                match old_meta.get(*f) {
                    Some(v) => nm.insert((*f).to_string(), v.clone()),
                    None => nm.remove(*f),
                };
            }
            nm.remove("managedFields");
        }
        crate::validate::validate_update(&info, &key.1, &old, &mut new)?;
        crate::validate::normalize(&info, &mut new);
        crate::validate::validate(&info, &key.1, &new)?;
        if !spec_eq(&old, &new, info.status) {
            let g = meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if dry_run {
            return Ok((Arc::new(new), false));
        }
        if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            let last = self.remove(kind, key, Some(new)).unwrap_or(old);
            return Ok((last, true));
        }
        let mut managed = match ownership {
            Ownership::Apply(m) => m,
            Ownership::Update(manager_key) => {
                let mut m = stored_managed(self, kind, key);
                apply::record_update(&mut m, Some(&old), &new, &manager_key);
                m
            }
            Ownership::System => stored_managed(self, kind, key),
        };
        apply::prune(&mut managed, &new);
        if new == *old {
            if let Some(s) = self.kinds[kind].objects.get_mut(key) {
                s.managed = managed;
            }
            return Ok((old, false));
        }
        let obj = self.replace(kind, key, new, Some(managed));
        Ok((obj, true))
    }
}

impl State {
    /// The stored `data` bytes of ControllerRevision `key` (see [`crate::revision`]).
    pub fn revision_raw(&self, kind: usize, key: &ObjKey) -> Option<String> {
        let stored = self.get(kind, key)?;
        let uid = meta_str(&stored.obj, "uid").unwrap_or_default();
        let recorded = self
            .revision_data
            .get(key)
            .filter(|(u, _)| u == uid)
            .map(|(_, raw)| raw.as_str());
        Some(crate::revision::stored_raw(recorded, &stored.obj))
    }

    /// Where the object with this uid is stored.
    pub fn by_uid(&self, uid: &str) -> Option<(usize, ObjKey)> {
        self.uids.get(uid).cloned()
    }
}

fn stored_managed(st: &State, kind: usize, key: &ObjKey) -> Managed {
    st.get(kind, key)
        .map(|s| s.managed.clone())
        .unwrap_or_default()
}
