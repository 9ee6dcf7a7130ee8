//! TLS children and pod pieces: the built-in CA's Secrets (`<name>-ca`,
//! `<name>-server-cert`, `<name>-client-cert`, `<name>-metrics-exporter-cert`, type
//! `kubernetes.io/tls`), cert-manager `Certificate`s, the TLS volumes and the init
//! container's copy step.

use k8s_openapi::api::core::v1::{
    KeyToPath, ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource, Volume,
    VolumeProjection,
};
use kube::api::DynamicObject;
use serde_json::json;

use super::common::meta;
use crate::pgpool::tls::ca::Usage;
use crate::pgpool::tls::plan::{KEY_CA_CRT, KEY_TLS_CRT, KEY_TLS_KEY, Source, TlsPlan};
use crate::pgpool::validate::{Plan, string_data};
use pgpool_config as config;

/// Volume with the server certificate Secret (reserved name).
pub const VOLUME_TLS: &str = "pgpool-tls";
/// Where the init container reads the server certificate Secret.
pub const TLS_SOURCE_DIR: &str = "/etc/pgpool-tls";
/// Volume with the metrics exporter's certificate Secret, mounted into the exporter.
pub const VOLUME_TLS_CLIENT: &str = "pgpool-tls-client";
/// Where the exporter finds its certificate.
pub const TLS_CLIENT_DIR: &str = "/etc/pgpool-tls-client";
/// Pod template annotation with the hash of the certificates the pod loads: a change restarts
/// the pods (see `tls::rollout`).
pub const ANNOTATION_TLS_HASH: &str = "pgpool.kubedb.com/tls-hash";
/// Config Secret key with the backend's CA (AppBinding `caBundle`), when there is one.
pub const KEY_BACKEND_CA: &str = "backend-ca.crt";

/// The TLS plan, when the pod serves TLS (it has a server certificate).
pub fn serving(plan: &Plan) -> Option<&TlsPlan> {
    plan.tls
        .as_ref()
        .filter(|t| t.render.files.is_some() && !t.server_secret.is_empty())
}

/// The hash of the certificates the pods load, when they load any.
pub fn tls_hash(plan: &Plan) -> Option<String> {
    plan.tls
        .as_ref()
        .map(|t| t.content_hash.clone())
        .filter(|h| !h.is_empty())
}

/// The built-in CA's Secrets (none with cert-manager).
pub fn tls_secrets(plan: &Plan) -> Vec<Secret> {
    let Some(tls) = &plan.tls else {
        return Vec::new();
    };
    tls.secrets
        .iter()
        .map(|s| Secret {
            metadata: meta(plan, s.name.clone()),
            type_: Some("kubernetes.io/tls".into()),
            data: Some(string_data(
                s.data.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )),
            ..Secret::default()
        })
        .collect()
}

/// cert-manager `Certificate`s (`cert-manager.io/v1`), one per alias.
pub fn certificates(plan: &Plan) -> Vec<DynamicObject> {
    let Some(tls) = &plan.tls else {
        return Vec::new();
    };
    let (Source::CertManager(issuer), Some(api)) = (&tls.source, &plan.certificate_api) else {
        return Vec::new();
    };
    tls.certificates
        .iter()
        .map(|c| {
            let mut object = DynamicObject::new(&c.name, api);
            object.metadata = meta(plan, c.name.clone());
            let usages = match c.usage {
                Usage::Server => json!(["digital signature", "key encipherment", "server auth"]),
                Usage::Client => json!(["digital signature", "key encipherment", "client auth"]),
            };
            let mut spec = json!({
                "secretName": c.spec.secret_name,
                "commonName": c.common_name,
                "issuerRef": {
                    "group": issuer.api_group.clone().unwrap_or_else(|| "cert-manager.io".into()),
                    "kind": issuer.kind,
                    "name": issuer.name,
                },
                "usages": usages,
            });
            let fields = [
                ("dnsNames", json!(c.spec.dns_names)),
                ("ipAddresses", json!(c.spec.ip_addresses)),
                ("uris", json!(c.spec.uris)),
                ("emailAddresses", json!(c.spec.email_addresses)),
            ];
            for (key, value) in fields {
                if value.as_array().is_some_and(|a| !a.is_empty()) {
                    spec[key] = value;
                }
            }
            if let Some(d) = &c.spec.duration {
                spec["duration"] = json!(d);
            }
            if let Some(d) = &c.spec.renew_before {
                spec["renewBefore"] = json!(d);
            }
            if let Some(s) = &c.spec.subject {
                spec["subject"] = serde_json::to_value(s).unwrap_or_default();
            }
            if let Some(k) = &c.spec.private_key {
                spec["privateKey"] = serde_json::to_value(k).unwrap_or_default();
            }
            object.data = json!({ "spec": spec });
            object
        })
        .collect()
}

fn items(keys: &[&str]) -> Option<Vec<KeyToPath>> {
    Some(
        keys.iter()
            .map(|k| KeyToPath {
                key: k.to_string(),
                path: k.to_string(),
                mode: None,
            })
            .collect(),
    )
}

fn secret_projection(secret: &str, keys: &[&str], optional: bool) -> VolumeProjection {
    VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.to_string(),
            items: items(keys),
            optional: optional.then_some(true),
        }),
        ..VolumeProjection::default()
    }
}

/// The TLS volumes: the server certificate for the init container (a projected volume:
/// `tls.crt` and `tls.key` required, so the pod waits for the Secret; `ca.crt` optional,
/// since not every issuer writes it); the metrics exporter's certificate for the exporter
/// (mode 0640: owner root, group the pod's fsGroup, as libpq accepts).
pub fn tls_volumes(plan: &Plan) -> Vec<Volume> {
    let Some(tls) = serving(plan) else {
        return Vec::new();
    };
    let mut out = vec![Volume {
        name: VOLUME_TLS.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                secret_projection(&tls.server_secret, &[KEY_TLS_CRT, KEY_TLS_KEY], false),
                secret_projection(&tls.server_secret, &[KEY_CA_CRT], true),
            ]),
        }),
        ..Volume::default()
    }];
    if plan.exporter_image.is_some() {
        // libpq with sslmode=require needs no CA file
        out.push(Volume {
            name: VOLUME_TLS_CLIENT.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.exporter_secret.clone()),
                default_mode: Some(0o440),
                items: items(&[KEY_TLS_CRT, KEY_TLS_KEY]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    out
}

/// The init container's shell step that puts the TLS files where `pgpool.conf` says
/// (`config::TlsFiles::default()`): certificate and key copied with mode 0600, the CA file
/// built from the files that exist: the Pgpool's CA (`ca.crt`, when the issuer writes one)
/// followed by the backend's CA (when the config Secret has one). `pgpool.conf` names the
/// CA file only when one of them exists (see `tls::plan`).
pub fn init_tls_step(plan: &Plan) -> Option<String> {
    serving(plan)?;
    let files = config::TlsFiles::default();
    let ca = files.ca.unwrap_or_default();
    let backend_ca = format!("{}/{KEY_BACKEND_CA}", config::CONFIG_DIR);
    Some(format!(
        "cp {src}/{KEY_TLS_CRT} {cert} && cp {src}/{KEY_TLS_KEY} {key} && chmod 0600 {cert} {key} \
         && {{ [ ! -f {src}/{KEY_CA_CRT} ] || cat {src}/{KEY_CA_CRT}; }} > {ca} \
         && {{ [ ! -f {backend_ca} ] || cat {backend_ca} >> {ca}; }} && chmod 0600 {ca}",
        src = TLS_SOURCE_DIR,
        cert = files.cert.display(),
        key = files.key.display(),
        ca = ca.display(),
    ))
}

/// `sslmode` and certificate parameters the exporter adds to its connection URI.
pub fn exporter_ssl_params(plan: &Plan) -> String {
    let Some(tls) = serving(plan) else {
        return "sslmode=disable".into();
    };
    match tls.render.clients {
        config::ClientTls::Disabled => "sslmode=disable".into(),
        _ => format!(
            "sslmode=require&sslcert={dir}/{KEY_TLS_CRT}&sslkey={dir}/{KEY_TLS_KEY}",
            dir = TLS_CLIENT_DIR
        ),
    }
}
