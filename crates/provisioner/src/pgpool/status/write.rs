//! Writing the status: the next status over the newest one this controller knows of, with
//! the cached resourceVersion, and the events of the change.

use operator_kit::api::is_not_found;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use pgpool_api::{Pgpool, PgpoolStatus};

use super::{EventNote, Outcome, next_status};
use crate::metrics::PhaseGauge;
use crate::pgpool::error::ReconcileError;
use operator_kit::events::EventRecorder;

/// This controller's last status write of a Pgpool: the version it made and the status, and
/// the versions before it that the cache may still show (the one written over and those of
/// earlier writes of this controller).
struct WrittenStatus {
    older: Vec<Option<String>>,
    made: Option<String>,
    status: PgpoolStatus,
}

/// This controller's status writes the Pgpool cache may not show yet, by uid.
#[derive(Default)]
pub struct StatusWrites {
    written: Mutex<HashMap<String, WrittenStatus>>,
}

impl StatusWrites {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, WrittenStatus>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the writes of the Pgpool with `uid`.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Writes the status `outcome` leads to over the cached `pgpool`'s, if it differs, with the
    /// cached resourceVersion (a newer Pgpool makes it a [`ReconcileError::Conflict`]). When the
    /// cache still holds the version this controller's last status write was made over, that write
    /// is the base instead (its status and the version it made): nobody else wrote in between, or
    /// the write fails with a conflict.
    pub async fn write(
        &self,
        api: &Api<Pgpool>,
        phases: &PhaseGauge,
        recorder: &EventRecorder,
        pgpool: &Pgpool,
        outcome: &Outcome<'_>,
    ) -> Result<(), ReconcileError> {
        let uid = pgpool.uid().unwrap_or_default();
        let cached_rv = pgpool.resource_version();
        // the versions the next write's base is newer than
        let (base_rv, base_status, mut older) = {
            let mut written = self.lock();
            match written.get(&uid) {
                Some(w) if w.older.contains(&cached_rv) => {
                    let mut older = w.older.clone();
                    older.push(w.made.clone());
                    (w.made.clone(), Some(w.status.clone()), older)
                }
                _ => {
                    written.remove(&uid);
                    (cached_rv.clone(), pgpool.status.clone(), vec![cached_rv])
                }
            }
        };
        if older.len() > 8 {
            older.remove(0);
        }
        let (status, events) = next_status(
            base_status.as_ref(),
            pgpool.metadata.generation,
            pgpool.spec.is_halted(),
            outcome,
            Utc::now(),
        );
        if let Some(phase) = status.phase {
            phases.set(&uid, phase);
        }
        if base_status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = pgpool.clone();
        updated.metadata.resource_version = base_rv.clone();
        updated.status = Some(status.clone());
        match api
            .replace_status(&pgpool.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(made) => {
                self.lock().insert(
                    uid,
                    WrittenStatus {
                        older,
                        made: made.resource_version(),
                        status,
                    },
                );
                publish(recorder, pgpool, events).await;
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                self.forget(&uid);
                Err(ReconcileError::from_write(e))
            }
        }
    }
}

async fn publish(recorder: &EventRecorder, pgpool: &Pgpool, events: Vec<EventNote>) {
    for e in events {
        if e.warning {
            recorder.warning(pgpool, &e.reason, &e.message).await;
        } else {
            recorder.normal(pgpool, &e.reason, &e.message).await;
        }
    }
}
