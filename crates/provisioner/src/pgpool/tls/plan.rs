//! Decide (pure): which certificates a Pgpool needs, where they come from (the built-in CA or
//! a cert-manager issuer), which to issue or renew now, and what the pod and `pgpool.conf`
//! get. Input: the Pgpool, the TLS Secrets that exist ([`TlsObserved`]) and the time.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use pgpool_api::pgpool::{
    ALIAS_CLIENT, ALIAS_METRICS_EXPORTER, ALIAS_SERVER, CertificateSpec, SslMode,
    TypedLocalObjectReference,
};
use pgpool_api::{AppBinding, Pgpool, duration, names};
use pgpool_config::{ClientTls, TlsFiles, TlsInput};
use sha2::{Digest as _, Sha256};

use super::ca::{self, CertPair, KeyPem, LeafRequest, Usage};
pub use super::names::{ca_secret_name, cert_secret_name, secret_names};
use super::observe::{IssuerState, TlsObserved};

/// Secret keys, as cert-manager writes them.
pub const KEY_TLS_CRT: &str = "tls.crt";
/// The private key.
pub const KEY_TLS_KEY: &str = "tls.key";
/// The CA certificate.
pub const KEY_CA_CRT: &str = "ca.crt";

/// A TLS problem the user must fix: a condition reason and a message that names the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, one of [`tls_reason`].
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Condition reasons of TLS problems.
pub mod tls_reason {
    /// The cert-manager Issuer or ClusterIssuer does not exist.
    pub const ISSUER_NOT_FOUND: &str = "IssuerNotFound";
    /// `issuerRef` is set but cert-manager's CRDs are not installed.
    pub const CERT_MANAGER_MISSING: &str = "CertManagerNotInstalled";
    /// `spec.tls` cannot be used as given.
    pub const INVALID_TLS: &str = "InvalidTLS";
    /// The AppBinding's TLS settings cannot be used.
    pub const APPBINDING_INVALID: &str = "AppBindingInvalid";
    /// The issuer writes no `ca.crt`, which `clientAuthMode: cert` needs.
    pub const CA_CERTIFICATE_MISSING: &str = "CACertificateMissing";
}

/// A Secret the built-in CA writes. `Debug` shows no data.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSecret {
    /// Secret name.
    pub name: String,
    /// Its data (PEM texts).
    pub data: BTreeMap<String, String>,
}

impl std::fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSecret")
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A cert-manager `Certificate` to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRequest {
    /// Object name (`<pgpool>-<alias>-cert`, as the Secret).
    pub name: String,
    /// The certificate's settings (secretName, SANs, lifetimes).
    pub spec: CertificateSpec,
    /// Subject common name.
    pub common_name: String,
    /// `server auth` or `client auth`.
    pub usage: Usage,
}

/// Where the certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The provisioner's CA.
    BuiltIn,
    /// A cert-manager issuer.
    CertManager(TypedLocalObjectReference),
}

/// Everything TLS of one Pgpool, decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPlan {
    /// Built-in CA or cert-manager.
    pub source: Source,
    /// Secret with the server certificate the pod mounts.
    pub server_secret: String,
    /// Secret with the client certificate (exporter, `cert` authentication).
    pub client_secret: String,
    /// Built-in CA: the Secrets to write (all of them, issued now or kept).
    pub secrets: Vec<IssuedSecret>,
    /// cert-manager: the Certificates to apply.
    pub certificates: Vec<CertificateRequest>,
    /// Certificates issued this pass in place of existing ones (for events).
    pub renewed: Vec<String>,
    /// cert-manager Secrets not issued yet.
    pub pending: Vec<String>,
    /// When the next certificate is due for renewal (built-in CA).
    pub renew_at: Option<DateTime<Utc>>,
    /// SHA-256 over the certificates the pod mounts (server, exporter, CA; not the client's):
    /// a change rolls the pods.
    pub content_hash: String,
    /// PEM of the backend's CA (AppBinding `caBundle`), added to the pod's CA file.
    pub backend_ca: Option<String>,
    /// What `pgpool.conf` and `pool_hba.conf` get.
    pub render: TlsInput,
    /// Secret with the metrics exporter's certificate (alias `metrics-exporter`).
    pub exporter_secret: String,
}

/// The AppBinding's `sslmode` (URL query or Service query); `None` when it names none.
pub fn backend_sslmode(ab: &AppBinding) -> Option<String> {
    let cc = &ab.spec.client_config;
    let queries = [
        cc.service.as_ref().and_then(|s| s.query.clone()),
        cc.url
            .as_ref()
            .and_then(|u| u.split_once('?').map(|(_, q)| q.to_string())),
    ];
    queries.into_iter().flatten().find_map(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "sslmode").then(|| v.to_string())
        })
    })
}

/// The AppBinding's `caBundle` as PEM, when it has one.
fn backend_ca(ab: &AppBinding) -> Result<Option<String>, Problem> {
    let Some(bundle) = ab
        .spec
        .client_config
        .ca_bundle
        .as_ref()
        .filter(|b| !b.is_empty())
    else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .map_err(|e| {
            Problem::new(
                tls_reason::APPBINDING_INVALID,
                format!(
                    "AppBinding {}: clientConfig.caBundle is not base64: {e}",
                    ab.name_any()
                ),
            )
        })?;
    let pem = String::from_utf8(bytes).map_err(|_| {
        Problem::new(
            tls_reason::APPBINDING_INVALID,
            format!(
                "AppBinding {}: clientConfig.caBundle is not PEM text",
                ab.name_any()
            ),
        )
    })?;
    Ok(Some(pem))
}

fn lifetime(spec: Option<&CertificateSpec>, what: &str) -> Result<Option<Duration>, Problem> {
    let parse = |field: &str, v: &Option<String>| -> Result<Option<Duration>, Problem> {
        v.as_deref()
            .map(|d| {
                duration::parse(d).map_err(|e| {
                    Problem::new(
                        tls_reason::INVALID_TLS,
                        format!("spec.tls.certificates[{what}].{field}: {e}"),
                    )
                })
            })
            .transpose()
    };
    parse("duration", &spec.and_then(|s| s.duration.clone()))
}

fn renew_before(spec: Option<&CertificateSpec>, what: &str) -> Result<Option<Duration>, Problem> {
    spec.and_then(|s| s.renew_before.as_deref())
        .map(|d| {
            duration::parse(d).map_err(|e| {
                Problem::new(
                    tls_reason::INVALID_TLS,
                    format!("spec.tls.certificates[{what}].renewBefore: {e}"),
                )
            })
        })
        .transpose()
}

/// The server certificate's DNS names: the client Service in its short and long forms, every
/// pod under the governing Service, `localhost`, and the spec's own.
pub fn server_dns_names(name: &str, ns: &str, spec: Option<&CertificateSpec>) -> Vec<String> {
    let svc = names::primary_service(name);
    let pods = names::pods_service(name);
    let mut out = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
        format!("*.{pods}.{ns}.svc"),
        format!("*.{pods}.{ns}.svc.cluster.local"),
        "localhost".to_string(),
    ];
    out.extend(spec.iter().flat_map(|s| s.dns_names.iter().cloned()));
    out.sort();
    out.dedup();
    out
}

fn ip_addresses(spec: Option<&CertificateSpec>, server: bool) -> Result<Vec<IpAddr>, Problem> {
    let mut out: Vec<IpAddr> = if server {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        Vec::new()
    };
    for ip in spec.iter().flat_map(|s| s.ip_addresses.iter()) {
        out.push(ip.parse().map_err(|_| {
            Problem::new(
                tls_reason::INVALID_TLS,
                format!("spec.tls.certificates: {ip:?} is not an IP address"),
            )
        })?);
    }
    out.dedup();
    Ok(out)
}

fn text(secret: Option<&Secret>, key: &str) -> Option<String> {
    let s = secret?;
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone())
            .ok()
            .filter(|t| !t.is_empty());
    }
    s.string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
        .filter(|t| !t.is_empty())
}

fn pair_of(secret: Option<&Secret>) -> Option<CertPair> {
    Some(CertPair {
        cert_pem: text(secret, KEY_TLS_CRT)?,
        key_pem: KeyPem(text(secret, KEY_TLS_KEY)?),
    })
}

fn generate_problem(e: ca::CaError) -> Problem {
    Problem::new(
        tls_reason::INVALID_TLS,
        format!("cannot issue a certificate: {e}"),
    )
}

/// One leaf of the built-in CA: kept when it is of this CA, names what it should and is not
/// due; else issued now. Returns (pair, renew at, renewed an existing one).
fn leaf(
    existing: Option<&Secret>,
    ca_pair: &CertPair,
    request: &LeafRequest,
    renew_before: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<(CertPair, DateTime<Utc>, bool), Problem> {
    let kept = pair_of(existing).filter(|pair| {
        text(existing, KEY_CA_CRT).as_deref() == Some(ca_pair.cert_pem.as_str())
            && ca::inspect(&pair.cert_pem).is_ok_and(|info| {
                let mut want = request.dns_names.clone();
                want.sort();
                info.dns_names == want
                    && ca::renew_at(info.not_before, info.not_after, renew_before) > now
            })
    });
    let (pair, renewed) = match kept {
        Some(pair) => (pair, false),
        None => (
            ca::sign(ca_pair, request, now).map_err(generate_problem)?,
            existing.is_some(),
        ),
    };
    let info = ca::inspect(&pair.cert_pem).map_err(generate_problem)?;
    Ok((
        pair,
        ca::renew_at(info.not_before, info.not_after, renew_before),
        renewed,
    ))
}

fn issued(name: &str, pair: &CertPair, ca_pem: &str) -> IssuedSecret {
    IssuedSecret {
        name: name.to_string(),
        data: [
            (KEY_TLS_CRT, pair.cert_pem.clone()),
            (KEY_TLS_KEY, pair.key_pem.0.clone()),
            (KEY_CA_CRT, ca_pem.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    }
}

fn client_tls(mode: SslMode) -> ClientTls {
    match mode {
        SslMode::Disable => ClientTls::Disabled,
        SslMode::Allow | SslMode::Prefer => ClientTls::Optional,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => ClientTls::Required,
    }
}

/// Decides the TLS of `pgpool`; `None` when it has neither `spec.tls` nor a TLS backend.
/// `client_user` is the CN of the client certificate (the database user the exporter uses).
pub fn plan(
    pgpool: &Pgpool,
    appbinding: &AppBinding,
    observed: &TlsObserved,
    client_user: &str,
    now: DateTime<Utc>,
) -> Result<Option<TlsPlan>, Problem> {
    let backend = backend_sslmode(appbinding).is_some_and(|m| m != "disable");
    let backend_ca = backend_ca(appbinding)?;
    let Some(tls) = &pgpool.spec.tls else {
        if !backend {
            return Ok(None);
        }
        return Ok(Some(TlsPlan {
            source: Source::BuiltIn,
            server_secret: String::new(),
            client_secret: String::new(),
            secrets: Vec::new(),
            certificates: Vec::new(),
            renewed: Vec::new(),
            pending: Vec::new(),
            renew_at: None,
            content_hash: String::new(),
            backend_ca: None,
            render: TlsInput {
                backend: true,
                ..TlsInput::default()
            },
            exporter_secret: String::new(),
        }));
    };
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    for c in &tls.certificates {
        if !pgpool_api::pgpool::CERT_ALIASES.contains(&c.alias.as_str()) {
            return Err(Problem::new(
                tls_reason::INVALID_TLS,
                format!(
                    "spec.tls.certificates: unknown alias {:?}; use server, client or metrics-exporter",
                    c.alias
                ),
            ));
        }
    }
    let server_spec = tls.certificate(ALIAS_SERVER);
    let client_spec = tls.certificate(ALIAS_CLIENT);
    let server_secret = cert_secret_name(&name, tls, ALIAS_SERVER);
    let client_secret = cert_secret_name(&name, tls, ALIAS_CLIENT);
    let organizations = |s: Option<&CertificateSpec>| {
        s.and_then(|s| s.subject.as_ref())
            .map(|s| s.organizations.clone())
            .unwrap_or_default()
    };
    let server_request = LeafRequest {
        common_name: names::primary_service(&name),
        organizations: organizations(server_spec),
        dns_names: server_dns_names(&name, &ns, server_spec),
        ip_addresses: ip_addresses(server_spec, true)?,
        usage: Usage::Server,
        lifetime: lifetime(server_spec, ALIAS_SERVER)?.unwrap_or(ca::LEAF_LIFETIME),
    };
    let client_request = LeafRequest {
        common_name: client_user.to_string(),
        organizations: organizations(client_spec),
        dns_names: client_spec.map(|s| s.dns_names.clone()).unwrap_or_default(),
        ip_addresses: ip_addresses(client_spec, false)?,
        usage: Usage::Client,
        lifetime: lifetime(client_spec, ALIAS_CLIENT)?.unwrap_or(ca::LEAF_LIFETIME),
    };
    // the exporter logs in as the same user as the client certificate names
    let exporter_spec = tls.certificate(ALIAS_METRICS_EXPORTER);
    let exporter_secret = cert_secret_name(&name, tls, ALIAS_METRICS_EXPORTER);
    let exporter_request = LeafRequest {
        organizations: organizations(exporter_spec),
        dns_names: exporter_spec
            .map(|s| s.dns_names.clone())
            .unwrap_or_default(),
        ip_addresses: ip_addresses(exporter_spec, false)?,
        lifetime: lifetime(exporter_spec, ALIAS_METRICS_EXPORTER)?.unwrap_or(ca::LEAF_LIFETIME),
        ..client_request.clone()
    };

    let mut out = TlsPlan {
        source: Source::BuiltIn,
        server_secret: server_secret.clone(),
        client_secret: client_secret.clone(),
        secrets: Vec::new(),
        certificates: Vec::new(),
        renewed: Vec::new(),
        pending: Vec::new(),
        renew_at: None,
        content_hash: String::new(),
        backend_ca,
        render: TlsInput {
            clients: client_tls(pgpool.spec.ssl_mode()),
            files: Some(TlsFiles::default()),
            backend,
        },
        exporter_secret: exporter_secret.clone(),
    };

    match &tls.issuer_ref {
        Some(issuer) => {
            match &observed.issuer {
                IssuerState::CertManagerMissing => {
                    return Err(Problem::new(
                        tls_reason::CERT_MANAGER_MISSING,
                        format!(
                            "spec.tls.issuerRef names {} {:?} but cert-manager is not installed (no cert-manager.io/v1 Certificate API); install cert-manager or remove issuerRef to use the built-in CA",
                            issuer.kind, issuer.name
                        ),
                    ));
                }
                IssuerState::NotFound => {
                    return Err(Problem::new(
                        tls_reason::ISSUER_NOT_FOUND,
                        format!(
                            "{} {:?} (spec.tls.issuerRef) not found; create it or fix spec.tls.issuerRef",
                            issuer.kind, issuer.name
                        ),
                    ));
                }
                IssuerState::Found | IssuerState::NotUsed => {}
            }
            out.source = Source::CertManager(issuer.clone());
            let mut server = server_spec.cloned().unwrap_or_default();
            server.alias = ALIAS_SERVER.into();
            server.secret_name = Some(server_secret.clone());
            server.dns_names = server_request.dns_names.clone();
            server.ip_addresses = server_request
                .ip_addresses
                .iter()
                .map(|i| i.to_string())
                .collect();
            out.certificates = vec![CertificateRequest {
                name: server_secret.clone(),
                spec: server,
                common_name: server_request.common_name.clone(),
                usage: Usage::Server,
            }];
            for (alias, spec, secret) in [
                (ALIAS_CLIENT, client_spec, &client_secret),
                (ALIAS_METRICS_EXPORTER, exporter_spec, &exporter_secret),
            ] {
                let mut c = spec.cloned().unwrap_or_default();
                c.alias = alias.into();
                c.secret_name = Some(secret.clone());
                out.certificates.push(CertificateRequest {
                    name: secret.clone(),
                    spec: c,
                    common_name: client_request.common_name.clone(),
                    usage: Usage::Client,
                });
            }
            let mut hash = Sha256::new();
            for secret_name in [&server_secret, &client_secret, &exporter_secret] {
                let secret = observed.secrets.get(secret_name.as_str());
                // `ca.crt` is optional: not every issuer writes it (see `issuer_ca`)
                if [KEY_TLS_CRT, KEY_TLS_KEY]
                    .iter()
                    .any(|k| text(secret, k).is_none())
                {
                    out.pending.push(secret_name.clone());
                }
                // the pods mount the server's and the exporter's certificates, not the client's
                if *secret_name == client_secret {
                    continue;
                }
                for k in [KEY_TLS_CRT, KEY_CA_CRT] {
                    hash.update(text(secret, k).unwrap_or_default().as_bytes());
                }
            }
            out.content_hash = hex::encode(hash.finalize());
            issuer_ca::decide(&mut out, pgpool, observed, issuer)?;
        }
        None => {
            let ca_name = ca_secret_name(&name);
            let existing_ca = pair_of(observed.secrets.get(&ca_name)).filter(|p| {
                ca::inspect(&p.cert_pem)
                    .is_ok_and(|i| ca::renew_at(i.not_before, i.not_after, None) > now)
            });
            let (ca_pair, new_ca) = match existing_ca {
                Some(p) => (p, false),
                None => (
                    ca::new_ca(&format!("{name}-ca"), now, ca::CA_LIFETIME)
                        .map_err(generate_problem)?,
                    true,
                ),
            };
            if new_ca && observed.secrets.contains_key(&ca_name) {
                out.renewed.push(format!("CA Secret {ca_name}"));
            }
            let ca_info = ca::inspect(&ca_pair.cert_pem).map_err(generate_problem)?;
            out.renew_at = Some(ca::renew_at(ca_info.not_before, ca_info.not_after, None));
            out.secrets = vec![IssuedSecret {
                name: ca_name,
                data: [
                    (KEY_TLS_CRT.to_string(), ca_pair.cert_pem.clone()),
                    (KEY_TLS_KEY.to_string(), ca_pair.key_pem.0.clone()),
                ]
                .into_iter()
                .collect(),
            }];
            let mut hash = Sha256::new();
            for (alias, spec, secret, request) in [
                (ALIAS_SERVER, server_spec, &server_secret, &server_request),
                (ALIAS_CLIENT, client_spec, &client_secret, &client_request),
                (
                    ALIAS_METRICS_EXPORTER,
                    exporter_spec,
                    &exporter_secret,
                    &exporter_request,
                ),
            ] {
                let (pair, due, renewed) = leaf(
                    observed.secrets.get(secret.as_str()),
                    &ca_pair,
                    request,
                    renew_before(spec, alias)?,
                    now,
                )?;
                if renewed {
                    out.renewed
                        .push(format!("{alias} certificate Secret {secret}"));
                }
                out.renew_at = out.renew_at.min(Some(due));
                // the pods mount the server's and the exporter's certificates, not the client's
                if alias != ALIAS_CLIENT {
                    hash.update(pair.cert_pem.as_bytes());
                }
                out.secrets.push(issued(secret, &pair, &ca_pair.cert_pem));
            }
            hash.update(ca_pair.cert_pem.as_bytes());
            out.content_hash = hex::encode(hash.finalize());
        }
    }
    if let Some(ca) = &out.backend_ca {
        let mut hash = Sha256::new();
        hash.update(out.content_hash.as_bytes());
        hash.update(ca.as_bytes());
        out.content_hash = hex::encode(hash.finalize());
    }
    Ok(Some(out))
}

#[path = "plan_issuer_ca.rs"]
mod issuer_ca;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_extras_tests.rs"]
mod extras_tests;
