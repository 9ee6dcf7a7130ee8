//! Prometheus metrics of the ops-manager (DESIGN.md §7). Labels are bounded: request types,
//! phases, results and step names, never object names.

use operator_kit::reconcile_metrics::{ControllerMetrics, ReconcileMetrics};
use pgpool_api::{OpsRequestPhase, OpsRequestType, PgpoolOpsRequest};
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry};

/// The controller label of the reconcile metrics (`pgpool_operator_reconcile_total` and
/// friends, see [`operator_kit::reconcile_metrics`]).
pub const CONTROLLER: &str = "pgpoolopsrequest";

/// The ops-manager's metrics, registered in the registry given to [`crate::run`].
#[derive(Clone)]
pub struct Metrics {
    /// `pgpool_operator_ops_requests{type,phase}`: requests by type and phase.
    pub ops_requests: IntGaugeVec,
    /// `pgpool_operator_ops_request_duration_seconds{type,result}`: from start to end.
    pub ops_request_duration: HistogramVec,
    /// `pgpool_operator_ops_step_duration_seconds{type,step}`: one step of a request.
    pub ops_step_duration: HistogramVec,
    /// `pgpool_operator_reconcile_total{controller,result}`,
    /// `pgpool_operator_reconcile_errors_total{controller,error}` and
    /// `pgpool_operator_reconcile_duration_seconds{controller}`, as controller [`CONTROLLER`].
    pub reconcile: ControllerMetrics,
}

impl Metrics {
    /// Create the metrics and register them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let ops_requests = IntGaugeVec::new(
            Opts::new(
                "pgpool_operator_ops_requests",
                "PgpoolOpsRequests by type and phase",
            ),
            &["type", "phase"],
        )?;
        let ops_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "pgpool_operator_ops_request_duration_seconds",
                "Time from the start of a PgpoolOpsRequest to its end, by type and result",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
            ]),
            &["type", "result"],
        )?;
        let ops_step_duration = HistogramVec::new(
            HistogramOpts::new(
                "pgpool_operator_ops_step_duration_seconds",
                "Time one step of a PgpoolOpsRequest took, by type and step",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["type", "step"],
        )?;
        registry.register(Box::new(ops_requests.clone()))?;
        registry.register(Box::new(ops_request_duration.clone()))?;
        registry.register(Box::new(ops_step_duration.clone()))?;
        let reconcile = ReconcileMetrics::register(registry)?.controller(CONTROLLER);
        for t in OpsRequestType::ALL {
            for p in OpsRequestPhase::ALL {
                ops_requests
                    .with_label_values(&[t.as_str(), p.as_str()])
                    .set(0);
            }
        }
        Ok(Self {
            ops_requests,
            ops_request_duration,
            ops_step_duration,
            reconcile,
        })
    }

    /// Recount `ops_requests` from the requests known now.
    pub fn count_requests<'a>(&self, requests: impl IntoIterator<Item = &'a PgpoolOpsRequest>) {
        let mut counts = [[0i64; OpsRequestPhase::ALL.len()]; OpsRequestType::ALL.len()];
        for r in requests {
            let t = OpsRequestType::ALL
                .iter()
                .position(|t| *t == r.spec.type_)
                .unwrap_or(0);
            let p = crate::plan::phase_of(r);
            let p = OpsRequestPhase::ALL
                .iter()
                .position(|x| *x == p)
                .unwrap_or(0);
            counts[t][p] += 1;
        }
        for (ti, t) in OpsRequestType::ALL.iter().enumerate() {
            for (pi, p) in OpsRequestPhase::ALL.iter().enumerate() {
                self.ops_requests
                    .with_label_values(&[t.as_str(), p.as_str()])
                    .set(counts[ti][pi]);
            }
        }
    }

    /// Record a finished step.
    pub fn step(&self, t: OpsRequestType, step: &str, seconds: f64) {
        self.ops_step_duration
            .with_label_values(&[t.as_str(), step])
            .observe(seconds.max(0.0));
    }

    /// Record a finished request.
    pub fn finished(&self, t: OpsRequestType, result: OpsRequestPhase, seconds: f64) {
        self.ops_request_duration
            .with_label_values(&[t.as_str(), result.as_str()])
            .observe(seconds.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_counts() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).expect("register");
        assert!(
            Metrics::register(&registry).is_err(),
            "a second registration in one registry is refused"
        );
        let req: PgpoolOpsRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "ops.kubedb.com/v1alpha1",
            "kind": "PgpoolOpsRequest",
            "metadata": {"name": "r", "namespace": "demo"},
            "spec": {"type": "Restart", "databaseRef": {"name": "pp"}},
            "status": {"phase": "Progressing"}
        }))
        .expect("request");
        m.count_requests([&req, &req]);
        assert_eq!(
            m.ops_requests
                .with_label_values(&["Restart", "Progressing"])
                .get(),
            2
        );
        m.count_requests([]);
        assert_eq!(
            m.ops_requests
                .with_label_values(&["Restart", "Progressing"])
                .get(),
            0
        );
        m.finished(OpsRequestType::Restart, OpsRequestPhase::Failed, 3.0);
        m.step(OpsRequestType::Restart, "RestartPods", 1.0);
        m.reconcile.success(std::time::Duration::ZERO);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        assert!(text.contains("pgpool_operator_ops_request_duration_seconds_count{result=\"Failed\",type=\"Restart\"} 1"), "{text}");
        assert!(text.contains("pgpool_operator_reconcile_total{controller=\"pgpoolopsrequest\",result=\"success\"} 1"), "{text}");
    }
}
