//! Rollback of ReconfigureTLS: put the Pgpool's previous TLS settings back and lift the pause;
//! the provisioner then issues certificates for them and writes the PetSet again.

use super::error::Result;
use super::rollback::RollbackState;
use super::run::Run;

impl Run<'_> {
    /// One pass of the TLS rollback.
    pub(super) async fn rollback_tls(&mut self) -> Result<RollbackState> {
        let Some(undo) = self.previous().and_then(|p| p.get("undo").cloned()) else {
            return Ok(RollbackState::Finished(
                "the TLS settings were not changed".into(),
            ));
        };
        if self.patch_pgpool(&undo).await?.is_none() {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        }
        self.resume_pgpool().await?;
        Ok(RollbackState::Finished(
            "put the previous TLS settings back; the provisioner issues their certificates".into(),
        ))
    }
}
