//! Renders asked of the provisioner while a request holds the pause (the Pgpool's `Paused`
//! condition: `Unknown` with reason `RenderRequested` asks, `True` with reason `Rendered` or
//! `RenderFailed` answers; `observedGeneration` is the Pgpool generation asked for), and
//! whether a pod runs its PetSet's template.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::conditions::{self, pgpool as types};
use pgpool_api::{PetSet, names};

use super::pods::pod_ready;

/// Annotation of the PetSet's pod template with the hash of the certificates the pods use
/// (written by the provisioner).
pub const ANNOTATION_TLS_HASH: &str = "pgpool.kubedb.com/tls-hash";

/// Where a render of generation `g` stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderState {
    /// Not asked for `g` (or only for an older generation): ask.
    NotAsked,
    /// Asked; the provisioner has not answered yet.
    Asked,
    /// The provisioner rendered the children from generation `g` or newer.
    Rendered,
    /// The provisioner could not render: its message.
    Failed(String),
    /// The Pgpool is not paused (someone lifted the pause): nothing may be rendered for the
    /// request.
    NotPaused,
}

/// Where the render of generation `generation` stands, from the Pgpool's conditions.
pub fn render_state(pgpool_conditions: &[Condition], generation: i64) -> RenderState {
    let Some(paused) = conditions::get(pgpool_conditions, types::PAUSED) else {
        return RenderState::NotPaused;
    };
    let current = paused.observed_generation.is_some_and(|g| g >= generation);
    match (paused.status.as_str(), paused.reason.as_str()) {
        (conditions::UNKNOWN, types::REASON_RENDER_REQUESTED) if current => RenderState::Asked,
        (conditions::TRUE, types::REASON_RENDERED) if current => RenderState::Rendered,
        (conditions::TRUE, types::REASON_RENDER_FAILED) if current => {
            RenderState::Failed(paused.message.clone())
        }
        _ => RenderState::NotAsked,
    }
}

fn annotation<'a>(
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    annotations?.get(key).map(String::as_str)
}

/// The template's TLS and config hashes (`None` where the template carries none).
pub fn template_hashes(ps: &PetSet) -> (Option<&str>, Option<&str>) {
    let a = ps
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    (
        annotation(a, ANNOTATION_TLS_HASH),
        annotation(a, names::ANNOTATION_CONFIG_HASH),
    )
}

/// True when `pod` carries the TLS and config hashes of `ps`'s template (it was created from
/// that template, or from one with the same certificates and configuration).
pub fn pod_runs_template(pod: &Pod, ps: &PetSet) -> bool {
    let a = pod.metadata.annotations.as_ref();
    template_hashes(ps)
        == (
            annotation(a, ANNOTATION_TLS_HASH),
            annotation(a, names::ANNOTATION_CONFIG_HASH),
        )
}

/// Of the pods that do not run `ps`'s template, the one to restart first: one that is not
/// Ready (it serves nothing, and a budget may count on the Ready ones), else the first.
pub fn next_to_move<'a>(pods: &[&'a Pod], ps: &PetSet) -> Option<&'a Pod> {
    let stale: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| !pod_runs_template(p, ps))
        .collect();
    stale
        .iter()
        .find(|p| !pod_ready(p))
        .or(stale.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn paused(status: &str, reason: &str, generation: i64) -> Vec<Condition> {
        let mut conds = Vec::new();
        conditions::set(
            &mut conds,
            conditions::NewCondition {
                type_: types::PAUSED,
                status,
                reason,
                message: "m".into(),
                observed_generation: Some(generation),
            },
            chrono::Utc::now(),
        );
        conds
    }

    #[test]
    fn render_state_follows_the_paused_condition_for_the_generation() {
        use RenderState::*;
        assert_eq!(render_state(&[], 3), NotPaused);
        let ack = paused("True", "PauseAcknowledged", 3);
        assert_eq!(render_state(&ack, 3), NotAsked);
        let asked = paused("Unknown", types::REASON_RENDER_REQUESTED, 3);
        assert_eq!(render_state(&asked, 3), Asked);
        assert_eq!(render_state(&asked, 4), NotAsked, "asked for an older one");
        let done = paused("True", types::REASON_RENDERED, 3);
        assert_eq!(render_state(&done, 3), Rendered);
        assert_eq!(render_state(&done, 2), Rendered);
        assert_eq!(render_state(&done, 4), NotAsked);
        let failed = paused("True", types::REASON_RENDER_FAILED, 3);
        assert_eq!(render_state(&failed, 3), Failed("m".into()));
        let plain = paused("Unknown", "PauseRequested", 3);
        assert_eq!(render_state(&plain, 3), NotAsked);
    }

    fn annotated(tls: Option<&str>, config: &str) -> ObjectMeta {
        let mut a = std::collections::BTreeMap::new();
        a.insert(
            names::ANNOTATION_CONFIG_HASH.to_string(),
            config.to_string(),
        );
        if let Some(t) = tls {
            a.insert(ANNOTATION_TLS_HASH.to_string(), t.to_string());
        }
        ObjectMeta {
            annotations: Some(a),
            ..ObjectMeta::default()
        }
    }

    fn pod(name: &str, tls: Option<&str>, config: &str, ready: bool) -> Pod {
        let mut meta = annotated(tls, config);
        meta.name = Some(name.into());
        Pod {
            metadata: meta,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn petset(tls: Option<&str>, config: &str) -> PetSet {
        let mut ps = PetSet::new("pp", Default::default());
        ps.spec.template.metadata = Some(annotated(tls, config));
        ps
    }

    #[test]
    fn a_pod_runs_the_template_when_both_hashes_agree() {
        let ps = petset(Some("t1"), "c1");
        assert!(pod_runs_template(&pod("p", Some("t1"), "c1", true), &ps));
        assert!(!pod_runs_template(&pod("p", Some("t2"), "c1", true), &ps));
        assert!(!pod_runs_template(&pod("p", None, "c1", true), &ps));
        assert!(!pod_runs_template(&pod("p", Some("t1"), "c2", true), &ps));
        let plain = petset(None, "c1");
        assert!(pod_runs_template(&pod("p", None, "c1", true), &plain));
        assert!(!pod_runs_template(
            &pod("p", Some("t1"), "c1", true),
            &plain
        ));
    }

    #[test]
    fn a_pod_that_is_not_ready_moves_first() {
        let ps = petset(Some("t1"), "c1");
        let (a, b, c) = (
            pod("pp-0", Some("t0"), "c1", true),
            pod("pp-1", Some("t0"), "c1", false),
            pod("pp-2", Some("t1"), "c1", false),
        );
        let name = |p: Option<&Pod>| p.and_then(|p| p.metadata.name.clone());
        assert_eq!(
            name(next_to_move(&[&a, &b, &c], &ps)).as_deref(),
            Some("pp-1")
        );
        assert_eq!(name(next_to_move(&[&a, &c], &ps)).as_deref(), Some("pp-0"));
        assert_eq!(next_to_move(&[&c], &ps), None);
    }
}
