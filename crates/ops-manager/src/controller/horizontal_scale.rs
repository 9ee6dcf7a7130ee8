//! Step HorizontalScale: set the PetSet's replica count and wait for the new pods to be
//! Ready (scale-up), or evict the highest pods one at a time, lowering the count after each
//! (scale-down; see [`crate::plan::scale_action`]).

use pgpool_api::conditions::{self, ops};
use pgpool_api::names;

use super::cluster::Eviction;
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, ScaleAction};

impl Run<'_> {
    /// Step HorizontalScale.
    pub(super) async fn step_horizontal_scale(&mut self) -> Result<Flow> {
        let Some(target) = plan::target_replicas(&self.req) else {
            let msg = "spec.horizontalScaling.node is missing: set it to the number of pods wanted"
                .to_string();
            return self.fail_step("InvalidReplicas", msg).await;
        };
        let Some(pp) = self.fetch_pgpool().await? else {
            return self.fail_pgpool_gone().await;
        };
        // spec.replicas changes only in the next step: it is the count before the scale.
        let from = pp.spec.replicas();
        let (cond, reason) = if target > from {
            (ops::HORIZONTAL_SCALE_UP, "HorizontalScaleUp")
        } else {
            (ops::HORIZONTAL_SCALE_DOWN, "HorizontalScaleDown")
        };
        let petset = names::petset(&self.pgpool);
        if self.cond(cond).is_none() {
            let msg = format!("scaling PetSet {petset} from {from} to {target} pods");
            self.record(
                cond,
                conditions::UNKNOWN,
                "Scaling",
                &msg,
                Some("HorizontalScale"),
            )
            .await?;
        }
        loop {
            let Some(ps) = self.petsets().get_opt(&petset).await? else {
                let msg = format!("PetSet {petset} disappeared while scaling");
                return self.fail_step("PetSetNotFound", msg).await;
            };
            let replicas = ps.spec.replicas();
            let pods = self.list_pods().await?;
            match plan::scale_action(&petset, from, target, replicas, &pods, self.conds()) {
                ScaleAction::SetReplicas(n) => {
                    if !self.set_petset_replicas(n).await? {
                        let msg = format!("PetSet {petset} disappeared while scaling");
                        return self.fail_step("PetSetNotFound", msg).await;
                    }
                    self.event(
                        "PatchPetSet",
                        &format!("PetSet {petset}: replicas {replicas} -> {n}"),
                    );
                    if n < replicas {
                        self.scaled_down(&names::pod(&petset, n)).await?;
                    }
                }
                ScaleAction::Evict { pod, uid, record } => {
                    let evict = ops::evict_pod(&pod);
                    if record {
                        let msg = plan::evict_message(&pod, &uid);
                        self.record(
                            &evict,
                            conditions::UNKNOWN,
                            "EvictingPod",
                            &msg,
                            Some("EvictPod"),
                        )
                        .await?;
                    }
                    self.lower_budget(replicas).await?;
                    match self.evict(&pod, &uid).await? {
                        Eviction::Done => {
                            self.ctx.refusals.forget(&uid);
                            // Lowered right away, so that the PetSet controller does not
                            // create the pod again (a crash here is taken up by the next
                            // pass: the pod is gone, so the count is lowered then).
                            self.set_petset_replicas(replicas - 1).await?;
                            self.scaled_down(&pod).await?;
                        }
                        Eviction::Refused(why) => {
                            return self.eviction_refused(&pod, pods.get(&pod), &uid, why).await;
                        }
                    }
                }
                ScaleAction::PodReady { pod } => {
                    let msg = format!("pod {pod} is running and Ready");
                    self.complete(
                        &ops::check_pod_running(&pod),
                        "PodRunning",
                        "CheckPodRunning",
                        "PodReady",
                        &msg,
                    );
                }
                ScaleAction::Wait { why } => {
                    let msg = format!(
                        "PetSet {petset} did not reach {target} Ready pods within {}: {why}",
                        self.timeout_text()
                    );
                    let left = self.time_left(cond);
                    return self.wait_or_fail(left, "ScaleTimeout", msg).await;
                }
                ScaleAction::Broken { why } => {
                    let msg = format!("{why}: the new pod will not become Ready");
                    return self.fail_step("PodNotReady", msg).await;
                }
                ScaleAction::Done => {
                    // An eviction whose replica change was written just before a restart
                    // has no True condition yet: the pods above the target are gone now.
                    for k in target..from {
                        self.scaled_down(&names::pod(&petset, k)).await?;
                    }
                    let msg = if target > from {
                        format!("scaled up PetSet {petset} to {target} Ready pods")
                    } else {
                        format!("scaled down PetSet {petset} to {target} pods")
                    };
                    self.complete(cond, reason, cond, reason, &msg);
                    return Ok(Flow::Next);
                }
            }
        }
    }

    /// Record that `pod` was removed by the scale-down (its eviction condition becomes True).
    async fn scaled_down(&mut self, pod: &str) -> Result<()> {
        let evict = ops::evict_pod(pod);
        let Some(c) = self.cond(&evict).cloned() else {
            return Ok(());
        };
        if c.status == conditions::TRUE {
            return Ok(());
        }
        let uid = plan::recorded_uid(&c.message)
            .unwrap_or_default()
            .to_string();
        self.set(
            &evict,
            conditions::TRUE,
            "PodEvicted",
            format!("evicted pod {pod} (uid {uid}) and lowered the replicas below it"),
        );
        self.save().await?;
        self.step_done("EvictPod");
        Ok(())
    }
}
