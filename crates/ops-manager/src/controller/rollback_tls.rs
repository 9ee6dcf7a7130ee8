//! Rollback of ReconfigureTLS, still paused: put the Pgpool's previous TLS settings back, wait
//! for their certificates, ask the provisioner to render the PetSet for them, and restart the
//! pods that run another template (those the request already moved), one at a time, a pod
//! that is not Ready first. The request's end lifts the pause.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::names;

use super::config_objects::RENDER_POLL;
use super::error::Result;
use super::rollback::RollbackState;
use super::run::Run;
use crate::plan::{self, RenderState};

impl Run<'_> {
    /// One pass of the TLS rollback.
    pub(super) async fn rollback_tls(&mut self, rb: &Condition) -> Result<RollbackState> {
        let gone = || RollbackState::Finished(format!("Pgpool {} no longer exists", self.pgpool));
        let Some(undo) = self.previous().and_then(|p| p.get("undo").cloned()) else {
            return Ok(RollbackState::Finished(
                "the TLS settings were not changed".into(),
            ));
        };
        if self.patch_pgpool(&undo).await?.is_none() {
            return Ok(gone());
        }
        let gave_up = |limit| {
            format!(
                "put the previous TLS settings back, but not all pods ran them and were Ready \
                 within {limit:?}"
            )
        };
        let (_, left) = match self.rollback_window(rb, gave_up).await? {
            Ok(window) => window,
            Err(state) => return Ok(state),
        };
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(gone());
        };
        let generation = pp.metadata.generation.unwrap_or_default();
        // the certificates of the previous settings, issued while paused
        if self.certificates_pending(&pp).await?.is_some() {
            return Ok(RollbackState::Wait(left.min(RENDER_POLL)));
        }
        let conds = pp.status.as_ref().map(|s| s.conditions.as_slice());
        match plan::render_state(conds.unwrap_or_default(), generation) {
            RenderState::Rendered => {}
            RenderState::Asked => return Ok(RollbackState::Wait(left.min(RENDER_POLL))),
            RenderState::NotAsked => {
                if !self.ask_render(generation).await? {
                    return Ok(gone());
                }
                return Ok(RollbackState::Wait(left.min(RENDER_POLL)));
            }
            RenderState::Failed(why) => {
                return Ok(RollbackState::Finished(format!(
                    "put the previous TLS settings back, but the provisioner could not render \
                     them: {why}"
                )));
            }
            RenderState::NotPaused => {
                return Ok(RollbackState::Finished(
                    "put the previous TLS settings back; the pause was lifted before the \
                     PetSet was rendered for them"
                        .into(),
                ));
            }
        }
        self.move_pods_back(left).await
    }

    /// Restart the next pod that does not run the PetSet's template, once the PetSet controller has
    /// seen the template; finished when every pod runs it and is Ready.
    async fn move_pods_back(&mut self, left: Duration) -> Result<RollbackState> {
        // read after the render
        let petset = names::petset(&self.pgpool);
        let Some(ps) = self.petsets().get_opt(&petset).await? else {
            return Ok(RollbackState::Finished(format!(
                "PetSet {petset} no longer exists"
            )));
        };
        if !plan::petset_observed(&ps) {
            return Ok(RollbackState::Wait(self.wait_dur(left)));
        }
        let pods = self.list_pods().await?;
        let mut ours = Vec::new();
        for i in 0..ps.spec.replicas() {
            match pods.get(&names::pod(&petset, i)) {
                Some(pod) if !plan::pod_terminating(pod) => ours.push(pod),
                // on its way out or back: look again
                _ => return Ok(RollbackState::Wait(self.wait_dur(left))),
            }
        }
        if let Some(pod) = plan::next_to_move(&ours, &ps) {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let note = "to bring back the previous TLS settings";
            let ready = plan::pod_ready(pod);
            let wait = self
                .evict_for_rollback(&name, &uid, ready, note, left)
                .await?;
            return Ok(RollbackState::Wait(
                wait.unwrap_or(Duration::from_millis(50)),
            ));
        }
        if ours.iter().any(|p| !plan::pod_ready(p)) {
            return Ok(RollbackState::Wait(self.wait_dur(left)));
        }
        Ok(RollbackState::Finished(
            "rolled back: the previous TLS settings are rendered and every pod runs them".into(),
        ))
    }
}
