//! Metrics of the PetSet controller: `pgpool_operator_petset_reconcile_total{result}` and
//! `pgpool_operator_petset_reconcile_duration_seconds`. Their own names (not the shared
//! `reconcile_total{controller}` family) keep them apart from the Pgpool controller's
//! families in the same registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// Name of the reconcile counter.
pub const RECONCILE_TOTAL: &str = "pgpool_operator_petset_reconcile_total";
/// Name of the reconcile duration histogram.
pub const RECONCILE_DURATION: &str = "pgpool_operator_petset_reconcile_duration_seconds";

/// The controller's metric handles.
#[derive(Clone)]
pub struct Metrics {
    reconciles: IntCounterVec,
    duration: Histogram,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`. A registry that already holds
    /// them (the controller started twice in one process) keeps the first set; this set
    /// then counts without being exported, and a debug line says so.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reconciles = IntCounterVec::new(
            Opts::new(
                RECONCILE_TOTAL,
                "PetSet reconciles by result (success or error).",
            ),
            &["result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                RECONCILE_DURATION,
                "Duration of PetSet reconciles in seconds.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
        ] {
            match registry.register(collector) {
                Ok(()) => {}
                Err(prometheus::Error::AlreadyReg) => {
                    tracing::debug!("PetSet controller metrics already registered");
                }
                Err(e) => return Err(e),
            }
        }
        // Both results exist from the start, so rate() works before the first failure.
        for result in ["success", "error"] {
            reconciles.with_label_values(&[result]);
        }
        Ok(Self {
            reconciles,
            duration,
        })
    }

    /// Records one reconcile.
    pub fn observe(&self, success: bool, seconds: f64) {
        let result = if success { "success" } else { "error" };
        self.reconciles.with_label_values(&[result]).inc();
        self.duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(registry: &Registry, name: &str, label: Option<&str>) -> f64 {
        let families = registry.gather();
        let fam = families.iter().find(|f| f.name() == name).unwrap();
        let m = fam
            .get_metric()
            .iter()
            .find(|m| label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)))
            .unwrap();
        if let Some(c) = m.get_counter().as_ref() {
            c.value()
        } else {
            m.get_histogram().get_sample_count() as f64
        }
    }

    #[test]
    fn counts_by_result_and_tolerates_second_registration() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).unwrap();
        m.observe(true, 0.01);
        m.observe(false, 0.02);
        m.observe(true, 0.01);
        assert_eq!(value(&registry, RECONCILE_TOTAL, Some("success")), 2.0);
        assert_eq!(value(&registry, RECONCILE_TOTAL, Some("error")), 1.0);
        assert_eq!(value(&registry, RECONCILE_DURATION, None), 3.0);
        assert!(Metrics::register(&registry).is_ok());
    }
}
