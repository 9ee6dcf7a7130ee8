//! Reads of what a Pgpool's TLS depends on: its TLS Secrets, whether cert-manager's
//! `Certificate` API exists and whether the named Issuer or ClusterIssuer exists.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use operator_kit::api::is_not_found;
use pgpool_api::Pgpool;

use super::names::secret_names;

/// cert-manager's API group.
pub const CERT_MANAGER_GROUP: &str = "cert-manager.io";

/// The `Certificate` kind of cert-manager.
pub fn certificate_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk(CERT_MANAGER_GROUP, "v1", "Certificate")
}

/// Whether the issuer named by `spec.tls.issuerRef` can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssuerState {
    /// No `issuerRef`.
    #[default]
    NotUsed,
    /// It exists.
    Found,
    /// cert-manager's CRDs answer, but not that issuer.
    NotFound,
    /// cert-manager is not installed.
    CertManagerMissing,
}

/// What was read for a Pgpool's TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsObserved {
    /// The TLS Secrets that exist, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// The issuer.
    pub issuer: IssuerState,
    /// The Certificate API, when cert-manager is installed and an issuer is used.
    pub certificate_api: Option<ApiResource>,
    /// The Certificates that exist, by name.
    pub certificates: BTreeMap<String, DynamicObject>,
}

async fn pinned(client: &Client, gvk: &GroupVersionKind) -> kube::Result<Option<ApiResource>> {
    match kube::discovery::pinned_kind(client, gvk).await {
        Ok((resource, _)) => Ok(Some(resource)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the TLS Secrets of `pgpool` and, with an `issuerRef`, the issuer and Certificates.
pub async fn read(client: &Client, pgpool: &Pgpool) -> kube::Result<TlsObserved> {
    let mut out = TlsObserved::default();
    let Some(tls) = &pgpool.spec.tls else {
        return Ok(out);
    };
    let ns = pgpool.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in secret_names(pgpool) {
        if let Some(s) = secrets.get_opt(&name).await? {
            out.secrets.insert(name, s);
        }
    }
    let Some(issuer) = &tls.issuer_ref else {
        return Ok(out);
    };
    let Some(certificates) = pinned(client, &certificate_gvk()).await? else {
        out.issuer = IssuerState::CertManagerMissing;
        return Ok(out);
    };
    let cluster = issuer.kind == "ClusterIssuer";
    let gvk = GroupVersionKind::gvk(CERT_MANAGER_GROUP, "v1", &issuer.kind);
    let found = match pinned(client, &gvk).await? {
        None => false,
        Some(ar) => {
            let api: Api<DynamicObject> = if cluster {
                Api::all_with(client.clone(), &ar)
            } else {
                Api::namespaced_with(client.clone(), &ns, &ar)
            };
            api.get_opt(&issuer.name).await?.is_some()
        }
    };
    out.issuer = if found {
        IssuerState::Found
    } else {
        IssuerState::NotFound
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &certificates);
    for name in secret_names(pgpool) {
        if let Some(c) = api.get_opt(&name).await? {
            out.certificates.insert(c.name_any(), c);
        }
    }
    out.certificate_api = Some(certificates);
    Ok(out)
}
