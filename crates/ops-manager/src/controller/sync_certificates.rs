//! Step CertificateSynced (ReconfigureTLS): while the Pgpool stays paused, wait for the
//! certificates of the new TLS settings. The provisioner renders the Secrets of a paused
//! Pgpool (the built-in CA issues the missing certificates, cert-manager gets its
//! `Certificate`s) and then stamps the config Secret with the generation it rendered; every
//! certificate Secret must exist (cert-manager issues them in its own time).

use pgpool_api::Pgpool;
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
                "waiting for the certificates of Pgpool {} (issued while it stays paused)",
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
        let Some(pp) = self.fetch_pgpool().await? else {
            return self.fail_pgpool_gone().await;
        };
        let Some(why) = self.certificates_pending(&pp).await? else {
            let msg = match pp.spec.tls {
                Some(_) => format!("the certificates of Pgpool {} are issued", self.pgpool),
                None => format!("Pgpool {} needs no certificates", self.pgpool),
            };
            self.complete_named(step, &msg);
            return Ok(Flow::Next);
        };
        let msg = format!(
            "Pgpool {}: {why} within {}: check the Pgpool's status (TLS problems, for example \
             a missing issuer) and that pgpool-provisioner and cert-manager run",
            self.pgpool,
            self.timeout_text()
        );
        match self.time_left(step) {
            Some(left) => Ok(self.wait(left.min(RENDER_POLL))),
            None => self.fail_step("CertificatesNotIssued", msg).await,
        }
    }
}

impl Run<'_> {
    /// What the certificates of `pp`'s TLS settings still wait for, in words; `None` once the
    /// provisioner rendered the Pgpool's generation (it issues the certificates first) and
    /// every certificate Secret exists.
    pub(super) async fn certificates_pending(&self, pp: &Pgpool) -> Result<Option<String>> {
        let generation = pp.metadata.generation.unwrap_or_default();
        let rendered = self
            .config_secret()
            .await?
            .is_some_and(|s| plan::rendered_since(&s, generation));
        let mut missing = Vec::new();
        if let Some(tls) = &pp.spec.tls {
            for name in plan::cert_secrets(&self.pgpool, tls) {
                if self.fetch_secret(&name).await?.is_none() {
                    missing.push(name);
                }
            }
        }
        Ok(if !missing.is_empty() {
            Some(format!(
                "certificate Secrets {} were not issued",
                missing.join(", ")
            ))
        } else if !rendered {
            Some(format!(
                "the provisioner did not render generation {generation} of the Pgpool"
            ))
        } else {
            None
        })
    }
}
