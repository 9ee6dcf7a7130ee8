//! One reconcile of a Pgpool, top to bottom: the finalizer, the pause handshake and
//! `spec.halted` first ([`super::cleanup`]); then, unless nothing changed since the last full
//! reconcile ([`super::fast_path`]), dereference -> validate -> build -> apply; and the status
//! last. A paused Pgpool gets its Secrets rendered only ([`super::paused`]), except when the
//! ops request asks for a render (`Paused=Unknown`, reason `RenderRequested`): then one
//! reconcile as above, without the certificate rollout, whose status write acknowledges it.

use std::sync::Arc;

use chrono::Utc;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use operator_kit::finalizers;
use pgpool_api::{Pgpool, names};
use tracing::{debug, warn};

use super::apply::apply;
use super::build;
use super::build::build;
use super::cached::CachedPgpool;
use super::cleanup;
use super::context::Context;
use super::dereference;
use super::error::ReconcileError;
use super::fast_path::{FastPath, observed_fingerprints};
use super::index::fingerprint_of;
use super::memo::MemoOutcome;
use super::paused;
use super::status::{Outcome, is_paused, observe, render_requested};
use super::tls::apply::apply as tls_apply;
use super::tls::rollout;
use super::validate::{RandomGenerator, validate};

/// The `controller` label of this controller's metrics.
pub const CONTROLLER_LABEL: &str = "pgpool";

/// Entry point for the controller runtime.
pub async fn reconcile(
    obj: Arc<CachedPgpool>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let timer = ctx.metrics.start();
    let result = match obj.to_pgpool() {
        Ok(pgpool) => reconcile_inner(&pgpool, &ctx).await,
        Err(e) => Err(e.into()),
    };
    timer.observe(&result);
    if result.is_ok() {
        ctx.backoff.succeeded(&ObjectRef::from_obj(&*obj));
    }
    result
}

/// Retry with exponential backoff per Pgpool; a Warning event on the first failure in a row.
pub fn error_policy(obj: Arc<CachedPgpool>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*obj);
    let message = format!("reconcile failed, retrying: {err}");
    // a 409 resolves itself with the next watch event: counted, never an event
    let conflict = matches!(err, ReconcileError::Conflict);
    let failure = ctx
        .backoff
        .failed(key, (!conflict).then_some(message.as_str()));
    let (failures, delay) = (failure.attempt, failure.delay);
    if conflict {
        debug!(pgpool = %obj.name_any(), failures, "{err}");
    } else {
        warn!(
            pgpool = %obj.name_any(),
            namespace = obj.namespace().unwrap_or_default(),
            failures,
            retry_in_ms = delay.as_millis() as u64,
            "reconcile failed: {err}"
        );
    }
    if failure.emit_event {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.recorder
                .warning(&*obj, "ReconcileFailed", &message)
                .await;
        });
    }
    Action::requeue(delay)
}

/// One reconcile of the cached `pgpool`. Every write of the Pgpool carries the cached
/// resourceVersion, so acting on a copy that is not the newest ends in a 409 (and the newer
/// copy's event triggers the next reconcile): in particular, the Paused handshake holds, as a
/// reconcile never acknowledges or writes past a pause it has not seen.
async fn reconcile_inner(pgpool: &Pgpool, ctx: &Context) -> Result<Action, ReconcileError> {
    let (name, ns) = (pgpool.name_any(), pgpool.namespace().unwrap_or_default());
    let key = format!("{ns}/{name}");
    let api: Api<Pgpool> = Api::namespaced(ctx.client.clone(), &ns);
    if !ctx.caches.synced.is_synced() {
        ctx.caches.synced.wait().await;
    }
    let paused = is_paused(pgpool.status.as_ref());
    // an ops request holding the pause asks for one render of everything (the PetSet too)
    let render = render_requested(pgpool.status.as_ref());

    if pgpool.meta().deletion_timestamp.is_some() {
        ctx.caches.memos.forget(&key);
        ctx.caches.tls_renewals.forget(&key);
        if !finalizers::has(pgpool, names::FINALIZER) {
            return Ok(Action::await_change());
        }
        if paused {
            report_paused(ctx, &api, pgpool).await?;
        } else {
            cleanup::finalize(ctx, &api, pgpool).await?;
        }
        return Ok(Action::await_change());
    }
    let has_finalizer = finalizers::has(pgpool, names::FINALIZER);
    if paused && !(render && has_finalizer && !pgpool.spec.is_halted()) {
        paused::render_secrets(ctx, pgpool).await?;
        report_paused(ctx, &api, pgpool).await?;
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        cleanup::add_finalizer(&api, pgpool).await?;
        // the patch changed the Pgpool: its event brings the next reconcile
        return Ok(Action::await_change());
    }
    if pgpool.spec.is_halted() {
        ctx.caches.memos.forget(&key);
        ctx.caches.tls_renewals.forget(&key);
        cleanup::halt(ctx, pgpool).await?;
        write_status(ctx, &api, pgpool, &Outcome::Halted).await?;
        return Ok(Action::await_change());
    }

    // Nothing it depends on changed since the last full reconcile: only the status.
    let src = ctx.sources();
    // (a ServiceMonitor CRD may have been installed since: looked up once per resync)
    ctx.caches.discovery.api(&ctx.client).await?;
    let fast = FastPath::look(ctx, &src, pgpool, &key);
    let renewals = &ctx.caches.tls_renewals;
    // a certificate due for renewal needs a full reconcile even when nothing changed
    if !renewals.due(&key, Utc::now())
        && let Some(outcome) = fast.unchanged(ctx, pgpool).await?
    {
        report(ctx, &api, pgpool, outcome).await?;
        if !paused {
            rollout::roll(ctx, pgpool, &key).await?;
        }
        return Ok(renewals.action(&key, Utc::now()));
    }

    // Full reconcile: read what changed, apply what differs, remember what was seen.
    let pass = fast.full(ctx, pgpool);
    let observed =
        dereference::dereference(&src, pgpool, |kind, child| pass.known(kind, child)).await?;
    let (outcome, after) = match validate(pgpool, &observed, &mut RandomGenerator) {
        Err(problem) => {
            debug!(pgpool = %name, namespace = %ns, reason = problem.reason, "cannot provision");
            // Issuers are not watched: look again in a while
            let retry = super::tls::plan::tls_reason::ISSUER_NOT_FOUND == problem.reason
                || super::tls::plan::tls_reason::CERT_MANAGER_MISSING == problem.reason;
            renewals.set(
                &key,
                retry.then(|| Utc::now() + chrono::Duration::seconds(5)),
            );
            (
                MemoOutcome::Problem(problem),
                observed_fingerprints(&observed),
            )
        }
        Ok(plan) => {
            renewals.set(&key, plan.tls.as_ref().and_then(|t| t.renew_at));
            renewals.set_target(
                &key,
                build::tls_secrets::tls_hash(&plan).map(|tls_hash| rollout::Target {
                    tls_hash,
                    config_hash: plan.config_hash.clone(),
                }),
            );
            let desired = build(pgpool, &plan);
            // the certificates before the pods that mount them
            let tls_writes = tls_apply(ctx, pgpool, &plan, &desired, &observed).await?;
            let (writes, mut after) = apply(ctx, pgpool, &plan, &desired, &observed).await?;
            let writes = writes + tls_writes.len();
            for (kind, child, meta) in tls_writes {
                after.insert((kind, child), Some(fingerprint_of(kind, &meta)));
            }
            if writes > 0 {
                debug!(pgpool = %name, namespace = %ns, writes, "children applied");
            }
            let notes = plan.notes.clone();
            (MemoOutcome::Running { notes }, after)
        }
    };
    report(ctx, &api, pgpool, &outcome).await?;
    pass.remember(ctx, outcome, &after, observed.service_monitor_api.is_some());
    // the pods of a paused Pgpool are the ops request's
    if !paused {
        rollout::roll(ctx, pgpool, &key).await?;
    }
    Ok(renewals.action(&key, Utc::now()))
}

/// Writes the status of a paused Pgpool (its pods against the PetSet's replicas).
async fn report_paused(
    ctx: &Context,
    api: &Api<Pgpool>,
    pgpool: &Pgpool,
) -> Result<(), ReconcileError> {
    let health = observe::health(&ctx.caches.pods, &ctx.caches.index, pgpool, true);
    write_status(ctx, api, pgpool, &Outcome::Paused(health)).await
}

/// Writes the status a reconcile's `outcome` leads to, with the pods as the caches show them.
async fn report(
    ctx: &Context,
    api: &Api<Pgpool>,
    pgpool: &Pgpool,
    outcome: &MemoOutcome,
) -> Result<(), ReconcileError> {
    let (pods, index) = (&ctx.caches.pods, &ctx.caches.index);
    let health = observe::health(pods, index, pgpool, false);
    let revisions = observe::revisions(pods, index, pgpool);
    let outcome = match outcome {
        MemoOutcome::Running { notes } => Outcome::Running {
            health,
            notes: notes.as_slice(),
            revisions: revisions.as_ref(),
        },
        MemoOutcome::Problem(problem) => Outcome::Problem(problem, health),
    };
    write_status(ctx, api, pgpool, &outcome).await
}

/// Writes the status `outcome` leads to (see [`super::status::write`]).
async fn write_status(
    ctx: &Context,
    api: &Api<Pgpool>,
    pgpool: &Pgpool,
    outcome: &Outcome<'_>,
) -> Result<(), ReconcileError> {
    ctx.status_writes
        .write(api, &ctx.phases, &ctx.recorder, pgpool, outcome)
        .await
}
