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
}

impl Budget {
    pub fn disruptions_allowed(&self) -> i64 {
        (self.healthy - self.desired).max(0)
    }
}

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

/// The uid and desired replicas of a pod's controller, if it has a scale subresource.
fn controller_replicas(st: &State, pod: &Value) -> Option<(String, i64)> {
    let refs = pod.pointer("/metadata/ownerReferences")?.as_array()?;
    let owner = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    let uid = owner.get("uid")?.as_str()?;
    let (kind, key) = st.by_uid(uid)?;
    let scale = st.kinds[kind].info.scale.as_ref()?;
    let obj = &st.get(kind, &key)?.obj;
    let replicas = scale
        .spec_replicas_path
        .iter()
        .try_fold(&**obj, |cur, p| cur.get(p))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    Some((uid.to_string(), replicas))
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

/// Compute a budget from the pods currently in its namespace.
pub(crate) fn budget(st: &State, ns: &str, pdb: &Value) -> Budget {
    let sel = selector(pdb);
    let (mut expected, mut healthy) = (0, 0);
    // Like the disruption controller: pods of a controller with a scale subresource count as
    // that controller's replicas; other pods count as themselves.
    let mut controllers: BTreeMap<String, i64> = BTreeMap::new();
    if let (Some(k), Some(sel)) = (st.kind_index("", "pods"), sel) {
        for p in in_namespace(st, k, ns) {
            if !sel.matches(p.pointer("/metadata/labels")) {
                continue;
            }
            match controller_replicas(st, p) {
                Some((uid, replicas)) => {
                    controllers.insert(uid, replicas);
                }
                None if meta_str(p, "deletionTimestamp").is_none() => expected += 1,
                None => {}
            }
            if meta_str(p, "deletionTimestamp").is_none() && pod_ready(p) {
                healthy += 1;
            }
        }
    }
    expected += controllers.values().sum::<i64>();
    let desired = if let Some(min) = pdb.pointer("/spec/minAvailable") {
        int_or_percent(min, expected).unwrap_or(expected)
    } else if let Some(max) = pdb.pointer("/spec/maxUnavailable") {
        (expected - int_or_percent(max, expected).unwrap_or(0)).max(0)
    } else {
        1
    };
    Budget {
        expected,
        healthy,
        desired,
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
            let (reason, cstatus) = if allowed > 0 {
                ("SufficientPods", "True")
            } else {
                ("InsufficientPods", "False")
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
            let status = json!({
                "observedGeneration": generation,
                "disruptionsAllowed": allowed,
                "currentHealthy": b.healthy,
                "desiredHealthy": b.desired,
                "expectedPods": b.expected,
                "conditions": [{
                    "type": "DisruptionAllowed",
                    "status": cstatus,
                    "reason": reason,
                    "message": "",
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
