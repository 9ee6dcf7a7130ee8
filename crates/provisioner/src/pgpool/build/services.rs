//! The Services: `<name>` for clients, the headless `<name>-pods` that governs the PetSet,
//! and `<name>-stats` for the exporter when monitoring.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgpool_api::pgpool::{MonitorAgent, NamedServiceTemplateSpec, ServiceAlias, ServiceType};
use pgpool_api::{Pgpool, names};

use super::common::{LABEL_ROLE, meta, some_map};
use crate::pgpool::validate::Plan;

pub(super) fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

pub(super) fn service_template(
    pgpool: &Pgpool,
    alias: ServiceAlias,
) -> Option<&NamedServiceTemplateSpec> {
    pgpool
        .spec
        .service_templates
        .iter()
        .find(|t| t.alias == alias)
}

/// Applies `spec.serviceTemplates[alias]` to a Service.
pub(super) fn apply_service_template(
    service: &mut Service,
    template: Option<&NamedServiceTemplateSpec>,
) {
    let Some(template) = template else { return };
    if let Some(m) = &template.metadata {
        let mut labels = m.labels.clone();
        // ours win: the selector and the owner's bookkeeping depend on them
        labels.extend(service.metadata.labels.take().unwrap_or_default());
        service.metadata.labels = some_map(labels);
        let mut annotations = service.metadata.annotations.take().unwrap_or_default();
        annotations.extend(m.annotations.clone());
        service.metadata.annotations = some_map(annotations);
    }
    let (Some(o), Some(spec)) = (&template.spec, service.spec.as_mut()) else {
        return;
    };
    if let Some(t) = o.type_ {
        spec.type_ = Some(
            match t {
                ServiceType::ClusterIP => "ClusterIP",
                ServiceType::NodePort => "NodePort",
                ServiceType::LoadBalancer => "LoadBalancer",
            }
            .into(),
        );
    }
    for p in &o.ports {
        if let Some(sp) = spec
            .ports
            .iter_mut()
            .flatten()
            .find(|sp| sp.name.as_deref() == Some(p.name.as_str()))
        {
            if let Some(port) = p.port {
                sp.port = port;
            }
            if p.node_port.is_some() {
                sp.node_port = p.node_port;
            }
        }
    }
    if o.cluster_ip.is_some() {
        spec.cluster_ip = o.cluster_ip.clone();
    }
    if !o.external_ips.is_empty() {
        spec.external_ips = Some(o.external_ips.clone());
    }
    if o.load_balancer_ip.is_some() {
        spec.load_balancer_ip = o.load_balancer_ip.clone();
    }
    if !o.load_balancer_source_ranges.is_empty() {
        spec.load_balancer_source_ranges = Some(o.load_balancer_source_ranges.clone());
    }
    if o.external_traffic_policy.is_some() {
        spec.external_traffic_policy = o.external_traffic_policy.clone();
    }
    if o.session_affinity.is_some() {
        spec.session_affinity = o.session_affinity.clone();
    }
}

/// `<name>`: the client Service (ports `primary` 9999, `pcp` 9595).
pub fn primary_service(pgpool: &Pgpool, plan: &Plan) -> Service {
    let mut service = Service {
        metadata: meta(plan, names::primary_service(&plan.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(&plan.name)),
            ports: Some(vec![
                port(names::PORT_NAME_PRIMARY, names::PORT_PRIMARY),
                port(names::PORT_NAME_PCP, names::PORT_PCP),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    apply_service_template(
        &mut service,
        service_template(pgpool, ServiceAlias::Primary),
    );
    service
}

/// `<name>-pods`: the headless governing Service; not-ready pods are published so that the
/// pods' DNS names exist from the start.
pub fn pods_service(plan: &Plan) -> Service {
    Service {
        metadata: meta(plan, names::pods_service(&plan.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::selector(&plan.name)),
            ports: Some(vec![port(names::PORT_NAME_PRIMARY, names::PORT_PRIMARY)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The exporter's port: `spec.monitor.prometheus.exporter.port`, default 9719.
pub fn exporter_port(pgpool: &Pgpool) -> i32 {
    pgpool
        .spec
        .monitor
        .as_ref()
        .and_then(|m| m.prometheus.as_ref())
        .and_then(|p| p.exporter.as_ref())
        .and_then(|e| e.port)
        .unwrap_or(names::PORT_METRICS)
}

/// `<name>-stats`: the exporter's Service, only with `spec.monitor`.
pub fn stats_service(pgpool: &Pgpool, plan: &Plan) -> Option<Service> {
    let monitor = pgpool.spec.monitor.as_ref()?;
    let metrics_port = exporter_port(pgpool);
    let mut metadata = meta(plan, names::stats_service(&plan.name));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(LABEL_ROLE.into(), "stats".into());
    }
    if matches!(
        monitor.agent,
        Some(MonitorAgent::PrometheusBuiltin | MonitorAgent::Prometheus)
    ) {
        metadata.annotations = Some(BTreeMap::from([
            ("prometheus.io/scrape".to_string(), "true".to_string()),
            ("prometheus.io/port".to_string(), metrics_port.to_string()),
            ("prometheus.io/path".to_string(), "/metrics".to_string()),
        ]));
    }
    let mut service = Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(&plan.name)),
            ports: Some(vec![port(names::PORT_NAME_METRICS, metrics_port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    apply_service_template(&mut service, service_template(pgpool, ServiceAlias::Stats));
    Some(service)
}
