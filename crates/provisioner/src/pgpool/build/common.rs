//! What the builders of every child share: metadata and labels, Secret keys, volume names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pgpool_api::names;

use crate::pgpool::validate::Plan;

/// Config Secret key with the database user the exporter logs in as (monitoring only; not
/// mounted into the pgpool container).
pub const KEY_MONITOR_USERNAME: &str = "monitor-username";
/// Config Secret key with that user's password (monitoring only).
pub const KEY_MONITOR_PASSWORD: &str = "monitor-password";
/// Label that tells the stats Service apart from the client Service.
pub const LABEL_ROLE: &str = "kubedb.com/role";

/// Volume names (reserved in the Pgpool CRD).
pub(super) const VOLUME_CONFIG: &str = "pgpool-config";
pub(super) const VOLUME_RUN: &str = "pgpool-run";
pub(super) const VOLUME_KEY: &str = "pgpool-key";
pub(super) const VOLUME_TMP: &str = "tmp";

pub(super) fn meta(plan: &Plan, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(names::labels(&plan.name)),
        owner_references: Some(vec![plan.owner.clone()]),
        ..ObjectMeta::default()
    }
}

pub(super) fn some_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

pub(super) fn some_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}
