//! The PetSet and its pod template: volumes, affinity and `spec.podTemplate` merged over
//! the defaults.

use k8s_openapi::api::core::v1::{
    Affinity, EmptyDirVolumeSource, KeyToPath, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretVolumeSource, Volume,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use pgpool_api::petset::{PetSetUpdateStrategy, PodManagementPolicy, UpdateStrategyType};
use pgpool_api::pgpool::PodSpecOverrides;
use pgpool_api::{PetSet, PetSetSpec, Pgpool, names};

use super::common::{VOLUME_CONFIG, VOLUME_KEY, VOLUME_RUN, VOLUME_TMP, meta, some_map, some_vec};
use super::containers::{
    exporter_container, init_container, merge_pod_security_context, pgpool_container,
};
use crate::pgpool::validate::Plan;
use pgpool_config as config;

/// The PetSet: OnDelete, OrderedReady, governed by `<name>-pods`.
pub fn petset(pgpool: &Pgpool, plan: &Plan) -> PetSet {
    let mut petset = PetSet::new(
        &names::petset(&plan.name),
        PetSetSpec {
            replicas: Some(pgpool.spec.replicas()),
            selector: LabelSelector {
                match_labels: Some(names::selector(&plan.name)),
                ..LabelSelector::default()
            },
            template: pod_template(pgpool, plan),
            service_name: Some(names::pods_service(&plan.name)),
            pod_management_policy: Some(PodManagementPolicy::OrderedReady),
            update_strategy: Some(PetSetUpdateStrategy {
                type_: Some(UpdateStrategyType::OnDelete),
                rolling_update: None,
            }),
            ..PetSetSpec::default()
        },
    );
    petset.metadata = meta(plan, names::petset(&plan.name));
    petset
}

pub(super) fn default_affinity(name: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names::selector(name)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

pub(super) fn volumes(plan: &Plan, overrides: Option<&PodSpecOverrides>) -> Vec<Volume> {
    let mut config_keys = vec![
        config::KEY_PGPOOL_CONF,
        config::KEY_POOL_HBA_CONF,
        config::KEY_PCP_CONF,
        config::KEY_POOL_PASSWD,
        config::KEY_POOL_KEY,
    ];
    if plan.tls.as_ref().is_some_and(|t| t.backend_ca.is_some()) {
        config_keys.push(super::tls_secrets::KEY_BACKEND_CA);
    }
    let config_items = config_keys
        .iter()
        .map(|k| KeyToPath {
            key: k.to_string(),
            path: k.to_string(),
            mode: None,
        })
        .collect();
    let mut out = vec![
        Volume {
            name: VOLUME_CONFIG.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::config_secret(&plan.name)),
                // owner and group (fsGroup) may read
                default_mode: Some(0o440),
                items: Some(config_items),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: VOLUME_RUN.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: VOLUME_KEY.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
            }),
            ..Volume::default()
        },
        Volume {
            name: VOLUME_TMP.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    out.extend(super::tls_secrets::tls_volumes(plan));
    if let Some(o) = overrides {
        out.extend(o.volumes.iter().cloned());
    }
    out
}

/// The pod template of DESIGN.md §4 with `spec.podTemplate` merged over it.
pub fn pod_template(pgpool: &Pgpool, plan: &Plan) -> PodTemplateSpec {
    let template = pgpool.spec.pod_template.as_ref();
    let overrides = template.and_then(|t| t.spec.as_ref());
    let user_meta = template.and_then(|t| t.metadata.as_ref());

    let mut labels = user_meta.map(|m| m.labels.clone()).unwrap_or_default();
    labels.extend(names::labels(&plan.name));
    let mut annotations = user_meta.map(|m| m.annotations.clone()).unwrap_or_default();
    annotations.insert(
        names::ANNOTATION_CONFIG_HASH.into(),
        plan.config_hash.clone(),
    );
    if let Some(hash) = super::tls_secrets::tls_hash(plan) {
        annotations.insert(super::tls_secrets::ANNOTATION_TLS_HASH.into(), hash);
    }

    let mut containers = vec![pgpool_container(pgpool, plan, overrides)];
    if let Some(image) = &plan.exporter_image {
        containers.push(exporter_container(pgpool, plan, image, overrides));
    }

    let uid = plan.run_as_user;
    let pod_security = merge_pod_security_context(
        PodSecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            fs_group: Some(uid),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        },
        overrides.and_then(|o| o.security_context.as_ref()),
    );

    let o = overrides.cloned().unwrap_or_default();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            init_containers: Some(vec![init_container(plan, overrides)]),
            containers,
            volumes: Some(volumes(plan, overrides)),
            security_context: Some(pod_security),
            affinity: Some(o.affinity.unwrap_or_else(|| default_affinity(&plan.name))),
            node_selector: some_map(o.node_selector),
            tolerations: some_vec(o.tolerations),
            topology_spread_constraints: some_vec(o.topology_spread_constraints),
            image_pull_secrets: some_vec(o.image_pull_secrets),
            service_account_name: o.service_account_name,
            priority_class_name: o.priority_class_name,
            scheduler_name: o.scheduler_name,
            runtime_class_name: o.runtime_class_name,
            termination_grace_period_seconds: Some(
                o.termination_grace_period_seconds.unwrap_or(30),
            ),
            enable_service_links: Some(false),
            automount_service_account_token: Some(false),
            ..PodSpec::default()
        }),
    }
}
