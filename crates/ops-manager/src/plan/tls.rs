//! ReconfigureTLS decisions (pure): the Pgpool spec change a request makes (`spec.tls`,
//! `spec.sslMode`, `spec.clientAuthMode`), the patch that undoes it, and the certificate
//! Secrets a rotation removes so that new ones are issued.
//!
//! Rotation removes the certificate Secrets (never the built-in CA's): the provisioner issues
//! a missing certificate from its CA, and cert-manager issues a missing Secret of a
//! `Certificate` again, so one action serves both sources.

use pgpool_api::ops_tls::ReconfigureTlsSpec;
use pgpool_api::pgpool::{CERT_ALIASES, ClientAuthMode, SslMode, TlsConfig};
use pgpool_api::{Pgpool, PgpoolOpsRequest};
use serde_json::{Value, json};

/// The change a ReconfigureTLS request makes to the Pgpool.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsChange {
    /// Merge patch of the Pgpool that makes the change.
    pub patch: Value,
    /// Merge patch that puts the previous settings back.
    pub undo: Value,
    /// Certificate Secrets to remove so that new certificates are issued (rotation).
    pub rotate_secrets: Vec<String>,
}

/// What to do with a ReconfigureTLS request.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsCheck {
    /// Make this change.
    Go(TlsChange),
    /// Nothing to do: the message says why.
    AlreadyDone(String),
    /// The request cannot be carried out: reason and the fix.
    Fail(&'static str, String),
}

/// The certificate Secrets (server, client and metrics exporter, not the CA) of `pp`'s TLS
/// settings `tls`.
pub fn cert_secrets(pp_name: &str, tls: &TlsConfig) -> Vec<String> {
    CERT_ALIASES
        .iter()
        .map(|alias| tls.secret_name(pp_name, alias))
        .collect()
}

/// True when the PetSet's template, whose certificate hash is `hash`, serves the TLS settings
/// of the spec: a hash when the spec has TLS (a different one from `old` when the request
/// replaced certificates: `rotated`), none without.
pub fn tls_template_ok(
    spec_tls: bool,
    rotated: bool,
    old: Option<&str>,
    hash: Option<&str>,
) -> bool {
    match (spec_tls, hash) {
        (false, None) => true,
        (true, Some(h)) => !rotated || old != Some(h),
        _ => false,
    }
}

fn spec_patch(
    tls: Option<&TlsConfig>,
    ssl: Option<SslMode>,
    auth: Option<ClientAuthMode>,
) -> Value {
    // every field written, absent ones as null, so that a merge patch replaces them
    let tls = tls.map(|t| {
        json!({
            "issuerRef": t.issuer_ref,
            "certificates": if t.certificates.is_empty() {
                Value::Null
            } else {
                json!(t.certificates)
            },
        })
    });
    json!({ "spec": { "tls": tls, "sslMode": ssl, "clientAuthMode": auth } })
}

/// Decide what a ReconfigureTLS request does to `pp`.
pub fn plan_tls(req: &PgpoolOpsRequest, pp: &Pgpool) -> TlsCheck {
    let name = pp.metadata.name.clone().unwrap_or_default();
    let Some(want) = req.spec.tls.as_ref() else {
        return TlsCheck::Fail(
            "TLSSpecMissing",
            "spec.tls is empty: set issuerRef, certificates, sslMode, clientAuthMode, \
             rotateCertificates: true or remove: true"
                .into(),
        );
    };
    let cur = &pp.spec;
    let undo = spec_patch(cur.tls.as_ref(), cur.ssl_mode, cur.client_auth_mode);
    if want.removes() {
        return plan_remove(want, pp, &name, undo);
    }
    let mut tls = cur.tls.clone().unwrap_or_default();
    if let Some(issuer) = &want.issuer_ref {
        tls.issuer_ref = Some(issuer.clone());
    }
    if let Some(certs) = &want.certificates {
        tls.certificates = certs.clone();
    }
    let ssl = want.ssl_mode.or(cur.ssl_mode);
    let auth = want.client_auth_mode.or(cur.client_auth_mode);
    let adds = cur.tls.is_none();
    let changes = adds
        || cur.tls.as_ref() != Some(&tls)
        || ssl != cur.ssl_mode
        || auth != cur.client_auth_mode;
    let asks = want.issuer_ref.is_some()
        || want.certificates.is_some()
        || want.ssl_mode.is_some()
        || want.client_auth_mode.is_some()
        || want.rotates();
    if !asks && !adds {
        return TlsCheck::Fail(
            "NothingToChange",
            format!(
                "spec.tls asks for nothing and Pgpool {name} has TLS already: set issuerRef, \
                 certificates, sslMode, clientAuthMode, rotateCertificates: true or remove: true"
            ),
        );
    }
    if !changes && !want.rotates() {
        return TlsCheck::AlreadyDone(format!(
            "Pgpool {name} already has these TLS settings: nothing to change (set \
             rotateCertificates: true for new certificates)"
        ));
    }
    // the old certificates go when new ones are asked for, or when their settings change
    let rotate_secrets = match &cur.tls {
        Some(old) if want.rotates() || old != &tls => cert_secrets(&name, old),
        _ => Vec::new(),
    };
    TlsCheck::Go(TlsChange {
        patch: spec_patch(Some(&tls), ssl, auth),
        undo,
        rotate_secrets,
    })
}

fn plan_remove(want: &ReconfigureTlsSpec, pp: &Pgpool, name: &str, undo: Value) -> TlsCheck {
    let cur = &pp.spec;
    if cur.tls.is_none() {
        return TlsCheck::AlreadyDone(format!("Pgpool {name} has no TLS: nothing to remove"));
    }
    if want.ssl_mode.is_some_and(|m| m != SslMode::Disable) {
        return TlsCheck::Fail(
            "InvalidSSLMode",
            "spec.tls.remove: true leaves no TLS: leave spec.tls.sslMode out or set it to \
             disable"
                .into(),
        );
    }
    let auth = want.client_auth_mode.or(cur.client_auth_mode);
    if auth == Some(ClientAuthMode::Cert) {
        return TlsCheck::Fail(
            "ClientAuthModeNeedsTLS",
            format!(
                "Pgpool {name} authenticates clients by certificate (clientAuthMode: cert), \
                 which needs TLS: set spec.tls.clientAuthMode to md5 or scram"
            ),
        );
    }
    TlsCheck::Go(TlsChange {
        patch: spec_patch(None, None, auth),
        undo,
        rotate_secrets: Vec::new(),
    })
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
