//! kube-lease-manager (leader election) against the server: it depends on server-side apply
//! conflicts interacting with strategic merge patches.

mod common;

use common::{server, within};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_lease_manager::LeaseManagerBuilder;

#[tokio::test]
async fn leadership_moves_after_release() {
    let s = server();
    let build = |id: &str| {
        LeaseManagerBuilder::new(s.client_as(id), "leader")
            .with_namespace("default")
            .with_identity(id)
            .with_duration(5)
            .with_grace(2)
            .build()
    };
    let a = build("a").await.unwrap();
    let b = build("b").await.unwrap();
    assert!(within(a.changed()).await.unwrap(), "a becomes leader");
    let leases: Api<Lease> = Api::namespaced(s.client(), "default");
    let lease = leases.get("leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("a"));

    a.release().await.unwrap();
    assert!(within(b.changed()).await.unwrap(), "b becomes leader");
    let lease = leases.get("leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("b"));
}
