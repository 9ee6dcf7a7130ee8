//! Step IssueCertificatesSucceeded (ReconfigureTLS): while the Pgpool is paused, record its TLS
//! settings, change `spec.tls`, `spec.sslMode` and `spec.clientAuthMode`, and remove the
//! certificate Secrets that must be issued again (rotation, a new issuer or new certificate
//! settings). The provisioner issues certificates while paused (see CertificateSynced): a
//! restart of this step after the deletion removes them once more, and they are issued again.

use kube::api::DeleteParams;
use operator_kit::api::is_not_found;
use pgpool_api::conditions::ops;
use pgpool_api::names;
use serde_json::json;

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, TlsCheck};

impl Run<'_> {
    /// Step IssueCertificatesSucceeded.
    pub(super) async fn step_update_tls(&mut self) -> Result<Flow> {
        let step = ops::UPDATE_TLS;
        let msg = format!("changing the TLS settings of Pgpool {}", self.pgpool);
        let Some((pp, _)) = self.begin_spec_change(step, "UpdatingTLS", &msg).await? else {
            return self.fail_pgpool_gone().await;
        };
        let stored = match self.previous() {
            Some(stored) => stored,
            None => {
                let change = match plan::plan_tls(&self.req, &pp) {
                    TlsCheck::Go(change) => change,
                    TlsCheck::AlreadyDone(m) => return self.fail_step("NothingToChange", m).await,
                    TlsCheck::Fail(reason, m) => return self.fail_step(reason, m).await,
                };
                let old_hash = self.petset_tls_hash().await?;
                let stored = json!({
                    "patch": change.patch,
                    "undo": change.undo,
                    "rotate": change.rotate_secrets,
                    "tlsHash": old_hash,
                });
                self.store_previous(&stored).await?;
                stored
            }
        };
        if self.patch_pgpool(&stored["patch"]).await?.is_none() {
            return self.fail_pgpool_gone().await;
        }
        let rotate: Vec<String> = stored["rotate"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for name in &rotate {
            match self.secrets().delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let msg = if rotate.is_empty() {
            format!("changed the TLS settings of Pgpool {}", self.pgpool)
        } else {
            format!(
                "changed the TLS settings of Pgpool {} and removed its certificate Secrets {} \
                 so that new certificates are issued",
                self.pgpool,
                rotate.join(", ")
            )
        };
        self.complete_named(step, &msg);
        Ok(Flow::Next)
    }
}

impl Run<'_> {
    /// The TLS hash in the PetSet's pod template (what the provisioner rendered for the
    /// Pgpool's TLS settings); `None` without TLS or without the PetSet.
    pub(super) async fn petset_tls_hash(&self) -> Result<Option<String>> {
        Ok(self
            .petsets()
            .get_opt(&names::petset(&self.pgpool))
            .await?
            .and_then(|ps| {
                ps.spec
                    .template
                    .metadata?
                    .annotations?
                    .remove(plan::ANNOTATION_TLS_HASH)
            }))
    }
}
