//! A stand-in kubelet for control planes without nodes (`E2E_SIMULATE_KUBELET=1`): it
//! watches the pods of one namespace and writes the status a kubelet would, so the operators
//! see pods become Running and Ready with the image of their spec.
//!
//! An image that [`is_unpullable`] says cannot be pulled gets what a real node reports for
//! it: `ErrImagePull`, never Ready. Pods are never started for real, so nothing can connect
//! to them; the scenario leaves out its SQL steps in this mode.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Field manager of the status writes.
const MANAGER: &str = "e2e-simulated-kubelet";

/// True for images that no registry serves: the `.invalid` top-level domain, which never
/// resolves (RFC 2606). The failing-update scenario uses such an image.
pub fn is_unpullable(image: &str) -> bool {
    image
        .split('/')
        .next()
        .is_some_and(|host| host.ends_with(".invalid") || host.contains(".invalid:"))
}

/// The simulated kubelet; stops when dropped.
pub struct SimulatedKubelet {
    task: JoinHandle<()>,
}

impl Drop for SimulatedKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimulatedKubelet {
    /// Starts marking the pods of `namespace`.
    pub fn start(client: kube::Client, namespace: &str) -> SimulatedKubelet {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let task = tokio::spawn(async move {
            let mut pods = watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = pods.next().await {
                let pod = match event {
                    Ok(pod) => pod,
                    Err(e) => {
                        eprintln!("simulated kubelet: watch error: {e}");
                        continue;
                    }
                };
                let Some(status) = desired_status(&pod) else {
                    continue;
                };
                let Some(name) = pod.metadata.name.clone() else {
                    continue;
                };
                let patch = json!({ "status": status });
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
                    .await
                {
                    // A pod deleted in between is not an error worth more than a line.
                    eprintln!("simulated kubelet: cannot update pod {name}: {e}");
                }
            }
        });
        SimulatedKubelet { task }
    }
}

/// The status a kubelet would report for `pod` now, or `None` when the pod already has it
/// (or is being deleted).
pub fn desired_status(pod: &Pod) -> Option<Value> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let broken = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.image.as_deref().is_some_and(is_unpullable));
    let current = pod.status.as_ref();
    let phase = current.and_then(|s| s.phase.as_deref());
    let images: BTreeMap<&str, &str> = current
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|cs| (cs.name.as_str(), cs.image.as_str()))
        .collect();
    let images_match = spec
        .containers
        .iter()
        .all(|c| images.get(c.name.as_str()).copied() == c.image.as_deref());
    let want_phase = if broken { "Pending" } else { "Running" };
    if phase == Some(want_phase) && images_match {
        return None;
    }

    let now = Timestamp::now().to_string();
    let ready = if broken { "False" } else { "True" };
    let condition = |type_: &str, status: &str| json!({"type": type_, "status": status, "lastTransitionTime": now});
    let running = |c: &Container| {
        json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        })
    };
    let waiting = |c: &Container, reason: &str| {
        let image = c.image.clone().unwrap_or_default();
        json!({
            "name": c.name,
            "image": image,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": 0,
            "state": {"waiting": {
                "reason": reason,
                "message": format!("simulated: image {image} cannot be pulled"),
            }},
        })
    };
    let init_done = |c: &Container| {
        json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": true,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                     "startedAt": now, "finishedAt": now}},
        })
    };
    let init: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            if broken {
                waiting(c, "ErrImagePull")
            } else {
                init_done(c)
            }
        })
        .collect();
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            if !broken {
                running(c)
            } else if c.image.as_deref().is_some_and(is_unpullable) {
                waiting(c, "ErrImagePull")
            } else {
                waiting(c, "PodInitializing")
            }
        })
        .collect();
    Some(json!({
        "phase": want_phase,
        "conditions": [
            condition("PodScheduled", "True"),
            condition("Initialized", ready),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "initContainerStatuses": init,
        "containerStatuses": containers,
        "startTime": now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(image: &str, status: Option<Value>) -> Pod {
        let mut value = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pp-update-0", "namespace": "demo"},
            "spec": {
                "initContainers": [{"name": "pgpool-init", "image": image}],
                "containers": [{"name": "pgpool", "image": image}]
            }
        });
        if let Some(status) = status {
            value["status"] = status;
        }
        serde_json::from_value(value).expect("pod")
    }

    #[test]
    fn unpullable_images_are_those_of_the_invalid_domain() {
        assert!(is_unpullable("registry.invalid/pgpool2:4.6.0"));
        assert!(is_unpullable("registry.invalid:5000/pgpool2:4.6.0"));
        assert!(!is_unpullable("ghcr.io/appscode-images/pgpool2:4.6.0"));
        assert!(!is_unpullable("postgres:16"));
    }

    #[test]
    fn a_new_pod_becomes_running_and_ready_with_its_image() {
        let status = desired_status(&pod("ghcr.io/x/pgpool2:4.5.3", None)).expect("a status");
        assert_eq!(status["phase"], "Running");
        assert_eq!(
            status["containerStatuses"][0]["image"],
            "ghcr.io/x/pgpool2:4.5.3"
        );
        assert_eq!(status["containerStatuses"][0]["ready"], true);
        let ready = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready");
        assert_eq!(ready["status"], "True");
        // Written once: the same pod with that status needs nothing more.
        assert!(desired_status(&pod("ghcr.io/x/pgpool2:4.5.3", Some(status))).is_none());
    }

    #[test]
    fn an_unpullable_image_is_never_ready() {
        let status = desired_status(&pod("registry.invalid/pgpool2:4.6.0", None)).expect("status");
        assert_eq!(status["phase"], "Pending");
        assert_eq!(
            status["initContainerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        assert_eq!(status["containerStatuses"][0]["ready"], false);
        assert!(desired_status(&pod("registry.invalid/pgpool2:4.6.0", Some(status))).is_none());
    }

    #[test]
    fn a_status_for_another_image_is_rewritten() {
        let old = desired_status(&pod("ghcr.io/x/pgpool2:4.5.3", None)).expect("status");
        let new = desired_status(&pod("ghcr.io/x/pgpool2:4.6.0", Some(old))).expect("rewritten");
        assert_eq!(
            new["containerStatuses"][0]["image"],
            "ghcr.io/x/pgpool2:4.6.0"
        );
    }
}
