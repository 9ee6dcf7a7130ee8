//! The fast path of a reconcile: when nothing a Pgpool depends on changed since its last
//! full reconcile (see [`super::memo`]), only its status is computed, without a request.
//! [`FastPath`] holds what the decision needs and, for a full reconcile, what the next memo
//! is made of.

use std::collections::HashMap;
use std::time::Instant;

use kube::{Resource, ResourceExt};
use pgpool_api::Pgpool;
use tracing::debug;

use super::context::Context;
use super::dereference::{self, Observed, Sources, child_slots};
use super::error::ReconcileError;
use super::index::{Kind, fingerprint_of};
use super::memo::{ChildMemo, Memo, MemoOutcome, Ticket};

/// What the last full reconcile of a Pgpool saw, against what the caches show now.
pub struct FastPath {
    key: String,
    uid: String,
    deps: u64,
    memo: Option<Memo>,
}

/// A full reconcile under way: what the caches showed of the children before it.
pub struct FullPass {
    fast: FastPath,
    ticket: Ticket,
    slots: Vec<(Kind, String)>,
    before: Vec<Option<u64>>,
}

impl FastPath {
    /// Looks up the memo of `pgpool` and hashes its dependencies as the caches show them.
    pub fn look(ctx: &Context, src: &Sources<'_>, pgpool: &Pgpool, key: &str) -> Self {
        Self {
            key: key.to_string(),
            uid: pgpool.uid().unwrap_or_default(),
            deps: dereference::dependencies(src, pgpool),
            memo: ctx.caches.memos.get(key),
        }
    }

    /// The outcome of the last full reconcile, when nothing it depends on changed since.
    pub async fn unchanged(
        &self,
        ctx: &Context,
        pgpool: &Pgpool,
    ) -> Result<Option<&MemoOutcome>, ReconcileError> {
        let Some(memo) = &self.memo else {
            return Ok(None);
        };
        let (name, ns) = (pgpool.name_any(), pgpool.namespace().unwrap_or_default());
        let uid = &self.uid;
        let deps = self.deps;
        let sm = match memo.child(Kind::ServiceMonitor, &pgpool.stats_service_name()) {
            // not watched: read it (only Pgpools that have one)
            Some(_) => current_service_monitor(ctx, pgpool).await?,
            None => None,
        };
        let index = &ctx.caches.index;
        let valid = memo.still_valid(uid, deps, Instant::now(), |kind, child| match kind {
            Kind::ServiceMonitor => sm,
            _ => index.fingerprint(kind, &ns, child),
        });
        if valid.is_none() && tracing::enabled!(tracing::Level::DEBUG) {
            let why = memo.changed(uid, deps, Instant::now(), |kind, child| match kind {
                Kind::ServiceMonitor => sm,
                _ => index.fingerprint(kind, &ns, child),
            });
            debug!(pgpool = %name, namespace = %ns, changed = why.as_deref().unwrap_or("?"), "full reconcile");
        }
        Ok(valid)
    }

    /// Starts a full reconcile: takes the memo ticket and the children's fingerprints in the
    /// index before anything is read or written.
    pub fn full(self, ctx: &Context, pgpool: &Pgpool) -> FullPass {
        let ns = pgpool.namespace().unwrap_or_default();
        let ticket = ctx.caches.memos.ticket();
        let slots = child_slots(pgpool, true);
        let before: Vec<Option<u64>> = slots
            .iter()
            .map(|(kind, child)| ctx.caches.index.fingerprint(*kind, &ns, child))
            .collect();
        FullPass {
            fast: self,
            ticket,
            slots,
            before,
        }
    }
}

impl FullPass {
    /// Whether the last full reconcile saw the child `child` of `kind` existing.
    pub fn known(&self, kind: Kind, child: &str) -> bool {
        self.fast
            .memo
            .as_ref()
            .and_then(|m| m.child(kind, child))
            .is_some_and(|c| c.value.is_some())
    }

    /// Stores the memo of this reconcile: its `outcome` and the children's fingerprints
    /// `after` it (the ServiceMonitor only when its API exists).
    pub fn remember(
        self,
        ctx: &Context,
        outcome: MemoOutcome,
        after: &Fingerprints,
        has_sm_api: bool,
    ) {
        let children = self
            .slots
            .into_iter()
            .zip(self.before)
            .filter(|((kind, _), _)| *kind != Kind::ServiceMonitor || has_sm_api)
            .map(|((kind, child), prev)| ChildMemo {
                value: after.get(&(kind, child.clone())).copied().flatten(),
                prev: if kind == Kind::ServiceMonitor {
                    None
                } else {
                    prev
                },
                kind,
                name: child,
            })
            .collect();
        let memo = Memo {
            uid: self.fast.uid,
            deps: self.fast.deps,
            children,
            outcome,
            at: Instant::now(),
        };
        ctx.caches.memos.store(&self.fast.key, memo, self.ticket);
    }
}

/// Fingerprints of the children as observed, by (kind, name).
pub type Fingerprints = HashMap<(Kind, String), Option<u64>>;

fn fingerprint<K: Resource>(kind: Kind, obj: Option<&K>) -> Option<u64> {
    obj.map(|o| fingerprint_of(kind, o.meta()))
}

/// The fingerprints of the children `observed` holds.
pub fn observed_fingerprints(observed: &Observed) -> Fingerprints {
    let c = &observed.children;
    let mut out = Fingerprints::new();
    let mut add = |kind: Kind, meta: Option<&kube::core::ObjectMeta>| {
        if let Some(m) = meta
            && let Some(name) = &m.name
        {
            out.insert((kind, name.clone()), Some(fingerprint_of(kind, m)));
        }
    };
    add(Kind::Secret, c.auth_secret.as_ref().map(|o| o.meta()));
    add(Kind::Secret, c.config_secret.as_ref().map(|o| o.meta()));
    add(Kind::Service, c.primary_service.as_ref().map(|o| o.meta()));
    add(Kind::Service, c.pods_service.as_ref().map(|o| o.meta()));
    add(Kind::Service, c.stats_service.as_ref().map(|o| o.meta()));
    add(Kind::PetSet, c.petset.as_ref().map(|o| o.meta()));
    add(Kind::Pdb, c.pdb.as_ref().map(|o| o.meta()));
    add(
        Kind::ServiceMonitor,
        c.service_monitor.as_ref().map(|o| o.meta()),
    );
    for secret in observed.tls.secrets.values() {
        add(Kind::Secret, Some(secret.meta()));
    }
    out
}

/// The fingerprint of the Pgpool's ServiceMonitor now (read from the API server).
async fn current_service_monitor(
    ctx: &Context,
    pgpool: &Pgpool,
) -> Result<Option<u64>, ReconcileError> {
    let api = ctx.caches.discovery.api(&ctx.client).await?;
    let (_, _, sm) = dereference::read_service_monitor(&ctx.client, pgpool, api).await?;
    Ok(fingerprint(Kind::ServiceMonitor, sm.as_ref()))
}
