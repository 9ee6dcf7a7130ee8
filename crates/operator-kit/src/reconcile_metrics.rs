//! Reconcile metrics every controller reports the same way, under a bounded `controller`
//! label (prefix `pgpool_operator_`):
//!
//! - `pgpool_operator_reconcile_total{controller,result}`: reconciles by result (`success`,
//!   `error`);
//! - `pgpool_operator_reconcile_errors_total{controller,error}`: failed reconciles by kind of
//!   error (a fixed word per error variant, see [`ErrorLabel`]);
//! - `pgpool_operator_reconcile_duration_seconds{controller}`: how long reconciles take.
//!
//! Register the families once per registry with [`ReconcileMetrics::register`] and give each
//! controller its handle with [`ReconcileMetrics::controller`]. Labels are `&'static str`
//! on purpose: controller names and error kinds are fixed in the code, never object names.

use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Name of the reconcile counter.
pub const RECONCILE_TOTAL: &str = "pgpool_operator_reconcile_total";
/// Name of the failed-reconcile counter by error kind.
pub const RECONCILE_ERRORS_TOTAL: &str = "pgpool_operator_reconcile_errors_total";
/// Name of the reconcile duration histogram.
pub const RECONCILE_DURATION: &str = "pgpool_operator_reconcile_duration_seconds";
/// `result` label of a successful reconcile.
pub const RESULT_SUCCESS: &str = "success";
/// `result` label of a failed reconcile.
pub const RESULT_ERROR: &str = "error";

/// Buckets of the duration histogram, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A reconcile error's kind as a metric label: one fixed word per variant (e.g. `kube`,
/// `conflict`, `invalid`), never the message.
pub trait ErrorLabel {
    /// The `error` label of `pgpool_operator_reconcile_errors_total`.
    fn metric_label(&self) -> &'static str;
}

/// The three reconcile metric families of one registry.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    total: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
}

impl ReconcileMetrics {
    /// Creates the families and registers them in `registry`.
    ///
    /// Register once per registry and clone the result (or its [`controller`](Self::controller)
    /// handles) to every controller: a registry that already holds the families keeps the
    /// first set, and this set then counts without being exported (a debug line says so).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let total = IntCounterVec::new(
            Opts::new(RECONCILE_TOTAL, "Reconciles by controller and result."),
            &["controller", "result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                RECONCILE_ERRORS_TOTAL,
                "Failed reconciles by controller and kind of error.",
            ),
            &["controller", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(RECONCILE_DURATION, "Duration of reconciles by controller.")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["controller"],
        )?;
        for collector in [
            Box::new(total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
        ] {
            match registry.register(collector) {
                Ok(()) => {}
                Err(prometheus::Error::AlreadyReg) => {
                    tracing::debug!("reconcile metrics already registered");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            total,
            errors,
            duration,
        })
    }

    /// The handle `controller` reports with. Both `result` series exist from then on, so
    /// `rate()` works before the first failure.
    pub fn controller(&self, controller: &'static str) -> ControllerMetrics {
        for result in [RESULT_SUCCESS, RESULT_ERROR] {
            self.total.with_label_values(&[controller, result]);
        }
        ControllerMetrics {
            metrics: self.clone(),
            controller,
        }
    }
}

/// One controller's reconcile metrics (cheap to clone).
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    metrics: ReconcileMetrics,
    controller: &'static str,
}

impl ControllerMetrics {
    /// The `controller` label.
    pub fn name(&self) -> &'static str {
        self.controller
    }

    /// Records a successful reconcile that took `duration`.
    pub fn success(&self, duration: Duration) {
        self.record(RESULT_SUCCESS, duration);
    }

    /// Records a failed reconcile of kind `error` that took `duration`.
    pub fn failure(&self, error: &'static str, duration: Duration) {
        self.metrics
            .errors
            .with_label_values(&[self.controller, error])
            .inc();
        self.record(RESULT_ERROR, duration);
    }

    /// Records the outcome of a reconcile that took `duration`.
    pub fn observe<T, E: ErrorLabel>(&self, result: &Result<T, E>, duration: Duration) {
        match result {
            Ok(_) => self.success(duration),
            Err(e) => self.failure(e.metric_label(), duration),
        }
    }

    /// Starts timing a reconcile; finish with [`ReconcileTimer::observe`].
    pub fn start(&self) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    fn record(&self, result: &'static str, duration: Duration) {
        self.metrics
            .total
            .with_label_values(&[self.controller, result])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[self.controller])
            .observe(duration.as_secs_f64());
    }
}

/// A running reconcile's clock (from [`ControllerMetrics::start`]).
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: ControllerMetrics,
    started: Instant,
}

impl ReconcileTimer {
    /// Records `result` with the time since the timer started.
    pub fn observe<T, E: ErrorLabel>(self, result: &Result<T, E>) {
        self.metrics.observe(result, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = registry.gather().into_iter().find(|f| f.name() == name)?;
        let metric = family.get_metric().iter().find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })?;
        Some(
            if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                metric.get_histogram().get_sample_count() as f64
            } else {
                metric.get_counter().value()
            },
        )
    }

    enum TestError {
        Kube,
        Conflict,
    }

    impl ErrorLabel for TestError {
        fn metric_label(&self) -> &'static str {
            match self {
                TestError::Kube => "kube",
                TestError::Conflict => "conflict",
            }
        }
    }

    #[test]
    fn counts_by_controller_result_and_error_kind() {
        let registry = Registry::new();
        let metrics = ReconcileMetrics::register(&registry).unwrap();
        let pgpool = metrics.controller("pgpool");
        let petset = metrics.controller("petset");
        let ms = Duration::from_millis(3);
        pgpool.observe(&Ok::<(), TestError>(()), ms);
        pgpool.observe(&Ok::<(), TestError>(()), ms);
        pgpool.observe(&Err::<(), _>(TestError::Kube), ms);
        pgpool.observe(&Err::<(), _>(TestError::Conflict), ms);
        petset.failure("invalid", ms);
        let total = |c, r| {
            sample(
                &registry,
                RECONCILE_TOTAL,
                &[("controller", c), ("result", r)],
            )
        };
        assert_eq!(total("pgpool", RESULT_SUCCESS), Some(2.0));
        assert_eq!(total("pgpool", RESULT_ERROR), Some(2.0));
        assert_eq!(total("petset", RESULT_SUCCESS), Some(0.0));
        assert_eq!(total("petset", RESULT_ERROR), Some(1.0));
        let errors = |c, e| {
            sample(
                &registry,
                RECONCILE_ERRORS_TOTAL,
                &[("controller", c), ("error", e)],
            )
        };
        assert_eq!(errors("pgpool", "kube"), Some(1.0));
        assert_eq!(errors("pgpool", "conflict"), Some(1.0));
        assert_eq!(errors("petset", "invalid"), Some(1.0));
        let durations = |c| sample(&registry, RECONCILE_DURATION, &[("controller", c)]);
        assert_eq!(durations("pgpool"), Some(4.0));
        assert_eq!(durations("petset"), Some(1.0));
        assert_eq!(pgpool.name(), "pgpool");
    }

    #[test]
    fn both_results_exist_before_the_first_reconcile() {
        let registry = Registry::new();
        ReconcileMetrics::register(&registry)
            .unwrap()
            .controller("pgpoolopsrequest");
        for result in [RESULT_SUCCESS, RESULT_ERROR] {
            assert_eq!(
                sample(
                    &registry,
                    RECONCILE_TOTAL,
                    &[("controller", "pgpoolopsrequest"), ("result", result)]
                ),
                Some(0.0)
            );
        }
    }

    #[test]
    fn timer_records_elapsed_time() {
        let registry = Registry::new();
        let c = ReconcileMetrics::register(&registry)
            .unwrap()
            .controller("c");
        c.start().observe(&Ok::<(), TestError>(()));
        assert_eq!(
            sample(&registry, RECONCILE_DURATION, &[("controller", "c")]),
            Some(1.0)
        );
    }

    #[test]
    fn second_registration_in_one_registry_is_tolerated() {
        let registry = Registry::new();
        let first = ReconcileMetrics::register(&registry)
            .unwrap()
            .controller("c");
        let second = ReconcileMetrics::register(&registry)
            .unwrap()
            .controller("c");
        first.success(Duration::ZERO);
        second.success(Duration::ZERO);
        // Only the first set is exported.
        assert_eq!(
            sample(
                &registry,
                RECONCILE_TOTAL,
                &[("controller", "c"), ("result", RESULT_SUCCESS)]
            ),
            Some(1.0)
        );
    }
}
