use pgpool_api::{Pgpool, PgpoolOpsRequest};
use serde_json::{Value, json};

use super::super::fixtures::*;
use crate::plan::*;

fn tls_request(tls: Value) -> PgpoolOpsRequest {
    let mut req = request("rt", "ReconfigureTLS", "", 0, None);
    req.spec.tls = Some(serde_json::from_value(tls).unwrap());
    req
}

fn with_tls(tls: Value, extra: Value) -> Pgpool {
    let mut pp = pgpool("4.5.3", "Ready", false);
    let mut spec = serde_json::to_value(&pp.spec).unwrap();
    spec["tls"] = tls;
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    pp.spec = serde_json::from_value(spec).unwrap();
    pp
}

fn go(c: TlsCheck) -> TlsChange {
    match c {
        TlsCheck::Go(change) => change,
        other => panic!("expected Go, got {other:?}"),
    }
}

#[test]
fn add_rotate_change_and_remove_make_the_right_patches() {
    let plain = pgpool("4.5.3", "Ready", false);
    let secure = with_tls(json!({}), json!({"sslMode": "require"}));

    // add with the built-in CA: tls {} and the sslMode asked for; nothing to rotate
    let add = go(plan_tls(
        &tls_request(json!({"sslMode": "verify-full"})),
        &plain,
    ));
    assert_eq!(
        add.patch["spec"]["tls"],
        json!({"issuerRef": null, "certificates": null})
    );
    assert_eq!(add.patch["spec"]["sslMode"], "verify-full");
    assert_eq!(add.undo["spec"]["tls"], Value::Null);
    assert!(add.rotate_secrets.is_empty());

    // rotate: same spec, the server, client and metrics exporter certificate Secrets go (not
    // the CA)
    let rot = go(plan_tls(
        &tls_request(json!({"rotateCertificates": true})),
        &secure,
    ));
    assert_eq!(rot.patch, rot.undo);
    assert_eq!(
        rot.rotate_secrets,
        vec![
            "pp-server-cert",
            "pp-client-cert",
            "pp-metrics-exporter-cert"
        ]
    );

    // change the issuer: new certificates from it, the old ones go
    let issuer =
        json!({"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "ca"}});
    let change = go(plan_tls(&tls_request(issuer.clone()), &secure));
    assert_eq!(change.patch["spec"]["tls"]["issuerRef"]["name"], "ca");
    assert_eq!(change.undo["spec"]["tls"]["issuerRef"], Value::Null);
    assert_eq!(change.rotate_secrets.len(), 3);

    // remove: tls and sslMode go, the undo puts them back
    let rm = go(plan_tls(&tls_request(json!({"remove": true})), &secure));
    assert_eq!(rm.patch["spec"]["tls"], Value::Null);
    assert_eq!(rm.patch["spec"]["sslMode"], Value::Null);
    assert_eq!(rm.undo["spec"]["sslMode"], "require");
    assert_eq!(
        rm.undo["spec"]["tls"],
        json!({"issuerRef": null, "certificates": null})
    );
}

#[test]
fn requests_that_change_nothing_or_cannot_work_are_refused_with_the_fix() {
    let plain = pgpool("4.5.3", "Ready", false);
    let secure = with_tls(json!({}), json!({"sslMode": "require"}));
    let cert_auth = with_tls(json!({}), json!({"clientAuthMode": "cert"}));

    match plan_tls(&tls_request(json!({"remove": true})), &plain) {
        TlsCheck::AlreadyDone(m) => assert!(m.contains("has no TLS"), "{m}"),
        other => panic!("{other:?}"),
    }
    match plan_tls(&tls_request(json!({"sslMode": "require"})), &secure) {
        TlsCheck::AlreadyDone(m) => assert!(m.contains("rotateCertificates"), "{m}"),
        other => panic!("{other:?}"),
    }
    let cases = [
        (json!({}), &secure, "NothingToChange"),
        (
            json!({"remove": true}),
            &cert_auth,
            "ClientAuthModeNeedsTLS",
        ),
        (
            json!({"remove": true, "sslMode": "require"}),
            &secure,
            "InvalidSSLMode",
        ),
    ];
    for (tls, pp, reason) in cases {
        match plan_tls(&tls_request(tls.clone()), pp) {
            TlsCheck::Fail(r, m) => {
                assert_eq!(r, reason, "{tls}: {m}");
                assert!(m.contains(": "), "{m}");
            }
            other => panic!("{tls}: {other:?}"),
        }
    }
    // remove with a new password mode is fine
    let ok = go(plan_tls(
        &tls_request(json!({"remove": true, "clientAuthMode": "scram"})),
        &cert_auth,
    ));
    assert_eq!(ok.patch["spec"]["clientAuthMode"], "scram");
    // no spec.tls at all
    let mut bare = request("rt", "ReconfigureTLS", "", 0, None);
    bare.spec.tls = None;
    assert!(matches!(
        plan_tls(&bare, &secure),
        TlsCheck::Fail("TLSSpecMissing", _)
    ));
}

#[test]
fn the_template_serves_the_new_settings_only_with_the_right_hash() {
    use super::tls_template_ok as ok;
    assert!(ok(false, false, None, None), "no TLS, no hash");
    assert!(
        !ok(false, false, Some("a"), Some("a")),
        "removed, still mounted"
    );
    assert!(!ok(true, false, None, None), "added, not mounted yet");
    assert!(ok(true, false, None, Some("a")), "added");
    assert!(
        ok(true, false, Some("a"), Some("a")),
        "settings changed, same certificates"
    );
    assert!(
        !ok(true, true, Some("a"), Some("a")),
        "rotated, old certificates"
    );
    assert!(ok(true, true, Some("a"), Some("b")), "rotated");
}
