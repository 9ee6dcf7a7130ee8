//! New certificates reach the pods without an ops request: pgpool reads its certificate at
//! start only (`ssl*` parameters are not reloaded, shown on the real binaries), so when the
//! certificates change the provisioner restarts the pods one at a time, by eviction (a PDB
//! holds), each only once every pod is Ready. Only pods whose configuration is otherwise
//! current are restarted: a pending configuration change stays for its ops request. Never
//! while the Pgpool is paused (an ops request owns the pods then; this runs after the pause
//! check of the reconcile).

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, EvictParams, ListParams};
use operator_kit::api::is_not_found;
use pgpool_api::{Pgpool, names};

use crate::pgpool::build::tls_secrets::ANNOTATION_TLS_HASH;
use crate::pgpool::context::Context;
use crate::pgpool::error::ReconcileError;
use crate::pgpool::status::observe;

/// Event reason of a pod restarted for new certificates.
pub const REASON_RESTARTED_FOR_CERTIFICATE: &str = "RestartedForCertificate";

/// The pod template's hashes a pod must carry to serve the current certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `pgpool.kubedb.com/tls-hash` of the template.
    pub tls_hash: String,
    /// `pgpool.kubedb.com/config-hash` of the template.
    pub config_hash: String,
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Decide (pure): the pod to restart now, if any. Waits while a pod is not Ready (or fewer
/// pods than `replicas` exist); picks the highest ordinal with old certificates and a current
/// configuration.
pub fn next_restart(pods: &[Pod], replicas: usize, target: &Target) -> Option<String> {
    if pods.len() < replicas || !pods.iter().all(is_ready) {
        return None;
    }
    let mut stale: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            annotation(p, ANNOTATION_TLS_HASH) != Some(target.tls_hash.as_str())
                && annotation(p, names::ANNOTATION_CONFIG_HASH) == Some(target.config_hash.as_str())
        })
        .collect();
    stale.sort_by_key(|p| p.name_any());
    stale.last().map(|p| p.name_any())
}

/// Restarts the next pod with old certificates, when one is due (see [`next_restart`]).
pub async fn roll(ctx: &Context, pgpool: &Pgpool, key: &str) -> Result<(), ReconcileError> {
    let Some(target) = ctx.caches.tls_renewals.target(key) else {
        return Ok(());
    };
    // from the caches: nothing to do while every pod runs the PetSet's template
    let outdated = observe::revisions(&ctx.caches.pods, &ctx.caches.index, pgpool)
        .is_some_and(|r| !r.outdated().is_empty());
    if !outdated {
        return Ok(());
    }
    let ns = pgpool.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = api
        .list(&ListParams::default().labels(&names::selector_string(&pgpool.name_any())))
        .await?
        .items;
    let Some(name) = next_restart(&pods, pgpool.spec.replicas().max(0) as usize, &target) else {
        return Ok(());
    };
    match api.evict(&name, &EvictParams::default()).await {
        Ok(_) => {
            ctx.recorder
                .normal(
                    pgpool,
                    REASON_RESTARTED_FOR_CERTIFICATE,
                    &format!("evicted pod {name} so that it starts with the new certificates"),
                )
                .await;
            Ok(())
        }
        // gone already, or a PodDisruptionBudget says not now: the pod events bring the next try
        Err(e) if is_not_found(&e) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 429 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use kube::Resource;

    fn pod(name: &str, tls: &str, config: &str, ready: bool) -> Pod {
        let mut p = Pod::default();
        p.meta_mut().name = Some(name.into());
        p.meta_mut().annotations = Some(
            [
                (ANNOTATION_TLS_HASH.to_string(), tls.to_string()),
                (
                    names::ANNOTATION_CONFIG_HASH.to_string(),
                    config.to_string(),
                ),
            ]
            .into(),
        );
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        p
    }

    fn target() -> Target {
        Target {
            tls_hash: "new".into(),
            config_hash: "c".into(),
        }
    }

    #[test]
    fn restarts_one_pod_with_old_certificates_at_a_time() {
        let pods = [pod("pp-0", "old", "c", true), pod("pp-1", "old", "c", true)];
        assert_eq!(next_restart(&pods, 2, &target()).as_deref(), Some("pp-1"));
        let pods = [
            pod("pp-0", "old", "c", true),
            pod("pp-1", "new", "c", false),
        ];
        assert_eq!(next_restart(&pods, 2, &target()), None, "wait for Ready");
        let pods = [pod("pp-0", "old", "c", true)];
        assert_eq!(
            next_restart(&pods, 2, &target()),
            None,
            "wait for every pod"
        );
        let pods = [pod("pp-0", "old", "c", true), pod("pp-1", "new", "c", true)];
        assert_eq!(next_restart(&pods, 2, &target()).as_deref(), Some("pp-0"));
    }

    #[test]
    fn leaves_pods_with_a_pending_configuration_change_to_an_ops_request() {
        let pods = [pod("pp-0", "old", "older-config", true)];
        assert_eq!(next_restart(&pods, 1, &target()), None);
        let pods = [pod("pp-0", "new", "c", true)];
        assert_eq!(next_restart(&pods, 1, &target()), None, "up to date");
    }
}
