//! Deletion as the kubelet does it: every container's `preStop` hook (within the grace
//! period), then SIGTERM, then SIGKILL for whatever still runs when the grace period, counted
//! from the deletion, is over.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use crate::probes::BoxFuture;

/// How long a deleted pod's containers get: until its `deletionTimestamp` (deletion time +
/// grace period, as the API server sets it, in whole seconds: the truncated second is given
/// back), at most the grace period from now.
pub fn deletion_wait(pod: &Pod, grace: Duration, now: Timestamp) -> Duration {
    let Some(ts) = pod.metadata.deletion_timestamp.as_ref() else {
        return grace;
    };
    let left_ms = ts.0.as_millisecond() + 999 - now.as_millisecond();
    Duration::from_millis(left_ms.max(0) as u64).min(grace)
}

/// A signal to a container's PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// The running containers of a pod, as the termination sees them.
pub trait Processes: Sync {
    /// Runs a container's preStop hook to its end.
    fn pre_stop<'a>(&'a self, container: &'a str) -> BoxFuture<'a, ()>;
    /// Signals a container.
    fn signal(&self, container: &str, signal: Signal);
    /// Resolves when every container has exited.
    fn all_exited(&self) -> BoxFuture<'_, ()>;
}

/// How a termination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything exited within the grace period.
    Graceful,
    /// Something had to be killed.
    Killed,
}

/// Terminates `containers` (those in `with_hooks` run their preStop first, concurrently), with
/// the grace period ending at `deadline`.
pub async fn terminate(
    p: &dyn Processes,
    containers: &[String],
    with_hooks: &[String],
    deadline: Instant,
) -> Outcome {
    let hooks = futures::future::join_all(with_hooks.iter().map(|c| p.pre_stop(c)));
    let _ = tokio::time::timeout_at(deadline, hooks).await;
    for c in containers {
        p.signal(c, Signal::Term);
    }
    if tokio::time::timeout_at(deadline, p.all_exited())
        .await
        .is_ok()
    {
        return Outcome::Graceful;
    }
    for c in containers {
        p.signal(c, Signal::Kill);
    }
    p.all_exited().await;
    Outcome::Killed
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use tokio::sync::watch;

    use super::*;

    /// Records what happens when; its containers exit on SIGTERM or only on SIGKILL.
    struct Fake {
        start: Instant,
        hook: Duration,
        exits_on_term: bool,
        log: Mutex<Vec<(String, Duration)>>,
        alive: watch::Sender<bool>,
    }

    impl Fake {
        fn new(hook: Duration, exits_on_term: bool) -> Self {
            Fake {
                start: Instant::now(),
                hook,
                exits_on_term,
                log: Mutex::new(Vec::new()),
                alive: watch::channel(true).0,
            }
        }
        fn note(&self, what: String) {
            self.log.lock().unwrap().push((what, self.start.elapsed()));
        }
        fn events(&self) -> Vec<String> {
            self.log
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.0.clone())
                .collect()
        }
        fn at(&self, what: &str) -> Duration {
            self.log
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.0 == what)
                .unwrap()
                .1
        }
    }

    impl Processes for Fake {
        fn pre_stop<'a>(&'a self, c: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                self.note(format!("prestop {c}"));
                tokio::time::sleep(self.hook).await;
                self.note(format!("prestop done {c}"));
            })
        }
        fn signal(&self, c: &str, s: Signal) {
            self.note(format!("{s:?} {c}"));
            if s == Signal::Kill || self.exits_on_term {
                self.alive.send_replace(false);
            }
        }
        fn all_exited(&self) -> BoxFuture<'_, ()> {
            let mut rx = self.alive.subscribe();
            Box::pin(async move {
                let _ = rx.wait_for(|alive| !alive).await;
            })
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn prestop_then_sigterm_and_no_kill_when_the_process_exits() {
        let fake = Fake::new(Duration::from_millis(200), true);
        let deadline = Instant::now() + Duration::from_secs(2);
        let out = terminate(&fake, &names(&["a", "b"]), &names(&["a"]), deadline).await;
        assert_eq!(out, Outcome::Graceful);
        assert_eq!(
            fake.events(),
            ["prestop a", "prestop done a", "Term a", "Term b"]
        );
        assert!(fake.at("Term a") >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn sigkill_comes_when_the_grace_period_is_over() {
        let fake = Fake::new(Duration::from_millis(100), false);
        let deadline = Instant::now() + Duration::from_millis(600);
        let out = terminate(&fake, &names(&["a"]), &names(&["a"]), deadline).await;
        assert_eq!(out, Outcome::Killed);
        assert_eq!(
            fake.events(),
            ["prestop a", "prestop done a", "Term a", "Kill a"]
        );
        let kill = fake.at("Kill a");
        assert!(kill >= Duration::from_millis(600), "{kill:?}");
        assert!(kill < Duration::from_millis(1500), "{kill:?}");
    }

    #[tokio::test]
    async fn a_hook_longer_than_the_grace_period_is_cut_short() {
        let fake = Fake::new(Duration::from_secs(30), false);
        let deadline = Instant::now() + Duration::from_millis(300);
        let out = terminate(&fake, &names(&["a"]), &names(&["a"]), deadline).await;
        assert_eq!(out, Outcome::Killed);
        assert_eq!(fake.events(), ["prestop a", "Term a", "Kill a"]);
        assert!(fake.at("Kill a") < Duration::from_secs(2));
    }

    #[test]
    fn the_grace_period_counts_from_the_deletion() {
        let now = Timestamp::from_second(1000).unwrap();
        let grace = Duration::from_secs(30);
        let mut pod = Pod::default();
        assert_eq!(deletion_wait(&pod, grace, now), grace);
        // deleted about 10 s ago with 30 s: 20 s left (plus the second the timestamp drops)
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1020).unwrap()));
        assert_eq!(
            deletion_wait(&pod, grace, now),
            Duration::from_millis(20_999)
        );
        // past the deadline: nothing left
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(998).unwrap()));
        assert_eq!(deletion_wait(&pod, grace, now), Duration::ZERO);
        // a clock skew never gives more than the grace period
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(2000).unwrap()));
        assert_eq!(deletion_wait(&pod, grace, now), grace);
    }
}
