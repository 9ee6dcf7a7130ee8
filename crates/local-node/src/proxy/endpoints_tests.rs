use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;

fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some([("app".to_string(), "pg".to_string())].into()),
            deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("primary".into()),
                    container_port: 9999,
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn service(name: &str, ip: &str, selector: bool, target: Option<IntOrString>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            selector: selector.then(|| [("app".to_string(), "pg".to_string())].into()),
            ports: Some(vec![ServicePort {
                name: Some("primary".into()),
                port: 5432,
                target_port: target,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn slice(service: &str, eps: &[(&str, Option<bool>, Option<bool>)]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-x")),
            namespace: Some("ns".into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(ip, ready, terminating)| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    terminating: *terminating,
                    serving: None,
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("primary".into()),
            port: Some(15432),
            ..EndpointPort::default()
        }]),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn selector_services_route_to_ready_pods_that_are_not_terminating() {
    let svc = service(
        "pg",
        "10.96.0.1",
        true,
        Some(IntOrString::String("primary".into())),
    );
    let pods = [
        pod("a", "10.244.0.2", true, false),
        pod("b", "10.244.0.3", false, false),
        pod("c", "10.244.0.4", true, true),
        pod("d", "10.244.0.5", true, false),
    ];
    let t = table(&[svc], &pods, &[]);
    assert_eq!(
        t[&addr("10.96.0.1:5432")],
        [addr("10.244.0.2:9999"), addr("10.244.0.5:9999")]
    );
}

#[test]
fn target_port_defaults_to_the_port_and_other_namespaces_are_ignored() {
    let svc = service("pg", "10.96.0.1", true, None);
    let mut other = pod("x", "10.244.0.9", true, false);
    other.metadata.namespace = Some("elsewhere".into());
    let t = table(&[svc], &[pod("a", "10.244.0.2", true, false), other], &[]);
    assert_eq!(t[&addr("10.96.0.1:5432")], [addr("10.244.0.2:5432")]);
}

#[test]
fn selectorless_services_route_to_ready_slice_endpoints_on_the_named_port() {
    let svc = service("backend", "10.96.0.2", false, None);
    let slices = [
        slice(
            "backend",
            &[
                ("127.0.0.1", None, None),
                ("127.0.0.2", Some(false), None),
                ("127.0.0.3", Some(true), Some(true)),
            ],
        ),
        slice("other", &[("127.0.0.9", None, None)]),
    ];
    let t = table(&[svc], &[pod("a", "10.244.0.2", true, false)], &slices);
    assert_eq!(t[&addr("10.96.0.2:5432")], [addr("127.0.0.1:15432")]);
}

#[test]
fn headless_and_external_name_services_get_no_frontend() {
    let headless = service("h", "None", true, None);
    let mut ext = service("e", "10.96.0.7", true, None);
    ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    assert!(table(&[headless, ext], &[], &[]).is_empty());
}

#[test]
fn changes_take_effect_after_the_propagation_delay() {
    let delay = Duration::from_secs(1);
    let t0 = Instant::now();
    let one = Table::from([(addr("10.96.0.1:1"), vec![addr("10.244.0.2:1")])]);
    let none = Table::from([(addr("10.96.0.1:1"), vec![])]);
    let mut d = Delayed::new(delay);
    d.observe(t0, one.clone());
    assert_eq!(d.effective(t0), one, "the first table applies at once");
    d.observe(t0 + Duration::from_millis(100), none.clone());
    assert_eq!(d.effective(t0 + Duration::from_millis(500)), one);
    assert_eq!(d.effective(t0 + Duration::from_millis(1099)), one);
    assert_eq!(d.effective(t0 + Duration::from_millis(1100)), none);
    // a flap shorter than the delay is still applied in order
    d.observe(t0 + Duration::from_millis(2000), one.clone());
    d.observe(t0 + Duration::from_millis(2200), none.clone());
    assert_eq!(d.effective(t0 + Duration::from_millis(3000)), one);
    assert_eq!(d.effective(t0 + Duration::from_millis(3200)), none);
}
