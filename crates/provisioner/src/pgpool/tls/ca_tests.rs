use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn server_request() -> LeafRequest {
    LeafRequest {
        common_name: "pp".into(),
        organizations: vec!["kubedb".into()],
        dns_names: vec!["pp.demo.svc".into(), "localhost".into()],
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        usage: Usage::Server,
        lifetime: Duration::from_secs(3600),
    }
}

#[test]
fn signs_a_server_certificate_the_ca_issued() {
    let ca = new_ca("pp-ca", now(), CA_LIFETIME).unwrap();
    let leaf = sign(&ca, &server_request(), now()).unwrap();
    let ca_info = inspect(&ca.cert_pem).unwrap();
    let info = inspect(&leaf.cert_pem).unwrap();
    assert_eq!(info.issuer, ca_info.subject);
    assert_eq!(info.dns_names, ["localhost", "pp.demo.svc"]);
    assert_eq!(
        info.not_after - info.not_before,
        chrono::Duration::seconds(3660)
    );
    assert!(leaf.key_pem.0.contains("PRIVATE KEY"));
    assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
}

#[test]
fn renewal_is_a_third_of_the_lifetime_ahead_unless_renew_before_says() {
    let start = now();
    let end = start + chrono::Duration::days(90);
    assert_eq!(renew_at(start, end, None), end - chrono::Duration::days(30));
    assert_eq!(
        renew_at(start, end, Some(Duration::from_secs(86400))),
        end - chrono::Duration::days(1)
    );
    // longer than the lifetime: the default
    assert_eq!(
        renew_at(start, end, Some(Duration::from_secs(200 * 86400))),
        end - chrono::Duration::days(30)
    );
}

#[test]
fn a_short_lived_certificate_is_not_due_when_issued() {
    let ca = new_ca("pp-ca", now(), CA_LIFETIME).unwrap();
    let mut request = server_request();
    request.lifetime = Duration::from_secs(6);
    let info = inspect(&sign(&ca, &request, now()).unwrap().cert_pem).unwrap();
    assert!(renew_at(info.not_before, info.not_after, None) > now());
}

#[test]
fn garbage_does_not_parse() {
    assert!(inspect("not a certificate").is_err());
}
