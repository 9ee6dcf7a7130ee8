//! Build (pure): the desired children of a Pgpool from its spec and a validated [`Plan`]
//! (DESIGN.md §4), one file per child object; this module assembles the desired set.

pub mod common;
pub mod containers;
pub mod pdb;
pub mod petset;
pub mod secrets;
pub mod service_monitor;
pub mod services;
pub mod tls_secrets;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use pgpool_api::{PetSet, Pgpool};

use crate::pgpool::validate::Plan;

pub use common::{KEY_MONITOR_PASSWORD, KEY_MONITOR_USERNAME, LABEL_ROLE};
pub use containers::{
    PRE_STOP_SLEEP_SECONDS, default_pgpool_resources, liveness_command, pre_stop_command,
};
pub use pdb::pdb;
pub use petset::{petset, pod_template};
pub use secrets::{auth_secret, config_secret};
pub use service_monitor::service_monitor;
pub use services::{exporter_port, pods_service, primary_service, stats_service};

/// All desired children.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The auth Secret, when the provisioner manages it.
    pub auth_secret: Option<Secret>,
    /// `<name>-config`.
    pub config_secret: Secret,
    /// `<name>`.
    pub primary_service: Service,
    /// `<name>-pods`.
    pub pods_service: Service,
    /// `<name>-stats`, when monitoring.
    pub stats_service: Option<Service>,
    /// `<name>`.
    pub petset: PetSet,
    /// `<name>`, when replicas > 1.
    pub pdb: Option<PodDisruptionBudget>,
    /// `<name>-stats`, when wanted and possible.
    pub service_monitor: Option<DynamicObject>,
    /// The built-in CA's Secrets.
    pub tls_secrets: Vec<Secret>,
    /// cert-manager Certificates.
    pub certificates: Vec<DynamicObject>,
}

/// Builds every child.
pub fn build(pgpool: &Pgpool, plan: &Plan) -> Desired {
    Desired {
        auth_secret: auth_secret(plan),
        config_secret: config_secret(pgpool, plan),
        primary_service: primary_service(pgpool, plan),
        pods_service: pods_service(plan),
        stats_service: stats_service(pgpool, plan),
        petset: petset(pgpool, plan),
        pdb: pdb(pgpool, plan),
        service_monitor: service_monitor(pgpool, plan),
        tls_secrets: tls_secrets::tls_secrets(plan),
        certificates: tls_secrets::certificates(plan),
    }
}
