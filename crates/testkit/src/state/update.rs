//! Updates: finishing a write to an existing object.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    ObjKey, Ownership, RESTORED_META, State, finalizers, meta, meta_mut, meta_str, spec_eq,
    stored_managed,
};
use crate::apply::{self, strip_nulls};
use crate::error::ApiError;

impl State {
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
