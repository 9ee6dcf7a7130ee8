//! What an update under load showed, and the verdict on it: pure functions of the request's
//! conditions and the load window's counts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::OpsRequestPhase;
use pgpool_api::PgpoolVersion;
use pgpool_api::conditions::{self, ops};
use serde::Deserialize;

use super::WindowStats;

/// One update: the request, how it ended, and what the clients saw meanwhile.
#[derive(Debug, Clone)]
pub struct UpdateOutcome {
    /// The request and its target, for example `pp-load-to-4.6.1 (4.6.1)`.
    pub name: String,
    /// The request's final phase (`None` when it never got one).
    pub phase: Option<OpsRequestPhase>,
    /// From creating the request to its final phase.
    pub wall: Duration,
    /// Per pod, seconds from its eviction to its replacement being Ready ([`pod_restarts`]).
    pub restarts: Vec<(String, Option<i64>)>,
    /// The load window of the update.
    pub load: WindowStats,
}

impl fmt::Display for UpdateOutcome {
    /// One line, then one indented line per kept error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let restarts: Vec<String> = self
            .restarts
            .iter()
            .map(|(pod, secs)| match secs {
                Some(s) => format!("{pod} {s} s"),
                None => format!("{pod} -"),
            })
            .collect();
        let phase = self.phase.map_or("no phase", |p| p.as_str());
        write!(
            f,
            "update {}: {phase} in {:.1} s; pod restarts: {}; short queries sent {}, failed {}, longest gap {:.2} s; sessions cut {}",
            self.name,
            self.wall.as_secs_f64(),
            if restarts.is_empty() {
                "(none)".to_string()
            } else {
                restarts.join(", ")
            },
            self.load.sent,
            self.load.failed,
            self.load.longest_gap.as_secs_f64(),
            self.load.cuts
        )?;
        for (error, count) in &self.load.errors {
            write!(f, "\n    {count} x {error}")?;
        }
        for (error, count) in &self.load.cut_errors {
            write!(f, "\n    session cut {count} x: {error}")?;
        }
        Ok(())
    }
}

/// Fails when a short-connection query failed during a successful update, or, with
/// `max_restart`, when a successful update took longer than that to replace a pod (from its
/// eviction to its replacement Ready): on the local node a pod that waits out its grace period
/// instead of shutting down after the preStop drain shows up here (about 36 s instead of 11 s).
pub fn judge(outcomes: &[UpdateOutcome], max_restart: Option<Duration>) -> anyhow::Result<()> {
    let successful = || {
        outcomes
            .iter()
            .filter(|o| o.phase == Some(OpsRequestPhase::Successful))
    };
    let dropped: Vec<String> = successful()
        .filter(|o| o.load.failed > 0)
        .map(|o| format!("{} ({} of {} failed)", o.name, o.load.failed, o.load.sent))
        .collect();
    anyhow::ensure!(
        dropped.is_empty(),
        "short-connection queries failed during successful updates: {}",
        dropped.join(", ")
    );
    if let Some(max) = max_restart {
        let slow: Vec<String> = successful()
            .flat_map(|o| {
                o.restarts.iter().filter_map(move |(pod, secs)| {
                    let secs = (*secs)?;
                    (u64::try_from(secs).unwrap_or(0) > max.as_secs())
                        .then(|| format!("{pod} took {secs} s in {}", o.name))
                })
            })
            .collect();
        anyhow::ensure!(
            slow.is_empty(),
            "pods took longer than {} s to be replaced (did pgpool wait out the grace period?): {}",
            max.as_secs(),
            slow.join(", ")
        );
    }
    Ok(())
}

/// For each pod the request evicted: seconds from the eviction (`EvictPod--<pod>` True) to
/// its replacement being Ready (`CheckPodRunning--<pod>` True); `None` when it never was.
pub fn pod_restarts(conds: &[Condition]) -> Vec<(String, Option<i64>)> {
    let at = |type_: &str| {
        conditions::get(conds, type_)
            .filter(|c| c.status == conditions::TRUE)
            .map(|c| c.last_transition_time.0.as_second())
    };
    let mut out: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for c in conds {
        let Some(pod) = c.type_.strip_prefix(ops::EVICT_POD_PREFIX) else {
            continue;
        };
        let secs = match (at(&c.type_), at(&ops::check_pod_running(pod))) {
            (Some(evicted), Some(ready)) => Some(ready - evicted),
            _ => None,
        };
        out.insert(pod.to_string(), secs);
    }
    out.into_iter().collect()
}

/// The PgpoolVersions of a multi-document YAML file (empty documents are skipped).
pub fn read_catalog(text: &str) -> anyhow::Result<Vec<PgpoolVersion>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        out.push(serde_yaml::from_value(value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: &str, at: &str) -> Condition {
        serde_json::from_value(serde_json::json!({
            "type": type_, "status": status, "reason": "R", "message": "", "lastTransitionTime": at
        }))
        .expect("condition")
    }

    fn outcome(phase: OpsRequestPhase, failed: u64, cuts: u64) -> UpdateOutcome {
        UpdateOutcome {
            name: format!("req ({phase:?})"),
            phase: Some(phase),
            wall: Duration::from_secs(130),
            restarts: vec![("pp-load-0".into(), Some(43)), ("pp-load-1".into(), None)],
            load: WindowStats {
                sent: 100,
                succeeded: 100 - failed,
                failed,
                cuts,
                errors: if failed > 0 {
                    vec![("server closed the connection unexpectedly".into(), failed)]
                } else {
                    vec![]
                },
                ..WindowStats::default()
            },
        }
    }

    #[test]
    fn pod_restart_times_come_from_the_request_conditions() {
        let conds = vec![
            cond("UpdatePetSets", "True", "2026-01-01T00:00:00Z"),
            cond("EvictPod--pp-load-2", "True", "2026-01-01T00:00:01Z"),
            cond("CheckPodRunning--pp-load-2", "True", "2026-01-01T00:00:44Z"),
            cond("EvictPod--pp-load-1", "True", "2026-01-01T00:00:45Z"),
            cond(
                "CheckPodRunning--pp-load-1",
                "Unknown",
                "2026-01-01T00:00:45Z",
            ),
        ];
        assert_eq!(
            pod_restarts(&conds),
            vec![
                ("pp-load-1".to_string(), None),
                ("pp-load-2".to_string(), Some(43))
            ]
        );
    }

    #[test]
    fn a_failed_query_fails_a_successful_update_only() {
        let ok = outcome(OpsRequestPhase::Successful, 0, 4);
        let dropped = outcome(OpsRequestPhase::Successful, 2, 0);
        let rolled_back = outcome(OpsRequestPhase::Failed, 7, 3);
        judge(&[ok.clone(), rolled_back.clone()], None).expect("cuts and a failed update pass");
        let e = judge(&[ok, dropped, rolled_back], None).expect_err("a dropped query fails");
        assert!(
            e.to_string().contains("req (Successful) (2 of 100 failed)"),
            "{e}"
        );
    }

    #[test]
    fn a_slow_pod_replacement_fails_only_when_bounded() {
        // outcome() has pp-load-0 replaced in 43 s
        let ok = outcome(OpsRequestPhase::Successful, 0, 1);
        let rolled_back = outcome(OpsRequestPhase::Failed, 0, 0);
        judge(std::slice::from_ref(&ok), None).expect("no bound");
        judge(std::slice::from_ref(&ok), Some(Duration::from_secs(43))).expect("at the bound");
        judge(&[rolled_back], Some(Duration::from_secs(25))).expect("failed updates aside");
        let e = judge(&[ok], Some(Duration::from_secs(25))).expect_err("43 s > 25 s");
        assert!(
            e.to_string()
                .contains("longer than 25 s to be replaced (did pgpool wait out the grace period?): pp-load-0 took 43 s in req (Successful)"),
            "{e}"
        );
    }

    #[test]
    fn the_outcome_line_names_every_number() {
        let line = outcome(OpsRequestPhase::Successful, 1, 3).to_string();
        assert_eq!(
            line,
            "update req (Successful): Successful in 130.0 s; pod restarts: pp-load-0 43 s, pp-load-1 -; \
             short queries sent 100, failed 1, longest gap 0.00 s; sessions cut 3\n    \
             1 x server closed the connection unexpectedly"
        );
    }

    #[test]
    fn catalogs_are_read_document_by_document() {
        let text = "---\napiVersion: catalog.kubedb.com/v1alpha1\nkind: PgpoolVersion\nmetadata:\n  name: a\nspec:\n  version: 4.3.5\n  pgpool:\n    image: x:1\n---\n---\napiVersion: catalog.kubedb.com/v1alpha1\nkind: PgpoolVersion\nmetadata:\n  name: b\nspec:\n  version: 4.6.1\n  pgpool:\n    image: y:1\n";
        let names: Vec<String> = read_catalog(text)
            .expect("parse")
            .iter()
            .filter_map(|v| v.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }
}
