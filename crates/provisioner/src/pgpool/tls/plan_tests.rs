use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use pgpool_api::AppBinding;
use pgpool_api::appbinding::{AppBindingSpec, ClientConfig, ServiceReference};
use pgpool_api::pgpool::{ObjectReference, PgpoolSpec, TlsConfig};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn pgpool(tls: Option<TlsConfig>, ssl_mode: Option<SslMode>) -> Pgpool {
    let mut p = Pgpool::new(
        "pp",
        PgpoolSpec {
            version: "4.6.1".into(),
            postgres_ref: ObjectReference {
                name: "pg".into(),
                namespace: None,
            },
            tls,
            ssl_mode,
            ..PgpoolSpec::default()
        },
    );
    p.metadata.namespace = Some("demo".into());
    p
}

fn appbinding(query: Option<&str>) -> AppBinding {
    AppBinding::new(
        "pg",
        AppBindingSpec {
            client_config: ClientConfig {
                service: Some(ServiceReference {
                    name: "pg".into(),
                    query: query.map(str::to_string),
                    ..ServiceReference::default()
                }),
                ..ClientConfig::default()
            },
            ..AppBindingSpec::default()
        },
    )
}

fn secret_from(issued: &IssuedSecret) -> Secret {
    Secret {
        data: Some(
            issued
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

fn observed_from(plan: &TlsPlan) -> TlsObserved {
    TlsObserved {
        secrets: plan
            .secrets
            .iter()
            .map(|s| (s.name.clone(), secret_from(s)))
            .collect(),
        ..TlsObserved::default()
    }
}

#[test]
fn built_in_ca_issues_server_and_client_certificates_for_the_services() {
    let p = pgpool(Some(TlsConfig::default()), Some(SslMode::VerifyFull));
    let plan = plan(
        &p,
        &appbinding(None),
        &TlsObserved::default(),
        "postgres",
        now(),
    )
    .unwrap()
    .unwrap();
    let names: Vec<&str> = plan.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pp-ca",
            "pp-server-cert",
            "pp-client-cert",
            "pp-metrics-exporter-cert"
        ]
    );
    let server = &plan.secrets[1];
    let info = ca::inspect(&server.data[KEY_TLS_CRT]).unwrap();
    for name in ["pp", "pp.demo.svc", "*.pp-pods.demo.svc", "localhost"] {
        assert!(
            info.dns_names.contains(&name.to_string()),
            "{name} in {:?}",
            info.dns_names
        );
    }
    assert_eq!(server.data[KEY_CA_CRT], plan.secrets[0].data[KEY_TLS_CRT]);
    let client = ca::inspect(&plan.secrets[2].data[KEY_TLS_CRT]).unwrap();
    assert!(client.subject.contains("CN=postgres"), "{}", client.subject);
    // the exporter's own certificate: CN the user it logs in as, signed by the same CA
    let exporter = ca::inspect(&plan.secrets[3].data[KEY_TLS_CRT]).unwrap();
    assert!(
        exporter.subject.contains("CN=postgres"),
        "{}",
        exporter.subject
    );
    assert_ne!(
        plan.secrets[3].data[KEY_TLS_CRT],
        plan.secrets[2].data[KEY_TLS_CRT]
    );
    assert_eq!(
        plan.secrets[3].data[KEY_CA_CRT],
        plan.secrets[0].data[KEY_TLS_CRT]
    );
    assert_eq!(plan.exporter_secret, "pp-metrics-exporter-cert");
    assert_eq!(plan.render.clients, ClientTls::Required);
    assert!(plan.renewed.is_empty());
    // renewal a third of the lifetime (90 days) ahead
    let due = plan.renew_at.unwrap();
    assert!(due > now() + chrono::Duration::days(59) && due < now() + chrono::Duration::days(61));
    // no key in the plan's Debug
    assert!(!format!("{plan:?}").contains("PRIVATE KEY"));
}

#[test]
fn stored_certificates_are_kept_until_due_then_renewed() {
    let p = pgpool(Some(TlsConfig::default()), None);
    let ab = appbinding(None);
    let first = plan(&p, &ab, &TlsObserved::default(), "postgres", now())
        .unwrap()
        .unwrap();
    let observed = observed_from(&first);
    let again = plan(
        &p,
        &ab,
        &observed,
        "postgres",
        now() + chrono::Duration::days(1),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        again.secrets, first.secrets,
        "nothing due: the same certificates"
    );
    assert_eq!(again.content_hash, first.content_hash);
    let later = plan(
        &p,
        &ab,
        &observed,
        "postgres",
        now() + chrono::Duration::days(61),
    )
    .unwrap()
    .unwrap();
    assert_eq!(later.secrets[0], first.secrets[0], "the CA is kept");
    assert_ne!(
        later.secrets[1], first.secrets[1],
        "the server certificate is renewed"
    );
    assert_ne!(later.content_hash, first.content_hash);
    assert_eq!(later.renewed.len(), 3, "{:?}", later.renewed);
}

#[test]
fn a_new_client_certificate_restarts_no_pod() {
    let p = pgpool(Some(TlsConfig::default()), None);
    let ab = appbinding(None);
    let first = plan(&p, &ab, &TlsObserved::default(), "postgres", now())
        .unwrap()
        .unwrap();
    let mut observed = observed_from(&first);
    // the client certificate is issued again (removed), nothing else changes
    observed.secrets.remove(&first.client_secret);
    let again = plan(&p, &ab, &observed, "postgres", now())
        .unwrap()
        .unwrap();
    let client = |pl: &TlsPlan| {
        pl.secrets
            .iter()
            .find(|s| s.name == pl.client_secret)
            .cloned()
    };
    assert_ne!(client(&again), client(&first), "a new client certificate");
    assert_eq!(
        again.content_hash, first.content_hash,
        "the pods' hash stays"
    );
    // the server's does move it
    let mut observed = observed_from(&first);
    observed.secrets.remove(&first.server_secret);
    let again = plan(&p, &ab, &observed, "postgres", now())
        .unwrap()
        .unwrap();
    assert_ne!(again.content_hash, first.content_hash);
}

#[test]
fn a_short_duration_and_renew_before_are_honoured() {
    let tls = TlsConfig {
        certificates: vec![CertificateSpec {
            alias: "server".into(),
            duration: Some("1h".into()),
            renew_before: Some("50m".into()),
            ..CertificateSpec::default()
        }],
        ..TlsConfig::default()
    };
    let p = pgpool(Some(tls), None);
    let plan = plan(
        &p,
        &appbinding(None),
        &TlsObserved::default(),
        "postgres",
        now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(plan.renew_at, Some(now() + chrono::Duration::minutes(10)));
}

#[test]
fn issuer_problems_name_the_issuer() {
    let tls = TlsConfig {
        issuer_ref: Some(TypedLocalObjectReference {
            api_group: Some("cert-manager.io".into()),
            kind: "Issuer".into(),
            name: "my-issuer".into(),
        }),
        ..TlsConfig::default()
    };
    let p = pgpool(Some(tls), None);
    let ab = appbinding(None);
    let missing = TlsObserved {
        issuer: IssuerState::NotFound,
        ..TlsObserved::default()
    };
    let problem = plan(&p, &ab, &missing, "postgres", now()).unwrap_err();
    assert_eq!(problem.reason, tls_reason::ISSUER_NOT_FOUND);
    assert!(problem.message.contains("my-issuer"), "{}", problem.message);
    let no_cm = TlsObserved {
        issuer: IssuerState::CertManagerMissing,
        ..TlsObserved::default()
    };
    let problem = plan(&p, &ab, &no_cm, "postgres", now()).unwrap_err();
    assert_eq!(problem.reason, tls_reason::CERT_MANAGER_MISSING);
    let found = TlsObserved {
        issuer: IssuerState::Found,
        ..TlsObserved::default()
    };
    let ok = plan(&p, &ab, &found, "postgres", now()).unwrap().unwrap();
    assert_eq!(ok.certificates.len(), 3);
    assert_eq!(
        ok.pending,
        [
            "pp-server-cert",
            "pp-client-cert",
            "pp-metrics-exporter-cert"
        ]
    );
    assert!(ok.secrets.is_empty(), "cert-manager writes the Secrets");
}

#[test]
fn backend_tls_follows_the_appbinding_sslmode() {
    let p = pgpool(None, None);
    let none = plan(
        &p,
        &appbinding(Some("sslmode=disable")),
        &TlsObserved::default(),
        "u",
        now(),
    )
    .unwrap();
    assert!(none.is_none());
    let on = plan(
        &p,
        &appbinding(Some("sslmode=verify-full")),
        &TlsObserved::default(),
        "u",
        now(),
    )
    .unwrap()
    .unwrap();
    assert!(on.render.backend && on.render.files.is_none());
}
