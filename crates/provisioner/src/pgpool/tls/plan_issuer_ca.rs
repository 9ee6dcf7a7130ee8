//! The pod's CA file with a cert-manager issuer (pure). Not every issuer writes `ca.crt` into
//! the certificate Secret (ACME, for one, writes only `tls.crt` and `tls.key`). The pod's CA
//! file is then built from what exists: the AppBinding's `caBundle` when there is one, else
//! there is none and `pgpool.conf` names no `ssl_ca_cert`. TLS for clients that verify only
//! the server keeps working; `clientAuthMode: cert` needs a CA to check client certificates,
//! so it is a problem that names the Secret, the key and the fix.

use kube::ResourceExt;
use pgpool_api::Pgpool;
use pgpool_api::pgpool::{ClientAuthMode, TypedLocalObjectReference};

use super::{
    KEY_CA_CRT, KEY_TLS_CRT, KEY_TLS_KEY, Problem, TlsObserved, TlsPlan, text, tls_reason,
};

/// Whether the issued server certificate Secret of `plan` lacks `ca.crt`; `false` while it is
/// not issued yet (cert-manager writes all keys at once).
pub fn issued_without_ca(plan: &TlsPlan, observed: &TlsObserved) -> bool {
    let secret = observed.secrets.get(plan.server_secret.as_str());
    [KEY_TLS_CRT, KEY_TLS_KEY]
        .iter()
        .all(|k| text(secret, k).is_some())
        && text(secret, KEY_CA_CRT).is_none()
}

/// Adjusts `plan` (cert-manager) to an issuer that writes no `ca.crt`: no CA file without a
/// backend `caBundle`; a [`Problem`] with `clientAuthMode: cert`.
pub fn decide(
    plan: &mut TlsPlan,
    pgpool: &Pgpool,
    observed: &TlsObserved,
    issuer: &TypedLocalObjectReference,
) -> Result<(), Problem> {
    if !issued_without_ca(plan, observed) {
        return Ok(());
    }
    if pgpool.spec.client_auth_mode() == ClientAuthMode::Cert {
        return Err(Problem::new(
            tls_reason::CA_CERTIFICATE_MISSING,
            format!(
                "Secret {}/{} written by {} {:?} (spec.tls.issuerRef) has no key {KEY_CA_CRT}, \
                 which clientAuthMode cert needs to verify client certificates; use an issuer \
                 that writes {KEY_CA_CRT} (for example a cert-manager CA issuer) or set \
                 clientAuthMode to md5 or scram",
                pgpool.namespace().unwrap_or_default(),
                plan.server_secret,
                issuer.kind,
                issuer.name
            ),
        ));
    }
    if plan.backend_ca.is_none()
        && let Some(files) = plan.render.files.as_mut()
    {
        files.ca = None;
    }
    Ok(())
}
