//! Objects the planner's unit tests are built from.

#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::conditions::{self, NewCondition};
use pgpool_api::{Pgpool, PgpoolOpsRequest, PgpoolVersion};
use serde_json::json;

use crate::plan::*;

pub(super) const V453: &str = "ghcr.io/appscode-images/pgpool2:4.5.3";
pub(super) const V460: &str = "ghcr.io/appscode-images/pgpool2:4.6.0";
pub(super) const EXPORTER: &str = pgpool_api::fixtures::EXPORTER_IMAGE;

pub(super) fn version(name: &str, allow: &str, deprecated: bool) -> PgpoolVersion {
    let mut v = pgpool_api::fixtures::pgpool_version(name, allow);
    v.spec.deprecated = Some(deprecated);
    v
}

pub(super) fn pgpool(version: &str, phase: &str, halted: bool) -> Pgpool {
    serde_json::from_value(json!({
        "apiVersion": "kubedb.com/v1alpha2",
        "kind": "Pgpool",
        "metadata": {"name": "pp", "namespace": "demo"},
        "spec": {"version": version, "postgresRef": {"name": "pg"}, "halted": halted},
        "status": {"phase": phase}
    }))
    .unwrap()
}

pub(super) fn request(
    name: &str,
    type_: &str,
    target: &str,
    created: i64,
    phase: Option<&str>,
) -> PgpoolOpsRequest {
    let mut v = json!({
        "apiVersion": "ops.kubedb.com/v1alpha1",
        "kind": "PgpoolOpsRequest",
        "metadata": {
            "name": name,
            "namespace": "demo",
            "creationTimestamp": Utc.timestamp_opt(1_700_000_000 + created, 0).unwrap().to_rfc3339(),
        },
        "spec": {"type": type_, "databaseRef": {"name": "pp"}, "updateVersion": {"targetVersion": target}}
    });
    if let Some(p) = phase {
        v["status"] = json!({"phase": p});
    }
    serde_json::from_value(v).unwrap()
}

pub(super) fn update(target: &str) -> PgpoolOpsRequest {
    request("r", "UpdateVersion", target, 0, None)
}

pub(super) fn pod(uid: &str, image: &str, ready: bool, terminating: bool) -> Pod {
    let mut v = json!({
        "metadata": {"name": "pp-0", "namespace": "demo", "uid": uid},
        "spec": {
            "initContainers": [{"name": "pgpool-init", "image": image}],
            "containers": [
                {"name": "pgpool", "image": image},
                {"name": "exporter", "image": EXPORTER}
            ]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]
        }
    });
    if terminating {
        v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    }
    serde_json::from_value(v).unwrap()
}

pub(super) fn images(pgpool: &str) -> Images {
    Images {
        pgpool: pgpool.into(),
        exporter: Some(EXPORTER.into()),
    }
}

pub(super) fn cond(conds: &mut Vec<Condition>, t: &str, status: &str, message: String) {
    conditions::set(
        conds,
        NewCondition {
            type_: t,
            status,
            reason: "R",
            message,
            observed_generation: None,
        },
        Utc::now(),
    );
}
