//! The names of a Pgpool's TLS Secrets (KubeDB's naming): `<name>-ca` (built-in CA only),
//! `<name>-server-cert`, `<name>-client-cert` and `<name>-metrics-exporter-cert`, or the
//! spec's `secretName`.

use kube::ResourceExt;
use pgpool_api::Pgpool;
use pgpool_api::pgpool::{CERT_ALIASES, TlsConfig};

/// Name of the built-in CA Secret of Pgpool `name` (one CA per Pgpool, owned by it).
pub fn ca_secret_name(name: &str) -> String {
    format!("{name}-ca")
}

/// The Secret of certificate `alias`: `secretName` from the spec, else `<name>-<alias>-cert`.
pub fn cert_secret_name(name: &str, tls: &TlsConfig, alias: &str) -> String {
    tls.secret_name(name, alias)
}

/// The Secret names a Pgpool's TLS uses (CA first for the built-in CA, then the certificates
/// in the order of [`CERT_ALIASES`]).
pub fn secret_names(pgpool: &Pgpool) -> Vec<String> {
    let Some(tls) = &pgpool.spec.tls else {
        return Vec::new();
    };
    let name = pgpool.name_any();
    let mut out = Vec::new();
    if tls.issuer_ref.is_none() {
        out.push(ca_secret_name(&name));
    }
    out.extend(CERT_ALIASES.iter().map(|a| cert_secret_name(&name, tls, a)));
    out
}
