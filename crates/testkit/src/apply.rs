//! A small model of server-side apply: per-manager field sets, conflicts, merge and removal of
//! fields a manager stopped applying.
//!
//! Field sets are trees whose keys name fields (`f:<name>`), items of set-lists (`v:<json>`) and
//! items of map-lists (`k:<key value>`). A node without children owns the whole value at its
//! path. Lists are atomic except `metadata.finalizers` (a set) and `metadata.ownerReferences`
//! (a map keyed by `uid`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A tree of owned field paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSet(BTreeMap<String, FieldSet>);

/// Managers' field sets for one object, keyed by [`manager_key`].
pub(crate) type Managed = BTreeMap<String, FieldSet>;

/// Key of one manager's entry: the manager name and the operation (`apply`,
/// `apply/status`, `update`), like the entries of `metadata.managedFields`.
pub(crate) fn manager_key(manager: &str, op: &str) -> String {
    format!("{manager}|{op}")
}

fn manager_name(key: &str) -> &str {
    key.split('|').next().unwrap_or(key)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ListType {
    Atomic,
    Set,
    Map(&'static str),
}

fn list_type(path: &[String]) -> ListType {
    match path {
        [a, b] if a == "f:metadata" && b == "f:finalizers" => ListType::Set,
        [a, b] if a == "f:metadata" && b == "f:ownerReferences" => ListType::Map("uid"),
        _ => ListType::Atomic,
    }
}

/// Which part of the object an apply addresses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scope {
    /// The main resource; `status_subresource` says whether status is split off.
    Main { status_subresource: bool },
    /// The status subresource.
    Status,
}

const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Remove `null` members of objects, recursively (the API server drops them).
pub(crate) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            for x in m.values_mut() {
                strip_nulls(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The part of an applied configuration that the scope lets through, without system metadata.
pub(crate) fn scoped(applied: &Value, scope: Scope) -> Value {
    let mut v = applied.clone();
    strip_nulls(&mut v);
    if let Value::Object(m) = &mut v {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for k in SYSTEM_META {
                meta.remove(*k);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
        match scope {
            Scope::Main {
                status_subresource: true,
            } => {
                m.remove("status");
            }
            Scope::Main {
                status_subresource: false,
            } => {}
            Scope::Status => m.retain(|k, _| k == "status"),
        }
    }
    v
}

impl FieldSet {
    /// The fields set by an (already scoped) applied configuration.
    pub(crate) fn of(v: &Value) -> Self {
        let mut path = Vec::new();
        collect(v, &mut path)
    }

    fn is_leaf(&self) -> bool {
        self.0.is_empty()
    }

    /// All paths that end at a leaf.
    fn leaves(&self) -> Vec<Vec<String>> {
        fn walk(fs: &FieldSet, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            for (k, child) in &fs.0 {
                path.push(k.clone());
                if child.is_leaf() {
                    out.push(path.clone());
                } else {
                    walk(child, path, out);
                }
                path.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// Whether this set owns anything at, above or below `path`.
    fn overlaps(&self, path: &[String]) -> bool {
        let mut node = self;
        for elem in path {
            match node.0.get(elem) {
                None => return false,
                Some(child) if child.is_leaf() => return true,
                Some(child) => node = child,
            }
        }
        true
    }

    /// Drop ownership of `path` (and everything below it; an owning ancestor is dropped too).
    fn release(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let remove = match self.0.get_mut(first) {
            None => false,
            Some(child) if child.is_leaf() || rest.is_empty() => true,
            Some(child) => {
                child.release(rest);
                child.is_leaf()
            }
        };
        if remove {
            self.0.remove(first);
        }
    }
}

fn collect(v: &Value, path: &mut Vec<String>) -> FieldSet {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = v {
        for (k, cv) in m {
            if cv.is_null() {
                continue;
            }
            path.push(format!("f:{k}"));
            let child = match (cv, list_type(path)) {
                (Value::Array(items), ListType::Set) => FieldSet(
                    items
                        .iter()
                        .map(|i| (format!("v:{i}"), FieldSet::default()))
                        .collect(),
                ),
                (Value::Array(items), ListType::Map(key)) => {
                    let mut children = BTreeMap::new();
                    for item in items {
                        if let Some(kv) = item.get(key).and_then(Value::as_str) {
                            let elem = format!("k:{kv}");
                            path.push(elem.clone());
                            children.insert(elem, collect(item, path));
                            path.pop();
                        }
                    }
                    FieldSet(children)
                }
                _ => collect(cv, path),
            };
            out.insert(format!("f:{k}"), child);
            path.pop();
        }
    }
    FieldSet(out)
}

/// Navigate to `path` in `v`.
fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for (i, elem) in path.iter().enumerate() {
        cur = step(cur, &path[..i], elem)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, parent: &[String], elem: &str) -> Option<&'a Value> {
    if let Some(f) = elem.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = elem.strip_prefix("k:") {
        let ListType::Map(key) = list_type(parent) else {
            return None;
        };
        return items
            .iter()
            .find(|i| i.get(key).and_then(Value::as_str) == Some(k));
    }
    if let Some(j) = elem.strip_prefix("v:") {
        let want: Value = serde_json::from_str(j).ok()?;
        return items.iter().find(|i| **i == want);
    }
    None
}

/// Remove the value at `path`; objects left empty along the way are removed too.
fn remove_at(v: &mut Value, path: &[String]) {
    fn rec(cur: &mut Value, parent: &mut Vec<String>, rest: &[String]) {
        let Some((elem, tail)) = rest.split_first() else {
            return;
        };
        if tail.is_empty() {
            if let Some(f) = elem.strip_prefix("f:") {
                if let Value::Object(m) = cur {
                    m.remove(f);
                }
            } else if let Value::Array(items) = cur {
                let lt = list_type(parent);
                if let (Some(k), ListType::Map(key)) = (elem.strip_prefix("k:"), lt) {
                    items.retain(|i| i.get(key).and_then(Value::as_str) != Some(k));
                } else if let Some(j) = elem.strip_prefix("v:")
                    && let Ok(want) = serde_json::from_str::<Value>(j)
                {
                    items.retain(|i| *i != want);
                }
            }
            return;
        }
        // Descend.
        let child: Option<&mut Value> = if let Some(f) = elem.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let (Some(k), ListType::Map(key), Value::Array(items)) =
            (elem.strip_prefix("k:"), list_type(parent), &mut *cur)
        {
            items
                .iter_mut()
                .find(|i| i.get(key).and_then(Value::as_str) == Some(k))
        } else {
            None
        };
        let Some(child) = child else {
            return;
        };
        parent.push(elem.clone());
        rec(child, parent, tail);
        parent.pop();
        let empty = matches!(child, Value::Object(m) if m.is_empty())
            || matches!(child, Value::Array(a) if a.is_empty());
        if empty && let (Some(f), Value::Object(m)) = (elem.strip_prefix("f:"), cur) {
            m.remove(f);
        }
    }
    rec(v, &mut Vec::new(), path);
}

/// Merge an applied (scoped) configuration into `dst`.
fn merge(dst: &mut Value, src: &Value, path: &mut Vec<String>) {
    let Value::Object(src) = src else {
        *dst = src.clone();
        return;
    };
    if !dst.is_object() {
        *dst = Value::Object(Map::new());
    }
    let Value::Object(d) = dst else {
        return;
    };
    for (k, sv) in src {
        if sv.is_null() {
            continue;
        }
        path.push(format!("f:{k}"));
        match (sv, list_type(path)) {
            (Value::Object(sm), _) => {
                let entry = d
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if sm.is_empty() {
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                } else {
                    merge(entry, sv, path);
                }
            }
            (Value::Array(items), ListType::Set) => {
                let entry = d
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(existing) = entry {
                    for i in items {
                        if !existing.contains(i) {
                            existing.push(i.clone());
                        }
                    }
                } else {
                    *entry = sv.clone();
                }
            }
            (Value::Array(items), ListType::Map(key)) => {
                let entry = d
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(existing) = entry {
                    for i in items {
                        let kv = i.get(key);
                        match existing
                            .iter_mut()
                            .find(|e| e.get(key) == kv && kv.is_some())
                        {
                            Some(e) => *e = i.clone(),
                            None => existing.push(i.clone()),
                        }
                    }
                } else {
                    *entry = sv.clone();
                }
            }
            _ => {
                d.insert(k.clone(), sv.clone());
            }
        }
        path.pop();
    }
}

/// One field owned by another manager that an apply would change.
#[derive(Clone, Debug)]
pub(crate) struct Conflict {
    pub manager: String,
    pub field: String,
}

/// Render a field path as `.spec.replicas` / `.metadata.ownerReferences[uid=x]`.
fn render(path: &[String]) -> String {
    let mut s = String::new();
    for e in path {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            s.push_str(&format!("[{k}]"));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

/// Apply `applied` (already scoped with [`scoped`]) for `manager_key` onto `existing`.
///
/// Returns the merged object (system metadata untouched; callers restore it) or the conflicts
/// when `force` is false. On success, `managed` is updated.
pub(crate) fn apply(
    existing: Option<&Value>,
    applied: &Value,
    manager_key: &str,
    force: bool,
    managed: &mut Managed,
) -> Result<Value, Vec<Conflict>> {
    let new_set = FieldSet::of(applied);
    let new_leaves = new_set.leaves();
    let empty = Value::Null;
    let old = existing.unwrap_or(&empty);

    // Conflicts with other managers.
    let mut conflicts = Vec::new();
    for (m, set) in managed.iter_mut() {
        if manager_name(m) == manager_name(manager_key) {
            continue;
        }
        for p in &new_leaves {
            if set.overlaps(p) && get_at(old, p) != get_at(applied, p) {
                if force {
                    set.release(p);
                } else {
                    conflicts.push(Conflict {
                        manager: manager_name(m).to_string(),
                        field: render(p),
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    managed.retain(|_, s| !s.is_leaf());

    let mut obj = existing
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    merge(&mut obj, applied, &mut Vec::new());

    // Fields this manager applied before and no longer applies.
    if let Some(prev) = managed.get(manager_key) {
        for p in prev.leaves() {
            if new_set.overlaps(&p) {
                continue;
            }
            let owned_elsewhere = managed
                .iter()
                .any(|(m, s)| m != manager_key && s.overlaps(&p));
            if !owned_elsewhere {
                remove_at(&mut obj, &p);
            }
        }
    }
    if new_set.is_leaf() {
        managed.remove(manager_key);
    } else {
        managed.insert(manager_key.to_string(), new_set);
    }
    Ok(obj)
}

/// Paths whose value `new` sets differently from `old` (added or changed leaves; removals
/// are handled by [`prune`]).
fn changed_leaves(
    old: Option<&Value>,
    new: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    if old == Some(new) {
        return;
    }
    let empty = Map::new();
    match new {
        Value::Object(nm) if !nm.is_empty() => {
            let om = old.and_then(Value::as_object).unwrap_or(&empty);
            for (k, nv) in nm {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.len() == 1 && path[0] == "f:metadata" && SYSTEM_META.contains(&k.as_str()) {
                    continue;
                }
                path.push(format!("f:{k}"));
                changed_leaves(om.get(k), nv, path, out);
                path.pop();
            }
        }
        Value::Array(items) if list_type(path) != ListType::Atomic => {
            let old_items = old.and_then(Value::as_array);
            for item in items {
                let elem = match list_type(path) {
                    ListType::Set => format!("v:{item}"),
                    ListType::Map(key) => match item.get(key).and_then(Value::as_str) {
                        Some(k) => format!("k:{k}"),
                        None => continue,
                    },
                    ListType::Atomic => continue,
                };
                let before = old_items.and(old).and_then(|o| step(o, path, &elem));
                if before != Some(item) {
                    path.push(elem);
                    out.push(path.clone());
                    path.pop();
                }
            }
        }
        _ => out.push(path.clone()),
    }
}

impl FieldSet {
    fn insert_leaf(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            self.0.insert(first.clone(), FieldSet::default());
            return;
        }
        match self.0.get_mut(first) {
            // Already owns the whole subtree.
            Some(child) if child.is_leaf() => {}
            Some(child) => child.insert_leaf(rest),
            None => {
                let mut child = FieldSet::default();
                child.insert_leaf(rest);
                self.0.insert(first.clone(), child);
            }
        }
    }

    /// Drop paths that do not exist in `v`. Returns whether anything is left.
    fn prune(&mut self, v: &Value, path: &mut Vec<String>) -> bool {
        self.0.retain(|elem, child| {
            let Some(sub) = step(v, path, elem) else {
                return false;
            };
            if child.is_leaf() {
                return true;
            }
            path.push(elem.clone());
            let keep = child.prune(sub, path);
            path.pop();
            keep
        });
        !self.0.is_empty()
    }
}

/// A write other than apply by `manager_key` took ownership of the fields it changed.
pub(crate) fn record_update(
    managed: &mut Managed,
    old: Option<&Value>,
    new: &Value,
    manager_key: &str,
) {
    let mut changed = Vec::new();
    changed_leaves(old, new, &mut Vec::new(), &mut changed);
    if changed.is_empty() {
        return;
    }
    for (m, set) in managed.iter_mut() {
        if m != manager_key {
            for p in &changed {
                set.release(p);
            }
        }
    }
    let entry = managed.entry(manager_key.to_string()).or_default();
    for p in &changed {
        entry.insert_leaf(p);
    }
    managed.retain(|_, s| !s.is_leaf());
}

/// Nobody owns fields that no longer exist.
pub(crate) fn prune(managed: &mut Managed, obj: &Value) {
    managed.retain(|_, s| s.prune(obj, &mut Vec::new()));
}

/// Format conflicts like the API server does.
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        lines.join("; ")
    )
}

#[cfg(test)]
mod tests;
