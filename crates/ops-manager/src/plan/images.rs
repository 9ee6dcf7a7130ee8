//! The images of a Pgpool version and where they go in a pod spec.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use pgpool_api::{PgpoolVersion, names};

/// The images a Pgpool version runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Image of the `pgpool` container (and of the `pgpool-init` init container).
    pub pgpool: String,
    /// Image of the `exporter` sidecar, when the catalog names one.
    pub exporter: Option<String>,
}

impl Images {
    /// The images of a catalog entry.
    pub fn of(version: &PgpoolVersion) -> Self {
        Self {
            pgpool: version.spec.pgpool.image.clone(),
            exporter: version.spec.exporter.as_ref().map(|e| e.image.clone()),
        }
    }

    /// The image container `name` should run, if this set says anything about it.
    fn for_container(&self, name: &str) -> Option<&str> {
        match name {
            names::CONTAINER_PGPOOL | names::CONTAINER_INIT => Some(&self.pgpool),
            names::CONTAINER_EXPORTER => self.exporter.as_deref(),
            _ => None,
        }
    }
}

/// True when the pod spec runs these images: the `pgpool` container exists and every
/// container these images speak of (pgpool, exporter, pgpool-init) runs its image.
pub fn spec_on_images(spec: &PodSpec, images: &Images) -> bool {
    let has_pgpool = spec
        .containers
        .iter()
        .any(|c| c.name == names::CONTAINER_PGPOOL);
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    has_pgpool
        && all
            .into_iter()
            .all(|c| match images.for_container(&c.name) {
                Some(want) => c.image.as_deref() == Some(want),
                None => true,
            })
}

/// Set the images of the pgpool, exporter and pgpool-init containers. Returns true when
/// anything changed.
pub fn set_spec_images(spec: &mut PodSpec, images: &Images) -> bool {
    let mut changed = false;
    let all = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in all {
        if let Some(want) = images.for_container(&c.name)
            && c.image.as_deref() != Some(want)
        {
            c.image = Some(want.to_string());
            changed = true;
        }
    }
    changed
}

/// True when the pod runs these images (by its spec).
pub fn pod_on_images(pod: &Pod, images: &Images) -> bool {
    pod.spec.as_ref().is_some_and(|s| spec_on_images(s, images))
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
