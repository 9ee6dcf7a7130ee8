//! Readiness state shared between the runtime, the controllers and `/readyz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::IntGauge;
use tokio::sync::watch;

/// Where the process is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting to the API server or setting up leader election.
    Starting,
    /// Leader election is on and another replica holds the Lease; no controller runs.
    Standby,
    /// This replica runs the controllers (it is the leader, or leader election is off).
    Running,
    /// A shutdown was requested or leadership was lost; controllers are stopping.
    ShuttingDown,
}

/// Cheap, cloneable handle to the process readiness that `/readyz` reports.
///
/// The runtime sets the phase and leadership; each controller registers itself with
/// [`Readiness::controller`] *before* it starts and calls
/// [`ControllerReadiness::set_synced`] once its caches (reflector stores) are synced,
/// e.g. after `store.wait_until_ready().await`. The process is ready when it runs
/// controllers and all registered controllers are synced, or when it is a standby
/// replica (so that a standby of a two-replica Deployment counts as available and can
/// take over).
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    leader_gauge: Option<IntGauge>,
    /// Ticks after every change of `state`, for [`Readiness::wait_until_ready`].
    changed: watch::Sender<()>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            leader_gauge: None,
            changed: watch::Sender::new(()),
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    leader: bool,
    controllers: BTreeMap<String, Option<String>>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            phase: Phase::Starting,
            leader: false,
            controllers: BTreeMap::new(),
        }
    }
}

/// What `/readyz` answers: whether the process is ready, whether it is the leader,
/// and a human-readable explanation (several lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessStatus {
    /// `true` when `/readyz` answers 200.
    pub ready: bool,
    /// `true` while this process runs the controllers.
    pub leader: bool,
    /// The life-cycle phase.
    pub phase: Phase,
    /// The text body of `/readyz`.
    pub message: String,
}

/// A controller's handle to report whether its caches are synced.
#[derive(Clone, Debug)]
pub struct ControllerReadiness {
    readiness: Readiness,
    name: String,
}

const WAITING_FOR_SYNC: &str = "waiting for caches to sync";

impl Readiness {
    /// A fresh handle in phase [`Phase::Starting`], with no controller registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh handle that mirrors leadership into `gauge` (1 = leader, 0 = not).
    pub fn with_leader_gauge(gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            inner: Arc::new(Inner {
                leader_gauge: Some(gauge),
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state and wakes [`wait_until_ready`](Self::wait_until_ready).
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.inner.changed.send_replace(());
    }

    /// Registers a controller as not yet synced and returns its handle. Registering a
    /// name again resets it to not synced.
    pub fn controller(&self, name: impl Into<String>) -> ControllerReadiness {
        let name = name.into();
        self.update(|state| {
            state
                .controllers
                .insert(name.clone(), Some(WAITING_FOR_SYNC.to_string()));
        });
        ControllerReadiness {
            readiness: self.clone(),
            name,
        }
    }

    /// Sets the life-cycle phase.
    pub fn set_phase(&self, phase: Phase) {
        self.update(|state| state.phase = phase);
    }

    /// Records whether this process runs the controllers (and updates the gauge).
    pub fn set_leader(&self, leader: bool) {
        self.update(|state| state.leader = leader);
        if let Some(gauge) = &self.inner.leader_gauge {
            gauge.set(i64::from(leader));
        }
    }

    /// Forgets all registered controllers (used when controllers stop).
    pub fn clear_controllers(&self) {
        self.update(|state| state.controllers.clear());
    }

    /// The current status as `/readyz` reports it.
    pub fn status(&self) -> ReadinessStatus {
        let state = self.lock();
        let pending: Vec<&str> = state
            .controllers
            .iter()
            .filter(|(_, reason)| reason.is_some())
            .map(|(name, _)| name.as_str())
            .collect();
        let (ready, summary) = match state.phase {
            Phase::Starting => (false, "not ready: starting".to_string()),
            Phase::ShuttingDown => (false, "not ready: shutting down".to_string()),
            Phase::Standby => (true, "standby: not leader".to_string()),
            Phase::Running if state.controllers.is_empty() => (
                false,
                "not ready: no controller has started yet".to_string(),
            ),
            Phase::Running if !pending.is_empty() => (
                false,
                format!("not ready: waiting for controllers: {}", pending.join(", ")),
            ),
            Phase::Running => (true, "ready: controllers synced".to_string()),
        };
        let mut message = summary;
        let _ = write!(message, "\nleader: {}", state.leader);
        for (name, reason) in &state.controllers {
            let _ = write!(
                message,
                "\ncontroller {name}: {}",
                reason.as_deref().unwrap_or("synced")
            );
        }
        message.push('\n');
        ReadinessStatus {
            ready,
            leader: state.leader,
            phase: state.phase,
            message,
        }
    }

    /// `true` when `/readyz` would answer 200.
    pub fn is_ready(&self) -> bool {
        self.status().ready
    }

    /// Resolves once [`is_ready`](Self::is_ready) is `true` (at once if it is now): for
    /// code that runs a controller in-process and must wait for its caches, like a test
    /// harness. Wrap it in a timeout; it waits for ever otherwise.
    pub async fn wait_until_ready(&self) {
        // Subscribed before the check: a change after the check marks the receiver changed.
        let mut changed = self.inner.changed.subscribe();
        while !self.is_ready() {
            // The sender lives in `self`, so `changed()` cannot fail while we wait.
            let _ = changed.changed().await;
        }
    }
}

impl ControllerReadiness {
    /// Marks this controller's caches as synced.
    pub fn set_synced(&self) {
        self.set(None);
    }

    /// Marks this controller as not ready, with the reason `/readyz` shows.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    /// The controller name this handle reports for.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn set(&self, reason: Option<String>) {
        self.readiness.update(|state| {
            state.controllers.insert(self.name.clone(), reason);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_is_not_ready() {
        let r = Readiness::new();
        let s = r.status();
        assert!(!s.ready);
        assert!(
            s.message.starts_with("not ready: starting"),
            "{}",
            s.message
        );
        assert!(s.message.contains("leader: false"));
    }

    #[test]
    fn running_needs_every_registered_controller_synced() {
        let r = Readiness::new();
        r.set_leader(true);
        r.set_phase(Phase::Running);
        assert!(!r.is_ready(), "no controller registered yet");

        let a = r.controller("pgpool");
        let b = r.controller("petset");
        assert!(!r.is_ready());
        a.set_synced();
        let s = r.status();
        assert!(!s.ready);
        assert!(
            s.message.contains("waiting for controllers: petset"),
            "{}",
            s.message
        );
        assert!(
            s.message.contains("controller pgpool: synced"),
            "{}",
            s.message
        );

        b.set_synced();
        let s = r.status();
        assert!(s.ready, "{}", s.message);
        assert!(s.leader);
        assert!(s.message.contains("leader: true"));

        b.set_not_ready("watch failed: forbidden");
        let s = r.status();
        assert!(!s.ready);
        assert!(
            s.message
                .contains("controller petset: watch failed: forbidden"),
            "{}",
            s.message
        );
    }

    #[test]
    fn standby_is_ready_but_not_leader() {
        let r = Readiness::new();
        r.set_phase(Phase::Standby);
        let s = r.status();
        assert!(s.ready);
        assert!(!s.leader);
        assert!(
            s.message.starts_with("standby: not leader"),
            "{}",
            s.message
        );
        assert!(s.message.contains("leader: false"));
    }

    #[test]
    fn shutting_down_is_not_ready() {
        let r = Readiness::new();
        r.set_phase(Phase::Running);
        r.controller("x").set_synced();
        assert!(r.is_ready());
        r.set_phase(Phase::ShuttingDown);
        assert!(!r.is_ready());
    }

    #[tokio::test]
    async fn wait_until_ready_wakes_when_the_last_controller_syncs() {
        let limit = std::time::Duration::from_secs(5);
        let r = Readiness::new();
        r.set_phase(Phase::Running);
        let a = r.controller("a");
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.wait_until_ready().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "not ready yet");
        a.set_synced();
        tokio::time::timeout(limit, waiter)
            .await
            .expect("woken by set_synced")
            .expect("join");
        // Ready already: resolves at once.
        tokio::time::timeout(limit, r.wait_until_ready())
            .await
            .expect("ready");
    }

    #[test]
    fn leader_gauge_follows_leadership() {
        let gauge = IntGauge::new("leader_test", "test").expect("valid gauge");
        let r = Readiness::with_leader_gauge(gauge.clone());
        assert_eq!(gauge.get(), 0);
        r.set_leader(true);
        assert_eq!(gauge.get(), 1);
        r.set_leader(false);
        assert_eq!(gauge.get(), 0);
    }
}
