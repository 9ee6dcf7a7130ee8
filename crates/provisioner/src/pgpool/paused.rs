//! While an ops request holds the Pgpool paused, the Secrets are still rendered (the PetSet
//! and the other children are not touched): the ops-manager changes the Pgpool spec or the
//! auth Secret (Reconfigure, RotateAuth), waits for the config Secret to say it was rendered
//! from that spec, and then moves the PetSet's config hash itself and restarts the pods.
//! The TLS objects are rendered too (the built-in CA's Secrets, cert-manager `Certificate`s),
//! before the config Secret: ReconfigureTLS waits for the certificates while paused, then asks
//! for one render of the PetSet (see [`super::reconcile`]).
//!
//! The config Secret written here carries two annotations the ops-manager reads:
//! [`names::ANNOTATION_CONFIG_HASH`] (the hash the pod template must carry) and
//! [`names::ANNOTATION_RENDERED_GENERATION`] (the Pgpool generation the files come from).

use k8s_openapi::api::core::v1::Secret;
use kube::{Resource, ResourceExt};
use pgpool_api::{Pgpool, names};
use tracing::debug;

use super::apply::{Apis, ensure};
use super::build::{auth_secret, build, config_secret};
use super::context::Context;
use super::dereference;
use super::error::ReconcileError;
use super::tls::apply::apply as tls_apply;
use super::validate::{AuthPlan, Plan, RandomGenerator, validate};

/// The config Secret of a paused render: the usual one plus the hash and generation
/// annotations (pure).
pub fn paused_config_secret(pgpool: &Pgpool, plan: &Plan) -> Secret {
    let mut secret = config_secret(pgpool, plan);
    let annotations = secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(
        names::ANNOTATION_CONFIG_HASH.into(),
        plan.config_hash.clone(),
    );
    annotations.insert(
        names::ANNOTATION_RENDERED_GENERATION.into(),
        pgpool.meta().generation.unwrap_or_default().to_string(),
    );
    secret
}

/// Render the auth Secret (only when it exists and is ours), the TLS objects and the config
/// Secret of a paused Pgpool. A problem is left for the status after the resume (the ops-manager checked
/// the change before making it, and waits for the annotations until its timeout).
pub async fn render_secrets(ctx: &Context, pgpool: &Pgpool) -> Result<(), ReconcileError> {
    let src = ctx.sources();
    let observed = dereference::dereference(&src, pgpool, |_, _| false).await?;
    let plan = match validate(pgpool, &observed, &mut RandomGenerator) {
        Ok(plan) => plan,
        Err(problem) => {
            debug!(pgpool = %pgpool.name_any(), reason = problem.reason, "paused: cannot render");
            return Ok(());
        }
    };
    let apis = Apis::new(&ctx.client, &plan.namespace);
    let c = &observed.children;
    if let (AuthPlan::Managed { exists: true, .. }, Some(auth)) = (&plan.auth, auth_secret(&plan)) {
        ensure(&apis.secrets, &auth, c.auth_secret.as_ref()).await?;
    }
    // the certificates before the config Secret that says the spec was rendered
    let desired = build(pgpool, &plan);
    tls_apply(ctx, pgpool, &plan, &desired, &observed).await?;
    let secret = paused_config_secret(pgpool, &plan);
    ensure(&apis.secrets, &secret, c.config_secret.as_ref()).await?;
    Ok(())
}
