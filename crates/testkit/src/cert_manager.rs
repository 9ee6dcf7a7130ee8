//! A stand-in for cert-manager: its CRDs, and a loop that gives every `Certificate` without
//! its Secret one, with the data a test's signer returns (the test decides what a certificate
//! holds; this module only plays the controller). Rotation works as with cert-manager: delete
//! the Secret and a new one is issued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use tokio::task::JoinHandle;

use crate::TestServer;
use crate::fixtures::{schemaless_crd, secret};

/// cert-manager's API group.
pub const GROUP: &str = "cert-manager.io";

/// The `ApiResource` of cert-manager kind `kind` (`Certificate`, `Issuer`, `ClusterIssuer`).
pub fn api_resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", kind), &plural)
}

/// Registers the `Certificate`, `Issuer` and `ClusterIssuer` CRDs (schemaless).
pub fn install_crds(server: &TestServer) {
    for (kind, scope) in [
        ("Certificate", "Namespaced"),
        ("Issuer", "Namespaced"),
        ("ClusterIssuer", "Cluster"),
    ] {
        let crd: CustomResourceDefinition =
            schemaless_crd(GROUP, kind, &format!("{}s", kind.to_lowercase()), scope);
        server.register_crd(&crd);
    }
}

/// The certificate data (`tls.crt`, `tls.key`, `ca.crt`, ...) for a `Certificate`.
pub type Signer = dyn Fn(&DynamicObject) -> Vec<(String, String)> + Send + Sync;

/// The running stand-in; stops when dropped.
pub struct FakeCertManager {
    task: JoinHandle<()>,
    issued: Arc<AtomicUsize>,
}

impl FakeCertManager {
    /// Issues, in `namespace`, the Secret of every `Certificate` that has none, with `sign`.
    pub fn start(client: Client, namespace: &str, sign: Box<Signer>) -> Self {
        let issued = Arc::new(AtomicUsize::new(0));
        let count = issued.clone();
        let certificates: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource("Certificate"));
        let secrets: Api<Secret> = Api::namespaced(client, namespace);
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            let changes = futures::stream::select(
                watcher(certificates.clone(), watcher::Config::default()).map(|_| ()),
                watcher(secrets.clone(), watcher::Config::default()).map(|_| ()),
            );
            futures::pin_mut!(changes);
            while changes.next().await.is_some() {
                let Ok(list) = certificates.list(&ListParams::default()).await else {
                    continue;
                };
                for certificate in list.items {
                    let Some(name) = certificate.data["spec"]["secretName"].as_str() else {
                        continue;
                    };
                    if !matches!(secrets.get_opt(name).await, Ok(None)) {
                        continue;
                    }
                    let data = sign(&certificate);
                    let mut s = secret(
                        &ns,
                        name,
                        data.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    );
                    s.type_ = Some("kubernetes.io/tls".into());
                    if secrets.create(&PostParams::default(), &s).await.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Self { task, issued }
    }

    /// How many Secrets it issued so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl Drop for FakeCertManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}
