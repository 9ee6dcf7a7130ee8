//! The built-in CA (pure): a self-signed CA, server and client certificates signed by it, and
//! the validity of a stored certificate, with `rcgen` (key pairs and certificates, ECDSA P-256)
//! and `x509-parser` (reading a stored certificate back).
//!
//! Private keys only ever live in [`KeyPem`], whose `Debug` prints no key bytes, and in the
//! Secrets built from it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Lifetime of a built-in CA certificate.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of a certificate signed by the built-in CA (as cert-manager's default).
pub const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Why a certificate could not be made or read; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused to make or sign a certificate.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    /// A stored certificate or key does not parse.
    #[error("cannot read the stored {what}: {reason}")]
    Parse {
        /// Which object: "certificate", "CA certificate", "CA key".
        what: &'static str,
        /// Why (from the parser; no key bytes).
        reason: String,
    },
}

/// A PEM private key. `Debug` shows no key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(pub String);

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: KeyPem,
}

/// What a signed certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (pgpool towards its clients).
    Server,
    /// A TLS client (the exporter, or a user logging in with `clientAuthMode: cert`).
    Client,
}

/// A certificate to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    /// Subject common name (for a client certificate: the database user).
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Server or client.
    pub usage: Usage,
    /// Lifetime from `now`.
    pub lifetime: Duration,
}

/// The start of validity: a little before `now` for clocks a little behind (a minute, at most
/// a quarter of the lifetime, so that the default renewal point stays ahead of `now`).
fn backdated(now: DateTime<Utc>, lifetime: Duration) -> DateTime<Utc> {
    let back = Duration::from_secs(60).min(lifetime / 4);
    now - chrono::Duration::from_std(back).unwrap_or_default()
}

fn to_time(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn generate_err(e: rcgen::Error) -> CaError {
    CaError::Generate(e.to_string())
}

fn random_serial() -> rcgen::SerialNumber {
    use rand::Rng as _;
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[0] &= 0x7f; // positive
    rcgen::SerialNumber::from_slice(&bytes)
}

/// A new self-signed CA valid from shortly before `now` until `lifetime` after it.
pub fn new_ca(
    common_name: &str,
    now: DateTime<Utc>,
    lifetime: Duration,
) -> Result<CertPair, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "pgpool-operator");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = to_time(backdated(now, lifetime));
    params.not_after = to_time(now + chrono::Duration::from_std(lifetime).unwrap_or_default());
    let key = KeyPair::generate().map_err(generate_err)?;
    let cert = params.self_signed(&key).map_err(generate_err)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: KeyPem(key.serialize_pem()),
    })
}

/// A certificate for `request`, signed by `ca`, valid from shortly before `now`.
pub fn sign(ca: &CertPair, request: &LeafRequest, now: DateTime<Utc>) -> Result<CertPair, CaError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem.0).map_err(|e| CaError::Parse {
        what: "CA key",
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| CaError::Parse {
        what: "CA certificate",
        reason: e.to_string(),
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, request.common_name.as_str());
    for org in &request.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    let mut sans = Vec::new();
    for name in &request.dns_names {
        let name = name.as_str().try_into().map_err(generate_err)?;
        sans.push(SanType::DnsName(name));
    }
    sans.extend(request.ip_addresses.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match request.usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = to_time(backdated(now, request.lifetime));
    params.not_after =
        to_time(now + chrono::Duration::from_std(request.lifetime).unwrap_or_default());
    let key = KeyPair::generate().map_err(generate_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate_err)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: KeyPem(key.serialize_pem()),
    })
}

/// What the provisioner needs to know of a stored certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// DNS subject alternative names, sorted.
    pub dns_names: Vec<String>,
    /// Issuer distinguished name as text.
    pub issuer: String,
    /// Subject distinguished name as text.
    pub subject: String,
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, CaError> {
    let parse_err = |reason: String| CaError::Parse {
        what: "certificate",
        reason,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| parse_err(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| parse_err(e.to_string()))?;
    let at = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or_default()
    };
    let mut dns_names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    dns_names.sort();
    Ok(CertInfo {
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
        dns_names,
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
    })
}

/// When a certificate valid from `not_before` to `not_after` is to be renewed: `renew_before`
/// ahead of its end, or, without one (or one longer than the lifetime), when a third of the
/// lifetime is left (cert-manager's default).
pub fn renew_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    renew_before: Option<Duration>,
) -> DateTime<Utc> {
    let lifetime = not_after - not_before;
    let ahead = renew_before
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .filter(|d| *d > chrono::Duration::zero() && *d < lifetime)
        .unwrap_or(lifetime / 3);
    not_after - ahead
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
