//! The names of a Pgpool's TLS Secrets (KubeDB's naming): `<name>-ca` (built-in CA only),
//! `<name>-server-cert` and `<name>-client-cert`, or the spec's `secretName`.

use kube::ResourceExt;
use pgpool_api::Pgpool;
use pgpool_api::pgpool::{ALIAS_CLIENT, ALIAS_SERVER, TlsConfig};

/// Name of the built-in CA Secret of Pgpool `name` (one CA per Pgpool, owned by it).
pub fn ca_secret_name(name: &str) -> String {
    format!("{name}-ca")
}

/// The Secret of certificate `alias`: `secretName` from the spec, else `<name>-<alias>-cert`.
pub fn cert_secret_name(name: &str, tls: &TlsConfig, alias: &str) -> String {
    tls.certificate(alias)
        .and_then(|c| c.secret_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{name}-{alias}-cert"))
}

/// The Secret names a Pgpool's TLS uses (CA first for the built-in CA).
pub fn secret_names(pgpool: &Pgpool) -> Vec<String> {
    let Some(tls) = &pgpool.spec.tls else {
        return Vec::new();
    };
    let name = pgpool.name_any();
    let mut out = Vec::new();
    if tls.issuer_ref.is_none() {
        out.push(ca_secret_name(&name));
    }
    out.push(cert_secret_name(&name, tls, ALIAS_SERVER));
    out.push(cert_secret_name(&name, tls, ALIAS_CLIENT));
    out
}
