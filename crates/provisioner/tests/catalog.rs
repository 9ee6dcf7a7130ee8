//! The default catalog: applied by the provisioner once the PgpoolVersion CRD is served, and
//! a bad catalog file stops the binary before it starts.

use std::process::Command;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::wait::await_condition;
use operator_kit::CancellationToken;
use pgpool_api::PgpoolVersion;
use pgpool_provisioner::catalog;
use testkit::{FaultRule, TestServer, Verb};

const CATALOG: &str = "
apiVersion: catalog.kubedb.com/v1alpha1
kind: PgpoolVersion
metadata:
  name: '4.5.3'
spec:
  version: '4.5.3'
  pgpool:
    image: ghcr.io/appscode-images/pgpool2:4.5.3
  updateConstraints:
    allowlist: ['>= 4.5.3, <= 4.6.0']
---
apiVersion: catalog.kubedb.com/v1alpha1
kind: PgpoolVersion
metadata:
  name: '4.6.0'
spec:
  version: '4.6.0'
  pgpool:
    image: ghcr.io/appscode-images/pgpool2:4.6.0
";

/// On a fresh cluster the CRD may not be served yet when the provisioner starts (the API
/// server answers 404 for the kind): the apply retries instead of failing, and a second
/// apply changes nothing.
#[tokio::test]
async fn the_catalog_is_applied_once_the_crd_is_served() {
    let server = TestServer::with_crds(pgpool_api::crds::all());
    server.faults().inject(
        FaultRule::new(404)
            .verb(Verb::Patch)
            .resource("pgpoolversions")
            .times(3)
            .message("the server could not find the requested resource"),
    );
    let versions = catalog::parse(CATALOG).expect("catalog parses");
    let stop = CancellationToken::new();
    let done = tokio::time::timeout(
        Duration::from_secs(20),
        catalog::apply(server.client(), versions.clone(), stop.clone()),
    )
    .await
    .expect("applied within the first back-off steps");
    assert!(done);
    assert_eq!(server.faults().pending(), 0, "every refusal was met");
    let api: Api<PgpoolVersion> = Api::all(server.client());
    for name in ["4.5.3", "4.6.0"] {
        let v = tokio::time::timeout(
            Duration::from_secs(5),
            await_condition(api.clone(), name, |o: Option<&PgpoolVersion>| o.is_some()),
        )
        .await
        .expect("in time")
        .expect("watch")
        .expect("exists");
        assert_eq!(v.spec.version, name);
    }

    let mark = server.requests().mark();
    assert!(catalog::apply(server.client(), versions, stop).await);
    assert_eq!(server.requests().changes_since(&mark), 0, "nothing changed");
}

#[test]
fn a_bad_catalog_file_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("catalog.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pgpool-provisioner"))
        .arg("--catalog-file")
        .arg(&file)
        .env("KUBECONFIG", dir.path().join("none"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("pgpool-provisioner: error: catalog document 1: expected"),
        "{stderr}"
    );
}
