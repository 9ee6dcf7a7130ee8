use k8s_openapi::api::core::v1::PodSpec;

use super::super::fixtures::*;
use crate::plan::*;

#[test]
fn images_of_specs() {
    let p = pod("u1", V453, true, false);
    assert!(pod_on_images(&p, &images(V453)));
    assert!(!pod_on_images(&p, &images(V460)));
    let mut spec = p.spec.clone().unwrap();
    assert!(set_spec_images(&mut spec, &images(V460)));
    assert!(
        !set_spec_images(&mut spec, &images(V460)),
        "second time: no change"
    );
    assert!(spec_on_images(&spec, &images(V460)));
    assert_eq!(
        spec.init_containers.as_ref().unwrap()[0].image.as_deref(),
        Some(V460)
    );
    // Without an exporter image, the exporter is left alone.
    let bare = Images {
        pgpool: V453.into(),
        exporter: None,
    };
    assert!(set_spec_images(&mut spec, &bare));
    assert_eq!(spec.containers[1].image.as_deref(), Some(EXPORTER));
    // No pgpool container: not on any images.
    let empty = PodSpec::default();
    assert!(!spec_on_images(&empty, &bare));
}
