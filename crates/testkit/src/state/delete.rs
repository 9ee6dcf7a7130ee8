//! Deletion: finalizers, graceful pod termination, propagation policies, owner-reference
//! garbage collection and namespace teardown.

use serde_json::{Value, json};
use std::sync::Arc;

use super::{
    DeleteOpts, DeleteOutcome, Event, EventType, GcItem, ObjKey, State, finalizers, meta, meta_mut,
    meta_str, now_rfc3339, owner_uids, set_finalizers,
};
use crate::error::ApiError;

impl State {
    /// Remove a stored object (DELETED) and garbage-collect its dependents.
    pub(super) fn remove(
        &mut self,
        kind: usize,
        key: &ObjKey,
        last: Option<Value>,
    ) -> Option<Arc<Value>> {
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
}
