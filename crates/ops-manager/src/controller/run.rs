//! One reconcile of one request ([`Run`]) and the helpers every step uses: conditions on the
//! local copy, status writes, deadlines, events, finalizers and step metrics.

use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use operator_kit::api::is_not_found;
use operator_kit::finalizers;
use pgpool_api::conditions::{self, NewCondition};
use pgpool_api::{OpsRequestPhase, OpsRequestType, PgpoolOpsRequest};

use super::context::Ctx;
use super::error::Result;
use crate::REQUEST_FINALIZER;

/// What a step tells the driver.
pub(super) enum Flow {
    /// Go on with the next step now.
    Next,
    /// Wait for a change (watch events), at most this long.
    Wait(Duration),
}

/// One reconcile of one request.
pub(super) struct Run<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) reqs: Api<PgpoolOpsRequest>,
    pub(super) req: PgpoolOpsRequest,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) t: OpsRequestType,
    pub(super) pgpool: String,
    /// Conditions set on the local copy that record a step already done and are written with
    /// the next status write (at the latest before the reconcile waits). Losing them in a
    /// crash only repeats an idempotent check.
    pub(super) unsaved: bool,
}

impl<'a> Run<'a> {
    /// A reconcile of `req`, read with `reqs`.
    pub(super) fn new(ctx: &'a Ctx, reqs: Api<PgpoolOpsRequest>, req: PgpoolOpsRequest) -> Self {
        let ns = req.namespace().unwrap_or_default();
        let name = req.name_any();
        let t = req.spec.type_;
        let pgpool = req.spec.database_ref.name.clone();
        Self {
            ctx,
            reqs,
            req,
            ns,
            name,
            t,
            pgpool,
            unsaved: false,
        }
    }

    /// The request's conditions (local copy).
    pub(super) fn conds(&self) -> &[Condition] {
        self.req
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[])
    }

    /// Condition `type_` of the local copy.
    pub(super) fn cond(&self, type_: &str) -> Option<&Condition> {
        conditions::get(self.conds(), type_)
    }

    /// Set a condition on the local copy; `save` writes it. Returns true when it changed.
    pub(super) fn set(
        &mut self,
        type_: &str,
        status: &str,
        reason: &str,
        message: impl Into<String>,
    ) -> bool {
        let generation = self.req.metadata.generation;
        let st = self.req.status.get_or_insert_with(Default::default);
        conditions::set(
            &mut st.conditions,
            NewCondition {
                type_,
                status,
                reason,
                message: message.into(),
                observed_generation: generation,
            },
            Utc::now(),
        )
    }

    /// Like [`Self::set`] for a condition that records a finished step: it is written with
    /// the next status write, which saves one round trip per step.
    pub(super) fn set_done(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        if self.set(type_, conditions::TRUE, reason, message) {
            self.unsaved = true;
        }
    }

    /// Write what [`Self::set_done`] left unwritten.
    pub(super) async fn flush(&mut self) -> Result<()> {
        if self.unsaved {
            self.save().await?;
        }
        Ok(())
    }

    /// Set the phase on the local copy; `save` writes it.
    pub(super) fn set_phase(&mut self, phase: OpsRequestPhase) {
        self.req.status.get_or_insert_with(Default::default).phase = Some(phase);
    }

    /// Write the status with the resourceVersion last read (a 409 ends the reconcile and the
    /// request is looked at again with fresh data).
    pub(super) async fn save(&mut self) -> Result<()> {
        let generation = self.req.metadata.generation;
        self.req
            .status
            .get_or_insert_with(Default::default)
            .observed_generation = generation;
        self.req = self
            .reqs
            .replace_status(&self.name, &PostParams::default(), &self.req)
            .await?;
        self.unsaved = false;
        Ok(())
    }

    /// The step timeout (`spec.timeout`, default 5 minutes).
    pub(super) fn timeout(&self) -> Duration {
        self.req
            .spec
            .timeout()
            .unwrap_or(pgpool_api::ops::DEFAULT_TIMEOUT)
    }

    /// `spec.timeout` as the user wrote it, for messages.
    pub(super) fn timeout_text(&self) -> String {
        self.req
            .spec
            .timeout
            .clone()
            .unwrap_or_else(|| "5m".to_string())
    }

    /// Time left before `deadline_after` has passed since condition `c` last changed. The
    /// transition time has whole seconds, so one second is added: the wait is never shorter.
    pub(super) fn remaining(c: &Condition, deadline_after: Duration) -> Option<Duration> {
        let start_ms = i128::from(c.last_transition_time.0.as_second()) * 1000;
        let deadline_ms = start_ms + deadline_after.as_millis() as i128 + 1000;
        let now_ms = i128::from(Utc::now().timestamp_millis());
        let left = deadline_ms - now_ms;
        (left > 0).then(|| Duration::from_millis(left as u64))
    }

    /// When [`Self::remaining`] runs out, in RFC 3339 (whole seconds, UTC).
    pub(super) fn deadline(c: &Condition, deadline_after: Duration) -> String {
        let start_ms = c.last_transition_time.0.as_second() * 1000;
        let ms = start_ms
            .saturating_add(i64::try_from(deadline_after.as_millis()).unwrap_or(i64::MAX / 2))
            .saturating_add(1000);
        chrono::DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }

    /// Wait for a change, at most `d` (bounded by the safety-net requeue, at least 50 ms).
    pub(super) fn wait(&self, d: Duration) -> Flow {
        Flow::Wait(d.min(self.ctx.max_requeue).max(Duration::from_millis(50)))
    }

    /// `d` bounded like [`Self::wait`].
    pub(super) fn wait_dur(&self, d: Duration) -> Duration {
        d.min(self.ctx.max_requeue).max(Duration::from_millis(50))
    }

    /// Emit a Normal event about the request.
    pub(super) fn event(&self, reason: &str, message: &str) {
        self.ctx.events.normal(&self.req, reason, message);
    }

    /// Emit a Warning event about the request.
    pub(super) fn warning(&self, reason: &str, message: &str) {
        self.ctx.events.warning(&self.req, reason, message);
    }

    /// Record the end of a step for the step-duration metric.
    pub(super) fn step_done(&self, step: &str) {
        let uid = self.req.metadata.uid.clone().unwrap_or_default();
        let now = Instant::now();
        let since = self
            .ctx
            .marks
            .lock()
            .ok()
            .and_then(|mut m| m.insert(uid, now));
        let seconds = match since {
            Some(t) => now.duration_since(t).as_secs_f64(),
            None => {
                // After a restart: since the latest recorded transition.
                let latest = self
                    .conds()
                    .iter()
                    .map(|c| c.last_transition_time.0.as_second())
                    .max();
                latest
                    .map(|s| (Utc::now().timestamp() - s).max(0) as f64)
                    .unwrap_or(0.0)
            }
        };
        self.ctx.metrics.step(self.t, step, seconds);
    }

    /// Set a condition and, when that changed it, write the status and emit a Normal event
    /// (reason `event`, the same message) if `event` is given. Returns true when it changed.
    pub(super) async fn record(
        &mut self,
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
        event: Option<&str>,
    ) -> Result<bool> {
        if !self.set(type_, status, reason, message) {
            return Ok(false);
        }
        self.save().await?;
        if let Some(event) = event {
            self.event(event, message);
        }
        Ok(true)
    }

    /// A step (or one pod's part of it) is done: condition `type_` becomes True with `reason`
    /// (written with the next status write, see [`Self::set_done`]), the step-duration metric
    /// records `step`, and a Normal event `event` carries the message.
    pub(super) fn complete(
        &mut self,
        type_: &str,
        reason: &str,
        step: &str,
        event: &str,
        message: &str,
    ) {
        self.set_done(type_, reason, message);
        self.step_done(step);
        self.event(event, message);
    }

    /// [`Self::complete`] for a step whose condition, reason, metric and event all carry the
    /// step's own name (KubeDB's style for `UpdatePetSets`, `RestartPods`, `UpdateDatabase`...).
    pub(super) fn complete_named(&mut self, step: &str, message: &str) {
        self.complete(step, step, step, step, message);
    }

    /// Time left before the step's timeout (`spec.timeout`), counted from the last change of
    /// condition `type_`; `None` when it has passed or the condition is not there.
    pub(super) fn time_left(&self, type_: &str) -> Option<Duration> {
        self.cond(type_)
            .and_then(|c| Self::remaining(c, self.timeout()))
    }

    /// True when the request carries [`REQUEST_FINALIZER`].
    pub(super) fn has_finalizer(&self) -> bool {
        finalizers::has(&self.req, REQUEST_FINALIZER)
    }

    /// Take the metadata of the patched request (its finalizers and new resourceVersion);
    /// the status being built locally stays.
    fn take_metadata(&mut self, patched: Option<PgpoolOpsRequest>) {
        if let Some(patched) = patched {
            self.req.metadata = patched.metadata;
        }
    }

    /// Add [`REQUEST_FINALIZER`] unless it is there (guarded by the resourceVersion read).
    pub(super) async fn add_finalizer(&mut self) -> Result<()> {
        let patched = finalizers::add(&self.reqs, &self.req, REQUEST_FINALIZER).await?;
        self.take_metadata(patched);
        Ok(())
    }

    /// Remove [`REQUEST_FINALIZER`] if it is there (guarded by the resourceVersion read; a
    /// request already gone is fine).
    pub(super) async fn remove_finalizer(&mut self) -> Result<()> {
        match finalizers::remove(&self.reqs, &self.req, REQUEST_FINALIZER).await {
            Ok(patched) => {
                self.take_metadata(patched);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
