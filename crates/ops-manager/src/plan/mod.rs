//! Pure decisions of the ops-manager: validation of a request, its place in the per-Pgpool
//! queue, what to do next for one pod, and image bookkeeping. Nothing here talks to the API
//! server, so every rule is table-tested.
//!
//! One file per kind of decision: [`steps`] (which step comes next), [`queue`], [`validation`],
//! [`pods`] (per-pod decisions), [`eviction`] (budgets and refusals) and [`images`].

mod config;
mod eviction;
mod images;
mod pods;
mod queue;
mod render;
mod scaling;
mod steps;
mod tls;
mod validation;

pub use config::{
    ANNOTATION_PREVIOUS, ANNOTATION_ROTATED_BY, ConfigPlan, ConfigSources, KEY_PREVIOUS_PASSWORD,
    KEY_PREVIOUS_USERNAME, check_rotate_auth, credentials, pcp_rendered, plan_reconfigure,
    reconfigure_secret_name, rendered_hash, rendered_since, rotated_auth_data, secret_string,
};
pub use eviction::{budget_of, eviction_refused_message};
pub use images::{Images, pod_on_images, set_spec_images, spec_on_images};
pub use pods::{
    PodStep, RollbackPodStep, evict_message, petset_observed, pod_broken, pod_ready, pod_step,
    pod_terminating, recorded_uid, rollback_pick, rollback_pod_step,
};
pub use queue::{QueueDecision, phase_of, queue_decision, queue_order};
pub use scaling::{
    ScaleAction, ScalingCheck, budget_min_available, lowered_budget, ordinal_of, pod_on_resources,
    recorded_resources, resources_message, scale_action, set_spec_resources, spec_resources,
    target_replicas, target_resources, validate_scaling,
};
pub use steps::{SKIPPED, Step, next_scaling_step, next_step, start_condition};
pub use validation::{
    ValidationInput, Verdict, not_ready_message, pgpool_ready, target_version, validate,
};

pub use tls::{TlsChange, TlsCheck, cert_secrets, plan_tls, tls_template_ok};

pub use render::{
    ANNOTATION_TLS_HASH, RenderState, next_to_move, pod_runs_template, render_state,
    template_hashes,
};

#[cfg(test)]
mod fixtures;
