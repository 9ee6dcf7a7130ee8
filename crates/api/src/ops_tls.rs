//! The settings of the ReconfigureTLS ops type, with KubeDB's field names
//! (`ops.kubedb.com/v1alpha1` `PgpoolTLSSpec`: `TLSSpec` plus `sslMode` and `clientAuthMode`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pgpool::{CertificateSpec, ClientAuthMode, SslMode, TypedLocalObjectReference};

/// ReconfigureTLS settings: add or change TLS (`issuerRef`, `certificates`), issue new
/// certificates (`rotateCertificates`), or remove TLS (`remove`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.remove) && self.remove) || (!has(self.issuerRef) && !has(self.certificates) && !(has(self.rotateCertificates) && self.rotateCertificates))",
        "message": "spec.tls: remove cannot be used together with issuerRef, certificates or rotateCertificates; remove one of them"
    },
    {
        "rule": "!(has(self.remove) && self.remove) || !has(self.clientAuthMode) || self.clientAuthMode != 'cert'",
        "message": "spec.tls: clientAuthMode 'cert' needs TLS and cannot be used with remove: use md5 or scram"
    }
]))]
pub struct ReconfigureTlsSpec {
    /// The cert-manager Issuer or ClusterIssuer the certificates come from; none: the
    /// current source (the built-in CA for a Pgpool without TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<TypedLocalObjectReference>,
    /// Settings per certificate alias, replacing the Pgpool's `spec.tls.certificates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub certificates: Option<Vec<CertificateSpec>>,
    /// Issue new certificates now (the CA stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<bool>,
    /// Remove TLS from the Pgpool (its `sslMode` becomes `disable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<bool>,
    /// The Pgpool's new `spec.sslMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// The Pgpool's new `spec.clientAuthMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth_mode: Option<ClientAuthMode>,
}

impl ReconfigureTlsSpec {
    /// True when TLS is to be removed.
    pub fn removes(&self) -> bool {
        self.remove.unwrap_or(false)
    }
    /// True when new certificates are to be issued.
    pub fn rotates(&self) -> bool {
        self.rotate_certificates.unwrap_or(false)
    }
}
