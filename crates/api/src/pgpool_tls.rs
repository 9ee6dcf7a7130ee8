//! TLS types of a Pgpool, as KubeDB's `kmapi.TLSConfig` (`certificates[]` by alias).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Certificate alias of the server certificate pgpool presents to clients.
pub const ALIAS_SERVER: &str = "server";
/// Certificate alias of the client certificate (the exporter, `clientAuthMode: cert`).
pub const ALIAS_CLIENT: &str = "client";
/// Certificate alias of the metrics exporter's certificate.
pub const ALIAS_METRICS_EXPORTER: &str = "metrics-exporter";
/// The certificates the operator issues for a Pgpool with `spec.tls`, by alias, in order.
pub const CERT_ALIASES: [&str; 3] = [ALIAS_SERVER, ALIAS_CLIENT, ALIAS_METRICS_EXPORTER];

/// Settings of one certificate, by `alias`: `server`, `client` or `metrics-exporter`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Which certificate: `server`, `client` or `metrics-exporter`.
    #[schemars(length(min = 1))]
    pub alias: String,
    /// Name of the Secret holding the certificate; default `<pgpool>-<alias>-cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Subject fields beyond the common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<X509Subject>,
    /// Lifetime (Go duration, for example `2160h`); default 90 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// How long before expiry the certificate is renewed; default a third of its lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    /// Further DNS names (the Services' names are always included for the server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// IP addresses to include.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// URIs to include (cert-manager only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<String>,
    /// Email addresses to include (cert-manager only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<String>,
    /// Private key options (cert-manager only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<CertificatePrivateKey>,
}

/// X.509 subject fields (KubeDB's `X509Subject`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct X509Subject {
    /// Organizations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    /// Countries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Organizational units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizational_units: Vec<String>,
    /// Localities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub localities: Vec<String>,
    /// Provinces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provinces: Vec<String>,
    /// Street addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub street_addresses: Vec<String>,
    /// Postal codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postal_codes: Vec<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

/// Private key options (KubeDB's `CertificatePrivateKey`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePrivateKey {
    /// `PKCS1` or `PKCS8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}
