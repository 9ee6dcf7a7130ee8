//! The metrics exporter's certificate and issuers that write no `ca.crt`.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use pgpool_api::AppBinding;
use pgpool_api::appbinding::{AppBindingSpec, ClientConfig};
use pgpool_api::pgpool::{ClientAuthMode, ObjectReference, PgpoolSpec, TlsConfig, X509Subject};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn pgpool(tls: TlsConfig, auth: Option<ClientAuthMode>) -> Pgpool {
    let mut p = Pgpool::new(
        "pp",
        PgpoolSpec {
            version: "4.6.1".into(),
            postgres_ref: ObjectReference {
                name: "pg".into(),
                namespace: None,
            },
            tls: Some(tls),
            ssl_mode: Some(SslMode::VerifyFull),
            client_auth_mode: auth,
            ..PgpoolSpec::default()
        },
    );
    p.metadata.namespace = Some("demo".into());
    p
}

fn appbinding(ca_bundle: Option<&str>) -> AppBinding {
    AppBinding::new(
        "pg",
        AppBindingSpec {
            client_config: ClientConfig {
                ca_bundle: ca_bundle
                    .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
                ..ClientConfig::default()
            },
            ..AppBindingSpec::default()
        },
    )
}

fn issuer_tls() -> TlsConfig {
    TlsConfig {
        issuer_ref: Some(TypedLocalObjectReference {
            api_group: Some("cert-manager.io".into()),
            kind: "ClusterIssuer".into(),
            name: "letsencrypt".into(),
        }),
        ..TlsConfig::default()
    }
}

/// Secrets as an ACME issuer writes them: `tls.crt` and `tls.key`, no `ca.crt`.
fn acme_secrets(names: &[&str]) -> TlsObserved {
    let issuer = ca::new_ca("acme", now(), ca::CA_LIFETIME).unwrap();
    let request = LeafRequest {
        common_name: "pp".into(),
        organizations: Vec::new(),
        dns_names: vec!["pp.demo.svc".into()],
        ip_addresses: Vec::new(),
        usage: Usage::Server,
        lifetime: ca::LEAF_LIFETIME,
    };
    let pair = ca::sign(&issuer, &request, now()).unwrap();
    let data: BTreeMap<String, ByteString> = [
        (KEY_TLS_CRT, pair.cert_pem.clone()),
        (KEY_TLS_KEY, pair.key_pem.0.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    TlsObserved {
        secrets: names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Secret {
                        data: Some(data.clone()),
                        ..Secret::default()
                    },
                )
            })
            .collect(),
        issuer: IssuerState::Found,
        ..TlsObserved::default()
    }
}

const ALL: [&str; 3] = [
    "pp-server-cert",
    "pp-client-cert",
    "pp-metrics-exporter-cert",
];

#[test]
fn cert_manager_gets_a_third_certificate_for_the_metrics_exporter() {
    let mut tls = issuer_tls();
    tls.certificates = vec![CertificateSpec {
        alias: ALIAS_METRICS_EXPORTER.into(),
        subject: Some(X509Subject {
            organizations: vec!["monitoring".into()],
            ..X509Subject::default()
        }),
        duration: Some("720h".into()),
        ..CertificateSpec::default()
    }];
    let p = pgpool(tls, None);
    let observed = TlsObserved {
        issuer: IssuerState::Found,
        ..TlsObserved::default()
    };
    let plan = plan(&p, &appbinding(None), &observed, "postgres", now())
        .unwrap()
        .unwrap();
    let names: Vec<&str> = plan.certificates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ALL);
    let exporter = &plan.certificates[2];
    assert_eq!(
        exporter.common_name, "postgres",
        "the user the exporter logs in as"
    );
    assert_eq!(exporter.usage, Usage::Client);
    assert_eq!(exporter.spec.alias, ALIAS_METRICS_EXPORTER);
    assert_eq!(
        exporter.spec.secret_name.as_deref(),
        Some("pp-metrics-exporter-cert")
    );
    assert_eq!(exporter.spec.duration.as_deref(), Some("720h"));
    assert_eq!(
        exporter.spec.subject.as_ref().unwrap().organizations,
        ["monitoring"]
    );
}

#[test]
fn the_built_in_ca_honours_the_metrics_exporter_alias() {
    let tls = TlsConfig {
        certificates: vec![CertificateSpec {
            alias: ALIAS_METRICS_EXPORTER.into(),
            secret_name: Some("exporter-tls".into()),
            subject: Some(X509Subject {
                organizations: vec!["monitoring".into()],
                ..X509Subject::default()
            }),
            ..CertificateSpec::default()
        }],
        ..TlsConfig::default()
    };
    let p = pgpool(tls, None);
    let plan = plan(
        &p,
        &appbinding(None),
        &TlsObserved::default(),
        "exporter-user",
        now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(plan.exporter_secret, "exporter-tls");
    let secret = plan
        .secrets
        .iter()
        .find(|s| s.name == "exporter-tls")
        .expect("the exporter's Secret");
    let info = ca::inspect(&secret.data[KEY_TLS_CRT]).unwrap();
    assert!(
        info.subject.contains("CN=exporter-user"),
        "{}",
        info.subject
    );
    assert!(info.subject.contains("O=monitoring"), "{}", info.subject);
}

#[test]
fn an_issuer_without_ca_crt_is_not_pending_and_the_pod_gets_no_ca_file() {
    let p = pgpool(issuer_tls(), None);
    let observed = acme_secrets(&ALL);
    let plan = plan(&p, &appbinding(None), &observed, "postgres", now())
        .unwrap()
        .unwrap();
    assert!(plan.pending.is_empty(), "{:?}", plan.pending);
    let files = plan.render.files.as_ref().expect("server certificate");
    assert_eq!(
        files.ca, None,
        "no CA file: pgpool.conf names no ssl_ca_cert"
    );
    assert_eq!(plan.render.clients, ClientTls::Required);
}

#[test]
fn an_issuer_without_ca_crt_keeps_the_backend_ca_bundle() {
    let p = pgpool(issuer_tls(), None);
    let observed = acme_secrets(&ALL);
    let backend_ca = ca::new_ca("pg-ca", now(), ca::CA_LIFETIME)
        .unwrap()
        .cert_pem;
    let plan = plan(
        &p,
        &appbinding(Some(&backend_ca)),
        &observed,
        "postgres",
        now(),
    )
    .unwrap()
    .unwrap();
    assert!(plan.pending.is_empty());
    assert!(plan.render.files.as_ref().unwrap().ca.is_some());
    assert_eq!(plan.backend_ca.as_deref(), Some(backend_ca.as_str()));
}

#[test]
fn an_issuer_without_ca_crt_is_a_problem_for_cert_authentication() {
    let p = pgpool(issuer_tls(), Some(ClientAuthMode::Cert));
    let observed = acme_secrets(&ALL);
    let problem = plan(&p, &appbinding(None), &observed, "postgres", now()).unwrap_err();
    assert_eq!(problem.reason, tls_reason::CA_CERTIFICATE_MISSING);
    for part in [
        "Secret demo/pp-server-cert",
        "ca.crt",
        "clientAuthMode cert",
        "cert-manager CA issuer",
    ] {
        assert!(
            problem.message.contains(part),
            "{part}: {}",
            problem.message
        );
    }
    // not issued yet: waiting, not a problem
    let waiting = TlsObserved {
        issuer: IssuerState::Found,
        ..TlsObserved::default()
    };
    let plan = plan(&p, &appbinding(None), &waiting, "postgres", now())
        .unwrap()
        .unwrap();
    assert_eq!(plan.pending, ALL);
}
