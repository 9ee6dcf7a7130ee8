//! Prometheus metrics of the provisioner beyond the reconcile metrics (those are
//! operator-kit's [`operator_kit::reconcile_metrics`], registered once in [`crate::run`]),
//! prefix `pgpool_operator_`.
//!
//! Labels are bounded: phases, never object names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgpool_api::PgpoolPhase;
use prometheus::{IntGaugeVec, Opts, Registry};

/// Registers a collector; a registry that holds it already (the provisioner started twice in
/// one process) keeps the first one, and this one counts without being exported.
fn register(
    registry: &Registry,
    collector: Box<dyn prometheus::core::Collector>,
) -> Result<(), prometheus::Error> {
    match registry.register(collector) {
        Ok(()) => Ok(()),
        Err(prometheus::Error::AlreadyReg) => {
            tracing::debug!("provisioner metrics already registered");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `pgpool_operator_pgpools{phase}`: Pgpools by phase, kept from the phase each reconcile
/// computed, keyed by the object's uid.
#[derive(Clone)]
pub struct PhaseGauge {
    gauge: IntGaugeVec,
    phases: Arc<Mutex<HashMap<String, PgpoolPhase>>>,
}

impl PhaseGauge {
    /// Creates the gauge (every phase at 0) and registers it in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = IntGaugeVec::new(
            Opts::new("pgpool_operator_pgpools", "Pgpools by phase."),
            &["phase"],
        )?;
        register(registry, Box::new(gauge.clone()))?;
        for phase in PgpoolPhase::ALL {
            gauge.with_label_values(&[phase.as_str()]).set(0);
        }
        Ok(Self {
            gauge,
            phases: Arc::default(),
        })
    }

    /// Records the phase of the Pgpool with `uid`.
    pub fn set(&self, uid: &str, phase: PgpoolPhase) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.insert(uid.to_string(), phase);
        self.publish(&phases);
    }

    /// Forgets the Pgpool with `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        if phases.remove(uid).is_some() {
            self.publish(&phases);
        }
    }

    fn publish(&self, phases: &HashMap<String, PgpoolPhase>) {
        for phase in PgpoolPhase::ALL {
            let count = phases.values().filter(|p| **p == phase).count();
            self.gauge
                .with_label_values(&[phase.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(registry: &Registry, name: &str, label: (&str, &str)) -> Option<f64> {
        registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
            })
            .map(|m| {
                if m.get_gauge().has_value() {
                    m.get_gauge().value()
                } else {
                    m.get_counter().value()
                }
            })
    }

    #[test]
    fn phases_are_counted_per_object() {
        let registry = Registry::new();
        let gauge = PhaseGauge::register(&registry).unwrap();
        gauge.set("a", PgpoolPhase::Ready);
        gauge.set("b", PgpoolPhase::Ready);
        gauge.set("b", PgpoolPhase::Critical);
        assert_eq!(
            value(&registry, "pgpool_operator_pgpools", ("phase", "Ready")),
            Some(1.0)
        );
        assert_eq!(
            value(&registry, "pgpool_operator_pgpools", ("phase", "Critical")),
            Some(1.0)
        );
        gauge.forget("a");
        assert_eq!(
            value(&registry, "pgpool_operator_pgpools", ("phase", "Ready")),
            Some(0.0)
        );
    }
}
