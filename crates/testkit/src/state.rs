//! Stored objects, resource versions, watch event history, deletion and garbage collection.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

mod delete;
mod update;

use crate::apply::Managed;
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
