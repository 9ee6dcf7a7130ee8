//! Step CertificateSynced (ReconfigureTLS): lift the pause so that the provisioner issues the
//! certificates (its built-in CA, or cert-manager through its `Certificate`s) and writes the
//! PetSet's template for the new TLS settings, then wait until it has: the Pgpool's status
//! observed the changed spec, every certificate Secret exists, and the template's TLS hash
//! says TLS (or no TLS) and, when Secrets were removed, differs from the one before.
//!
//! Pods are restarted by the next step, RestartPods, one at a time. The request stays
//! Progressing, so no other request of the Pgpool starts meanwhile.

use pgpool_api::conditions::{self, ops};

use super::config_objects::RENDER_POLL;
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step CertificateSynced.
    pub(super) async fn step_sync_certificates(&mut self) -> Result<Flow> {
        let step = ops::CERTIFICATE_SYNCED;
        if self.cond(step).is_none() {
            let msg = format!(
                "waiting for the provisioner to write the certificates and the PetSet of \
                 Pgpool {}",
                self.pgpool
            );
            self.record(
                step,
                conditions::UNKNOWN,
                "WaitingForCertificates",
                &msg,
                None,
            )
            .await?;
        }
        self.resume_pgpool().await?;
        let Some(pp) = self.fetch_pgpool().await? else {
            return self.fail_pgpool_gone().await;
        };
        let generation = pp.metadata.generation.unwrap_or_default();
        let observed = pp
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_some_and(|g| g >= generation);
        let mut missing = Vec::new();
        if let Some(tls) = &pp.spec.tls {
            for name in plan::cert_secrets(&self.pgpool, tls) {
                if self.fetch_secret(&name).await?.is_none() {
                    missing.push(name);
                }
            }
        }
        let previous = self.previous().unwrap_or_default();
        let rotated = previous["rotate"].as_array().is_some_and(|a| !a.is_empty());
        let old_hash = previous["tlsHash"].as_str().map(String::from);
        let hash = self.petset_tls_hash().await?;
        let template_ok = match (&pp.spec.tls, &hash) {
            (None, None) => true,
            (Some(_), Some(h)) => !rotated || old_hash.as_deref() != Some(h.as_str()),
            _ => false,
        };
        if observed && missing.is_empty() && template_ok {
            let msg = format!(
                "the provisioner wrote the certificates and the PetSet of Pgpool {}",
                self.pgpool
            );
            self.complete_named(step, &msg);
            return Ok(Flow::Next);
        }
        let why = if !missing.is_empty() {
            format!("certificate Secrets {} were not issued", missing.join(", "))
        } else if !observed {
            "the Pgpool's status did not observe the new spec".to_string()
        } else {
            "the PetSet's template does not carry the new certificates".to_string()
        };
        let msg = format!(
            "Pgpool {}: {why} within {}: check the Pgpool's status (TLS problems, for example \
             a missing issuer) and that pgpool-provisioner and cert-manager run",
            self.pgpool,
            self.timeout_text()
        );
        match self.time_left(step) {
            Some(left) => Ok(self.wait(left.min(RENDER_POLL))),
            None => self.fail_step("CertificatesNotSynced", msg).await,
        }
    }
}
