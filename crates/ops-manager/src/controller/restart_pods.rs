//! Step RestartPods: evict the pods one at a time, each after the previous one is back and
//! Ready (on the target images for UpdateVersion).

use k8s_openapi::api::core::v1::Pod;
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestType, names};

use super::cluster::Eviction;
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, PodStep};

impl Run<'_> {
    /// Step RestartPods: act on the first pod that is not done, until all are.
    pub(super) async fn step_restart_pods(&mut self) -> Result<Flow> {
        let target = match self.t {
            OpsRequestType::UpdateVersion => match self.target_images().await? {
                Some(images) => Some(images),
                None => {
                    let msg = format!(
                        "target PgpoolVersion {:?} disappeared during the update",
                        plan::target_version(&self.req).unwrap_or("")
                    );
                    return self.fail_step("VersionNotFound", msg).await;
                }
            },
            OpsRequestType::Restart
            | OpsRequestType::HorizontalScaling
            | OpsRequestType::VerticalScaling
            | OpsRequestType::Reconfigure
            | OpsRequestType::RotateAuth
            | OpsRequestType::ReconfigureTls => None,
        };
        let petset = names::petset(&self.pgpool);
        // Each pass acts on the first pod that is not done; after acting, look again.
        'pass: loop {
            let Some(ps) = self.petsets().get_opt(&petset).await? else {
                let msg = format!("PetSet {petset} disappeared while restarting pods");
                return self.fail_step("PetSetNotFound", msg).await;
            };
            let pods = self.list_pods().await?;
            for i in 0..ps.spec.replicas() {
                let pod_name = names::pod(&petset, i);
                let pod = pods.get(&pod_name);
                let step = plan::pod_step(self.t, &pod_name, pod, self.conds(), target.as_ref());
                if matches!(step, PodStep::StartEvict { .. } | PodStep::Evict { .. })
                    && !plan::petset_observed(&ps)
                {
                    // The replacement pod must come from the new template: wait until the
                    // PetSet controller has seen it (its status write wakes this request).
                    // The eviction is recorded now, in the write made before waiting, so that
                    // the eviction itself is all that is left to do once it has.
                    if let PodStep::StartEvict { uid } = &step {
                        let msg = plan::evict_message(&pod_name, uid);
                        let evict = ops::evict_pod(&pod_name);
                        if self.set(&evict, conditions::UNKNOWN, "EvictingPod", &msg) {
                            self.unsaved = true;
                        }
                        self.event("EvictPod", &msg);
                    }
                    return self.wait_petset_observed(&petset).await;
                }
                match step {
                    PodStep::Done => continue,
                    PodStep::StartEvict { uid } => {
                        let msg = plan::evict_message(&pod_name, &uid);
                        self.record(
                            &ops::evict_pod(&pod_name),
                            conditions::UNKNOWN,
                            "EvictingPod",
                            &msg,
                            Some("EvictPod"),
                        )
                        .await?;
                        match self.evict(&pod_name, &uid).await? {
                            Eviction::Done => {
                                self.evicted(&pod_name, &uid).await?;
                                continue 'pass;
                            }
                            Eviction::Refused(why) => {
                                return self.eviction_refused(&pod_name, pod, &uid, why).await;
                            }
                        }
                    }
                    PodStep::Evict { uid } => match self.evict(&pod_name, &uid).await? {
                        Eviction::Done => {
                            self.evicted(&pod_name, &uid).await?;
                            continue 'pass;
                        }
                        Eviction::Refused(why) => {
                            return self.eviction_refused(&pod_name, pod, &uid, why).await;
                        }
                    },
                    PodStep::Evicted => {
                        let uid = self
                            .cond(&ops::evict_pod(&pod_name))
                            .and_then(|c| plan::recorded_uid(&c.message).map(str::to_string))
                            .unwrap_or_default();
                        self.evicted(&pod_name, &uid).await?;
                        continue 'pass;
                    }
                    PodStep::Ready => {
                        let check = ops::check_pod_running(&pod_name);
                        let msg = format!("pod {pod_name} is running and Ready");
                        // Written with the next pod's EvictPod record (or the step's end);
                        // nothing changed in the cluster, so the next pod is decided from
                        // the same list.
                        self.complete(&check, "PodRunning", "CheckPodRunning", "PodReady", &msg);
                        continue;
                    }
                    PodStep::Wait { why } => {
                        let check = ops::check_pod_running(&pod_name);
                        if self.cond(&check).is_none() {
                            self.record(&check, conditions::UNKNOWN, "WaitingForPod", &why, None)
                                .await?;
                        }
                        let msg = format!(
                            "pod {pod_name} did not become Ready{} within {}: {why}",
                            target
                                .as_ref()
                                .map(|t| format!(" on {}", t.pgpool))
                                .unwrap_or_default(),
                            self.timeout_text()
                        );
                        let left = self.time_left(&check);
                        return self.wait_or_fail(left, "PodNotReady", msg).await;
                    }
                    PodStep::Broken { why } => {
                        let msg = format!("{why}: the new pod will not become Ready");
                        return self.fail_step("PodNotReady", msg).await;
                    }
                }
            }
            break;
        }
        let msg = format!("all pods of Pgpool {} were restarted", self.pgpool);
        self.complete_named(ops::RESTART_PODS, &msg);
        Ok(Flow::Next)
    }

    /// Wait (until the step's timeout, counted from the last step) for the PetSet controller
    /// to observe the PetSet's current generation.
    pub(super) async fn wait_petset_observed(&mut self, petset: &str) -> Result<Flow> {
        let left = [ops::UPDATE_PETSETS, plan::start_condition(self.t)]
            .into_iter()
            .find(|t| self.cond(t).is_some())
            .and_then(|t| self.time_left(t));
        let msg = format!(
            "the PetSet controller did not take up the new spec of PetSet {petset} within {} \
             (status.observedGeneration stayed behind metadata.generation)",
            self.timeout_text()
        );
        self.wait_or_fail(left, "PetSetNotObserved", msg).await
    }

    /// Record that `pod` (with `uid`) was evicted; its replacement is waited for next.
    pub(super) async fn evicted(&mut self, pod: &str, uid: &str) -> Result<()> {
        self.ctx.refusals.forget(&uid.to_string());
        self.set(
            &ops::evict_pod(pod),
            conditions::TRUE,
            "PodEvicted",
            format!("evicted pod {pod} (uid {uid})"),
        );
        self.set(
            &ops::check_pod_running(pod),
            conditions::UNKNOWN,
            "WaitingForPod",
            format!("waiting for the replacement of pod {pod} to be Ready"),
        );
        self.save().await?;
        self.step_done("EvictPod");
        Ok(())
    }

    /// A PodDisruptionBudget refused the eviction: retry with backoff
    /// ([`super::retry::eviction_backoff`]) until the step's timeout.
    /// The `EvictPod--<pod>` condition says why and until when (written only when that
    /// changes, not on every retry).
    pub(super) async fn eviction_refused(
        &mut self,
        pod: &str,
        pod_obj: Option<&Pod>,
        uid: &str,
        why: String,
    ) -> Result<Flow> {
        let refusal = self.ctx.refusals.failed(uid.to_string(), None);
        let c = self.cond(&ops::evict_pod(pod)).cloned();
        match c.and_then(|c| Self::remaining(&c, self.timeout()).map(|left| (c, left))) {
            Some((c, left)) => {
                tracing::info!(pod, attempt = refusal.attempt, reason = %why, "eviction refused; will retry");
                let budget = match pod_obj {
                    Some(p) => self.budget_of(p).await,
                    None => None,
                };
                let message = plan::eviction_refused_message(
                    pod,
                    uid,
                    &why,
                    budget.as_ref(),
                    &Self::deadline(&c, self.timeout()),
                );
                self.record(
                    &ops::evict_pod(pod),
                    conditions::UNKNOWN,
                    "EvictionRefused",
                    &message,
                    None,
                )
                .await?;
                Ok(Flow::Wait(refusal.delay.min(left)))
            }
            None => {
                self.ctx.refusals.forget(&uid.to_string());
                let msg = format!(
                    "pod {pod} could not be evicted within {}: {why}",
                    self.timeout_text()
                );
                self.fail_step("EvictionTimeout", msg).await
            }
        }
    }
}
