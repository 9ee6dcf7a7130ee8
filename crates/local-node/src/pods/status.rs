//! Pod status as a kubelet writes it (pure): phase, conditions, IPs, container statuses.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A container's state as the node tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: `ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`,
    /// `ErrImagePull`, `CreateContainerConfigError`.
    Waiting {
        /// Reason.
        reason: String,
        /// Message.
        message: Option<String>,
    },
    /// Running since.
    Running(Timestamp),
    /// Exited.
    Terminated {
        /// Exit code (137 after SIGKILL, 143 after SIGTERM).
        exit_code: i32,
        /// `Completed` or `Error`.
        reason: String,
        /// Started at.
        started: Timestamp,
        /// Finished at.
        finished: Timestamp,
    },
}

impl State {
    /// Waiting with this reason.
    pub fn waiting(reason: &str, message: Option<String>) -> Self {
        State::Waiting {
            reason: reason.into(),
            message,
        }
    }

    fn api(&self) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            State::Running(t) => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*t)),
                }),
                ..ContainerState::default()
            },
            State::Terminated {
                exit_code,
                reason,
                started,
                finished,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.clone()),
                    started_at: Some(Time(*started)),
                    finished_at: Some(Time(*finished)),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            },
        }
    }
}

/// One container as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Name.
    pub name: String,
    /// The spec's image.
    pub image: String,
    /// Where the node took the image from (`local://<image>`).
    pub image_id: String,
    /// Current state.
    pub state: State,
    /// The previous run, when it exited.
    pub last: Option<State>,
    /// Readiness probe passing (and running).
    pub ready: bool,
    /// Startup probe passed (or none) and running.
    pub started: bool,
    /// Restarts so far.
    pub restart_count: i32,
    /// `local://<pod uid>/<name>/<run>` while it has run.
    pub container_id: Option<String>,
}

impl ContainerView {
    fn api(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self.container_id.clone(),
            state: Some(self.state.api()),
            last_state: Some(self.last.as_ref().map(State::api).unwrap_or_default()),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            ..ContainerStatus::default()
        }
    }
}

/// The whole pod as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodView {
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    pub phase: String,
    /// The pod's IP, once its network exists.
    pub pod_ip: Option<String>,
    /// The node's address.
    pub host_ip: Option<String>,
    /// When the node started working on the pod.
    pub start_time: Option<Timestamp>,
    /// Every init container completed.
    pub initialized: bool,
    /// Init containers.
    pub init: Vec<ContainerView>,
    /// App containers.
    pub containers: Vec<ContainerView>,
}

fn condition(
    prev: Option<&PodStatus>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(last.unwrap_or(Time(now))),
        reason: (!ok).then(|| reason.map(str::to_string)).flatten(),
        ..PodCondition::default()
    }
}

/// The status to write for `view`; transition times carry over from `prev` when a
/// condition keeps its value.
pub fn pod_status(view: &PodView, prev: Option<&PodStatus>, now: Timestamp) -> PodStatus {
    let all_ready = !view.containers.is_empty() && view.containers.iter().all(|c| c.ready);
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    let conditions = vec![
        condition(
            prev,
            "PodReadyToStartContainers",
            view.pod_ip.is_some(),
            None,
            now,
        ),
        condition(
            prev,
            "Initialized",
            view.initialized,
            Some("ContainersNotInitialized"),
            now,
        ),
        condition(prev, "Ready", all_ready, not_ready, now),
        condition(prev, "ContainersReady", all_ready, not_ready, now),
        condition(prev, "PodScheduled", true, None, now),
    ];
    PodStatus {
        phase: Some(view.phase.clone()),
        conditions: Some(conditions),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        host_ip: view.host_ip.clone(),
        host_ips: view
            .host_ip
            .as_ref()
            .map(|ip| vec![HostIP { ip: ip.clone() }]),
        start_time: view.start_time.map(Time),
        init_container_statuses: (!view.init.is_empty())
            .then(|| view.init.iter().map(ContainerView::api).collect()),
        container_statuses: Some(view.containers.iter().map(ContainerView::api).collect()),
        qos_class: prev.and_then(|p| p.qos_class.clone()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ready: bool) -> PodView {
        PodView {
            phase: "Running".into(),
            pod_ip: Some("10.244.0.2".into()),
            host_ip: Some("10.244.0.1".into()),
            start_time: Some(Timestamp::UNIX_EPOCH),
            initialized: true,
            init: vec![],
            containers: vec![ContainerView {
                name: "c".into(),
                image: "img:1".into(),
                image_id: "local://img:1".into(),
                state: State::Running(Timestamp::UNIX_EPOCH),
                last: None,
                ready,
                started: true,
                restart_count: 2,
                container_id: Some("local://u/c/2".into()),
            }],
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn ready_follows_the_containers_and_keeps_transition_times() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).unwrap();
        let s0 = pod_status(&view(false), None, t0);
        assert_eq!(cond(&s0, "Ready").status, "False");
        assert_eq!(
            cond(&s0, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(cond(&s0, "PodScheduled").status, "True");
        let s1 = pod_status(&view(true), Some(&s0), t1);
        assert_eq!(cond(&s1, "Ready").status, "True");
        assert_eq!(cond(&s1, "Ready").last_transition_time, Some(Time(t1)));
        assert_eq!(
            cond(&s1, "Initialized").last_transition_time,
            Some(Time(t0))
        );
        let cs = &s1.container_statuses.as_ref().unwrap()[0];
        assert_eq!((cs.ready, cs.restart_count), (true, 2));
        assert_eq!(cs.image_id, "local://img:1");
        assert!(cs.state.as_ref().unwrap().running.is_some());
        assert_eq!(s1.pod_ips.unwrap()[0].ip, "10.244.0.2");
    }
}
