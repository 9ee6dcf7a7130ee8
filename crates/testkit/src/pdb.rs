//! PodDisruptionBudgets: the budget arithmetic shared by eviction and by the status the
//! disruption controller would maintain.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::selector::LabelSelector;
use crate::state::{ObjKey, Ownership, State, meta_str, now_rfc3339};

/// Whether a pod reports condition Ready=True.
pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Resolve an IntOrString against `total` (percentages round up).
fn int_or_percent(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p.trim().parse::<i64>().ok().map(|p| (p * total + 99) / 100),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// The numbers of one budget.
pub(crate) struct Budget {
    /// Pods selected and not terminating.
    pub expected: i64,
    /// Of those, Ready ones.
    pub healthy: i64,
    /// How many must stay healthy.
    pub desired: i64,
    /// Why the disruption controller could not compute the budget (`SyncFailed`): it then
    /// allows no disruption at all.
    pub sync_error: Option<String>,
}

impl Budget {
    pub fn disruptions_allowed(&self) -> i64 {
        if self.sync_error.is_some() {
            return 0;
        }
        (self.healthy - self.desired).max(0)
    }
}

/// Kinds whose scale the disruption controller finds without discovery (its built-in
/// finders): `(group, kind)`.
const BUILT_IN_SCALES: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("", "ReplicationController"),
];

fn selector(pdb: &Value) -> Option<LabelSelector> {
    pdb.pointer("/spec/selector")
        .and_then(LabelSelector::from_json)
}

fn in_namespace<'a>(
    st: &'a State,
    kind: usize,
    ns: &str,
) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
    let ns = ns.to_string();
    st.kinds[kind]
        .objects
        .range((ns.clone(), String::new())..)
        .take_while(move |((n, _), _)| *n == ns)
        .map(|(_, s)| &s.obj)
}

/// The uid and desired replicas of a pod's controller, as the disruption controller finds
/// them for a budget that needs the owner's scale (`maxUnavailable` or a percentage
/// `minAvailable`). A custom resource's scale is found through discovery: a kind that is not
/// in [`State::disruption_known`] yet (its CRD is younger than the controller's discovery
/// cache, about 30 s on a real cluster: every fresh install) fails with the real message.
fn controller_replicas(st: &State, pod: &Value) -> Result<(String, i64), String> {
    let pod_name = meta_str(pod, "name").unwrap_or_default();
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
        .ok_or_else(|| format!("found no controller ref for pod {pod_name:?}"))?;
    let api_version = owner
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind_name = owner
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let known = BUILT_IN_SCALES.contains(&(group, kind_name))
        || st
            .disruption_known
            .contains(&(group.to_string(), kind_name.to_string()));
    if !known {
        return Err(format!(
            "no matches for kind {kind_name:?} in version {api_version:?}"
        ));
    }
    let not_found = || format!("found no controllers for pod {pod_name:?}");
    let uid = owner
        .get("uid")
        .and_then(Value::as_str)
        .ok_or_else(not_found)?;
    let (kind, key) = st.by_uid(uid).ok_or_else(not_found)?;
    let scale = st.kinds[kind].info.scale.as_ref().ok_or_else(not_found)?;
    let obj = &st.get(kind, &key).ok_or_else(not_found)?.obj;
    let replicas = scale
        .spec_replicas_path
        .iter()
        .try_fold(&**obj, |cur, p| cur.get(p))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    Ok((uid.to_string(), replicas))
}

/// Budgets in `ns` whose selector matches `labels`.
pub(crate) fn matching(st: &State, ns: &str, labels: Option<&Value>) -> Vec<Arc<Value>> {
    let Some(k) = st.kind_index("policy", "poddisruptionbudgets") else {
        return Vec::new();
    };
    in_namespace(st, k, ns)
        .filter(|pdb| selector(pdb).is_some_and(|s| s.matches(labels)))
        .cloned()
        .collect()
}

/// Compute a budget from the pods currently in its namespace, as the disruption controller
/// does: an integer `minAvailable` counts the selected pods; `maxUnavailable` and a
/// percentage `minAvailable` need each pod's controller and its scale (see
/// [`controller_replicas`]) and fail the whole budget when one cannot be found.
pub(crate) fn budget(st: &State, ns: &str, pdb: &Value) -> Budget {
    let sel = selector(pdb);
    let min = pdb.pointer("/spec/minAvailable");
    let max = pdb.pointer("/spec/maxUnavailable");
    let needs_scale = max.is_some() || min.is_some_and(Value::is_string);
    let (mut selected, mut healthy) = (0, 0);
    let mut controllers: BTreeMap<String, i64> = BTreeMap::new();
    let mut sync_error = None;
    if let (Some(k), Some(sel)) = (st.kind_index("", "pods"), sel) {
        for p in in_namespace(st, k, ns) {
            if !sel.matches(p.pointer("/metadata/labels")) {
                continue;
            }
            let terminating = meta_str(p, "deletionTimestamp").is_some();
            if !terminating {
                selected += 1;
                if pod_ready(p) {
                    healthy += 1;
                }
            }
            if needs_scale && sync_error.is_none() {
                match controller_replicas(st, p) {
                    Ok((uid, replicas)) => {
                        controllers.insert(uid, replicas);
                    }
                    Err(e) => sync_error = Some(e),
                }
            }
        }
    }
    let expected = if needs_scale {
        controllers.values().sum::<i64>()
    } else {
        selected
    };
    let desired = if let Some(min) = min {
        int_or_percent(min, expected).unwrap_or(expected)
    } else if let Some(max) = max {
        (expected - int_or_percent(max, expected).unwrap_or(0)).max(0)
    } else {
        1
    };
    Budget {
        expected,
        healthy,
        desired,
        sync_error,
    }
}

/// Bring the status of budgets in namespaces where pods or budgets changed up to date, as
/// the disruption controller does.
pub(crate) fn refresh(st: &mut State) {
    if st.pdb_dirty.is_empty() {
        return;
    }
    let dirty = std::mem::take(&mut st.pdb_dirty);
    let Some(k) = st.kind_index("policy", "poddisruptionbudgets") else {
        return;
    };
    for ns in dirty {
        let pdbs: Vec<(ObjKey, Arc<Value>)> = in_namespace(st, k, &ns)
            .map(|o| {
                (
                    (
                        ns.clone(),
                        meta_str(o, "name").unwrap_or_default().to_string(),
                    ),
                    o.clone(),
                )
            })
            .collect();
        for (key, pdb) in pdbs {
            if meta_str(&pdb, "deletionTimestamp").is_some() {
                continue;
            }
            let b = budget(st, &ns, &pdb);
            let allowed = b.disruptions_allowed();
            let generation = pdb
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            let old_status = pdb.get("status").cloned().unwrap_or(Value::Null);
            let (reason, cstatus, message) = match &b.sync_error {
                Some(e) => ("SyncFailed", "False", e.clone()),
                None if allowed > 0 => ("SufficientPods", "True", String::new()),
                None => ("InsufficientPods", "False", String::new()),
            };
            let old_cond = old_status
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed")
                    })
                })
                .cloned();
            let since = match &old_cond {
                Some(c) if c.get("status").and_then(Value::as_str) == Some(cstatus) => c
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or(json!(now_rfc3339())),
                _ => json!(now_rfc3339()),
            };
            // A failed sync keeps the counts of the last good one (zero on a new budget).
            let count = |field: &str, fresh: i64| {
                if b.sync_error.is_some() {
                    old_status.get(field).cloned().unwrap_or(json!(0))
                } else {
                    json!(fresh)
                }
            };
            let status = json!({
                "observedGeneration": generation,
                "disruptionsAllowed": allowed,
                "currentHealthy": count("currentHealthy", b.healthy),
                "desiredHealthy": count("desiredHealthy", b.desired),
                "expectedPods": count("expectedPods", b.expected),
                "conditions": [{
                    "type": "DisruptionAllowed",
                    "status": cstatus,
                    "reason": reason,
                    "message": message,
                    "observedGeneration": generation,
                    "lastTransitionTime": since,
                }],
            });
            if status == old_status {
                continue;
            }
            let mut new = (*pdb).clone();
            new["status"] = status;
            let _ = st.commit_update(k, &key, new, Ownership::System, false);
        }
    }
    st.pdb_dirty.clear();
}
