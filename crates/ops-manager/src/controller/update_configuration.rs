//! Step UpdateConfiguration (Reconfigure): record what the Pgpool's configuration was, write
//! the Secret of `applyConfig`, change the Pgpool spec (it is paused), then wait for the
//! provisioner to render the config Secret from that spec.

use pgpool_api::conditions::{self, ops};
use serde_json::json;

use super::config_objects::{RENDER_POLL, WAITING_FOR_RENDER};
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdateConfiguration.
    pub(super) async fn step_update_configuration(&mut self) -> Result<Flow> {
        let step = ops::UPDATE_CONFIGURATION;
        let msg = format!("changing the configuration of Pgpool {}", self.pgpool);
        let Some((pp, changed)) = self
            .begin_spec_change(step, "UpdatingConfiguration", &msg)
            .await?
        else {
            return self.fail_pgpool_gone().await;
        };
        if !changed {
            let planned = match self.previous() {
                Some(stored) => stored,
                None => {
                    let plan = match self.plan_reconfigure(&pp).await? {
                        Ok(plan) => plan,
                        Err((reason, msg)) => return self.fail_step(reason, msg).await,
                    };
                    let stored = json!({ "patch": plan.patch, "undo": plan.undo });
                    self.store_previous(&stored).await?;
                    stored
                }
            };
            // the Secret of applyConfig is written before the spec points to it
            let name = planned["patch"]["spec"]["configSecret"]["name"].as_str();
            let ours = plan::reconfigure_secret_name(&self.pgpool, &self.name);
            if name == Some(ours.as_str()) && self.fetch_secret(&ours).await?.is_none() {
                match self.plan_reconfigure(&pp).await? {
                    Ok(plan) => {
                        if let Some((name, text)) = &plan.secret {
                            self.create_config_source(&pp, name, text).await?;
                        }
                    }
                    Err((reason, msg)) => return self.fail_step(reason, msg).await,
                }
            }
            if self.patch_pgpool(&planned["patch"]).await?.is_none() {
                return self.fail_pgpool_gone().await;
            }
            let msg = format!(
                "changed the configuration of Pgpool {}; waiting for the provisioner to render it",
                self.pgpool
            );
            self.record(step, conditions::UNKNOWN, WAITING_FOR_RENDER, &msg, None)
                .await?;
        }
        let Some(pp) = self.fetch_pgpool().await? else {
            return self.fail_pgpool_gone().await;
        };
        let generation = pp.metadata.generation.unwrap_or_default();
        let rendered = self
            .config_secret()
            .await?
            .is_some_and(|s| plan::rendered_since(&s, generation));
        if !rendered {
            return self.wait_for_render(step).await;
        }
        let msg = format!(
            "the provisioner rendered the new configuration of Pgpool {}",
            self.pgpool
        );
        self.complete_named(step, &msg);
        Ok(Flow::Next)
    }

    /// Poll for the render until the step's timeout, then fail.
    pub(super) async fn wait_for_render(&mut self, step: &str) -> Result<Flow> {
        let msg = format!(
            "the provisioner did not render the config Secret {} of Pgpool {} within {}: check \
             that pgpool-provisioner runs and the Pgpool's status for a configuration problem",
            pgpool_api::names::config_secret(&self.pgpool),
            self.pgpool,
            self.timeout_text()
        );
        match self.time_left(step) {
            Some(left) => Ok(self.wait(left.min(RENDER_POLL))),
            None => self.fail_step("ConfigNotRendered", msg).await,
        }
    }
}
