//! Unit tests of the TLS rendering.

use super::*;

fn input(tls: TlsInput, auth_mode: ClientAuthMode) -> RenderInput {
    RenderInput {
        version: "4.6.1".into(),
        backends: vec![Backend::new("pg.demo.svc", 5432)],
        auth_mode,
        backend_user: "postgres".into(),
        backend_password: "backend-pass".into(),
        pcp_user: "pcp".into(),
        pcp_password: "pcp-pass".into(),
        pool_key: "pool-key-for-tests".into(),
        tls,
        ..RenderInput::default()
    }
}

fn with_files(clients: ClientTls) -> TlsInput {
    TlsInput {
        clients,
        files: Some(TlsFiles::default()),
        backend: false,
    }
}

fn tcp_lines(hba: &str) -> Vec<String> {
    hba.lines()
        .filter(|l| l.starts_with("host"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn required_tls_takes_hostssl_and_the_certificate_files() {
    let r = render(&input(
        with_files(ClientTls::Required),
        ClientAuthMode::Scram,
    ))
    .unwrap();
    assert_eq!(
        tcp_lines(&r.pool_hba_conf),
        [
            "hostssl all all 0.0.0.0/0 scram-sha-256",
            "hostssl all all ::/0 scram-sha-256"
        ]
    );
    let conf = parse_pgpool_conf(&r.pgpool_conf).unwrap();
    let get = |k: &str| {
        conf.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("ssl"), Some("on"));
    assert_eq!(get("ssl_cert"), Some("/var/run/pgpool-key/tls.crt"));
    assert_eq!(get("ssl_key"), Some("/var/run/pgpool-key/tls.key"));
    assert_eq!(get("ssl_ca_cert"), Some("/var/run/pgpool-key/ca.crt"));
    assert!(
        r.pool_hba_conf
            .contains("local   all       all              trust")
    );
}

#[test]
fn optional_tls_keeps_host_lines() {
    let r = render(&input(with_files(ClientTls::Optional), ClientAuthMode::Md5)).unwrap();
    assert_eq!(
        tcp_lines(&r.pool_hba_conf),
        ["host all all 0.0.0.0/0 md5", "host all all ::/0 md5"]
    );
    assert!(r.pgpool_conf.contains("\nssl = on\n"));
}

#[test]
fn cert_auth_is_hostssl_even_when_tls_is_optional() {
    let r = render(&input(
        with_files(ClientTls::Optional),
        ClientAuthMode::Cert,
    ))
    .unwrap();
    assert_eq!(
        tcp_lines(&r.pool_hba_conf),
        [
            "hostssl all all 0.0.0.0/0 cert",
            "hostssl all all ::/0 cert"
        ]
    );
}

#[test]
fn backend_tls_alone_switches_ssl_on_without_a_server_certificate() {
    let tls = TlsInput {
        backend: true,
        ..TlsInput::default()
    };
    let r = render(&input(tls, ClientAuthMode::Md5)).unwrap();
    assert!(r.pgpool_conf.contains("\nssl = on\n"));
    assert!(!r.pgpool_conf.contains("ssl_cert"));
    assert_eq!(tcp_lines(&r.pool_hba_conf)[0], "host all all 0.0.0.0/0 md5");
}

#[test]
fn no_tls_is_ssl_off() {
    let r = render(&input(TlsInput::default(), ClientAuthMode::Md5)).unwrap();
    assert!(r.pgpool_conf.contains("\nssl = off\n"));
    assert!(!r.pgpool_conf.contains("ssl_key"));
}

#[test]
fn tls_without_files_or_cert_without_ca_is_refused() {
    let no_files = TlsInput {
        clients: ClientTls::Required,
        ..TlsInput::default()
    };
    assert!(render(&input(no_files, ClientAuthMode::Md5)).is_err());
    let mut no_ca = with_files(ClientTls::Required);
    no_ca.files.as_mut().unwrap().ca = None;
    assert!(render(&input(no_ca, ClientAuthMode::Cert)).is_err());
    assert!(render(&input(TlsInput::default(), ClientAuthMode::Cert)).is_err());
}

#[test]
fn ssl_parameters_cannot_be_overridden() {
    let mut i = input(with_files(ClientTls::Required), ClientAuthMode::Md5);
    i.user_overrides = vec![("ssl_key".into(), "/tmp/other.key".into())];
    assert!(matches!(
        render(&i),
        Err(ConfigError::ManagedParameter { .. })
    ));
}
