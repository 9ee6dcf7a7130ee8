//! Writes of a Pgpool's TLS: the built-in CA's Secrets and cert-manager Certificates
//! (server-side apply, field manager `pgpool-provisioner`), and a `CertificateRenewed` event
//! per certificate issued in place of another. Events name Secrets, never their contents.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::core::ObjectMeta;
use kube::{Resource, ResourceExt};
use pgpool_api::Pgpool;

use crate::pgpool::apply::ensure;
use crate::pgpool::build::Desired;
use crate::pgpool::context::Context;
use crate::pgpool::dereference::Observed;
use crate::pgpool::error::ReconcileError;
use crate::pgpool::index::Kind;
use crate::pgpool::validate::Plan;

/// Event reason of a certificate issued in place of an expiring (or changed) one.
pub const REASON_CERTIFICATE_RENEWED: &str = "CertificateRenewed";

/// Applies the TLS children that differ; returns what was written.
pub async fn apply(
    ctx: &Context,
    pgpool: &Pgpool,
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
) -> Result<Vec<(Kind, String, ObjectMeta)>, ReconcileError> {
    let mut written = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &plan.namespace);
    for secret in &desired.tls_secrets {
        let have = observed.tls.secrets.get(&secret.name_any());
        if let Some(w) = ensure(&secrets, secret, have).await? {
            written.push((Kind::Secret, w.name_any(), w.meta().clone()));
        }
    }
    if let Some(ar) = &plan.certificate_api {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &plan.namespace, ar);
        for certificate in &desired.certificates {
            let have = observed.tls.certificates.get(&certificate.name_any());
            // not watched: not part of the fingerprints
            ensure(&api, certificate, have).await?;
        }
    }
    if let Some(tls) = &plan.tls {
        for what in &tls.renewed {
            ctx.recorder
                .normal(
                    pgpool,
                    REASON_CERTIFICATE_RENEWED,
                    &format!(
                        "issued a new {what} from the built-in CA; the pods restart to load it"
                    ),
                )
                .await;
        }
    }
    Ok(written)
}
