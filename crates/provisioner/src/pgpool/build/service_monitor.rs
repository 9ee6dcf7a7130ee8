//! The `<name>-stats` ServiceMonitor (Prometheus operator), when wanted and its API exists.

use kube::api::DynamicObject;
use pgpool_api::{Pgpool, names};
use serde_json::json;

use super::common::{LABEL_ROLE, meta};
use crate::pgpool::validate::Plan;

/// `<name>-stats` ServiceMonitor, when the plan has its API (wanted, CRD installed).
pub fn service_monitor(pgpool: &Pgpool, plan: &Plan) -> Option<DynamicObject> {
    let api = plan.service_monitor.as_ref()?;
    let sm = pgpool
        .spec
        .monitor
        .as_ref()
        .and_then(|m| m.prometheus.as_ref())
        .and_then(|p| p.service_monitor.as_ref());
    let mut metadata = meta(plan, names::stats_service(&plan.name));
    if let (Some(labels), Some(sm)) = (metadata.labels.as_mut(), sm) {
        for (k, v) in &sm.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let mut endpoint = json!({"port": names::PORT_NAME_METRICS, "path": "/metrics"});
    if let Some(interval) = sm.and_then(|s| s.interval.clone()) {
        endpoint["interval"] = json!(interval);
    }
    let mut selector = names::selector(&plan.name);
    selector.insert(LABEL_ROLE.into(), "stats".into());
    let mut object = DynamicObject::new(&names::stats_service(&plan.name), api);
    object.metadata = metadata;
    object.data = json!({
        "spec": {
            "namespaceSelector": {"matchNames": [plan.namespace]},
            "selector": {"matchLabels": selector},
            "endpoints": [endpoint],
        }
    });
    Some(object)
}
