use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use pgpool_api::{PgpoolOpsRequest, names};
use serde_json::json;

use super::super::fixtures::*;
use super::*;

fn reconfigure(configuration: serde_json::Value) -> PgpoolOpsRequest {
    let mut r = request("rc", "Reconfigure", "", 0, None);
    r.spec.configuration = Some(serde_json::from_value(configuration).unwrap());
    r
}

fn secret(data: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
    let mut s = Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    s.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

#[test]
fn apply_config_merges_over_the_current_overrides_in_a_new_secret() {
    let mut pp = pgpool("4.5.3", "Ready", false);
    pp.spec.config_secret = Some(serde_json::from_value(json!({"name": "old"})).unwrap());
    let req = reconfigure(json!({"applyConfig": {"pgpool.conf": "max_pool = 7"}}));
    let src = ConfigSources {
        current_secret: Some(Some("max_pool = 4\nchild_life_time = 10")),
        new_secret: None,
    };
    let plan = plan_reconfigure(&req, &pp, &src).unwrap();
    let (name, text) = plan.secret.clone().unwrap();
    assert_eq!(name, "pp-rc-config");
    assert_eq!(text, "max_pool = 4\nchild_life_time = 10\nmax_pool = 7");
    assert_eq!(
        plan.patch,
        json!({"spec": {"configSecret": {"name": "pp-rc-config"}}})
    );
    assert_eq!(
        plan.undo,
        json!({"spec": {"configSecret": {"name": "old"}, "configuration": null}})
    );
    assert_eq!(
        plan.overrides.last().unwrap(),
        &("max_pool".into(), "7".into())
    );
}

#[test]
fn remove_custom_config_clears_every_source_and_configsecret_replaces_the_old_one() {
    let mut pp = pgpool("4.5.3", "Ready", false);
    pp.spec.configuration =
        Some(serde_json::from_value(json!({"inline": {"pgpool.conf": "max_pool = 3"}})).unwrap());
    let req = reconfigure(json!({"removeCustomConfig": true}));
    let plan = plan_reconfigure(&req, &pp, &ConfigSources::default()).unwrap();
    assert_eq!(
        plan.patch,
        json!({"spec": {"configSecret": null, "configuration": {"secretName": null, "inline": null}}})
    );
    assert!(plan.overrides.is_empty() && plan.secret.is_none());

    let req = reconfigure(json!({"configSecret": {"name": "new"}}));
    let src = ConfigSources {
        current_secret: None,
        new_secret: Some(Some("max_pool = 9")),
    };
    let plan = plan_reconfigure(&req, &pp, &src).unwrap();
    assert_eq!(
        plan.patch,
        json!({"spec": {"configSecret": {"name": "new"}, "configuration": {"secretName": null}}})
    );
}

#[test]
fn refusals_name_the_fix() {
    let pp = pgpool("4.5.3", "Ready", false);
    let cases = [
        (
            json!({"applyConfig": {"pgpool.conf": "port = 1"}}),
            ConfigSources::default(),
            "cannot be rendered",
        ),
        (
            json!({"applyConfig": {"pool_hba.conf": "x"}}),
            ConfigSources::default(),
            "only pgpool.conf",
        ),
        (
            json!({"removeCustomConfig": true, "configSecret": {"name": "a"}}),
            ConfigSources::default(),
            "cannot be used together",
        ),
        (
            json!({"configSecret": {"name": "a"}}),
            ConfigSources::default(),
            "not found",
        ),
        (
            json!({"configSecret": {"name": "a"}}),
            ConfigSources {
                current_secret: None,
                new_secret: Some(None),
            },
            "no pgpool.conf key",
        ),
    ];
    for (spec, src, want) in cases {
        let err = plan_reconfigure(&reconfigure(spec.clone()), &pp, &src).unwrap_err();
        assert!(err.1.contains(want), "{spec}: {err:?}");
    }
}

#[test]
fn render_checks_read_the_config_secret_annotations_and_pcp_conf() {
    let s = secret(
        &[(
            "pcp.conf",
            &format!("pcp:{}\n", pgpool_config::pcp_md5("new")),
        )],
        &[
            (names::ANNOTATION_RENDERED_GENERATION, "4"),
            (names::ANNOTATION_CONFIG_HASH, "abc"),
        ],
    );
    assert!(rendered_since(&s, 4) && rendered_since(&s, 3) && !rendered_since(&s, 5));
    assert_eq!(rendered_hash(&s).as_deref(), Some("abc"));
    assert!(pcp_rendered(&s, "pcp", "new"));
    assert!(!pcp_rendered(&s, "pcp", "old"));
    assert!(!rendered_since(&secret(&[], &[]), 0));
}

#[test]
fn rotation_keeps_the_previous_credentials_and_refuses_external_secrets() {
    let current = secret(&[("username", "pcp"), ("password", "old")], &[]);
    let data = rotated_auth_data(&current, "new");
    assert_eq!(data["password"], "new");
    assert_eq!(data[KEY_PREVIOUS_PASSWORD], "old");
    assert_eq!(data[KEY_PREVIOUS_USERNAME], "pcp");

    let mut pp = pgpool("4.5.3", "Ready", false);
    let req = request("ra", "RotateAuth", "", 0, None);
    assert!(check_rotate_auth(&req, &pp, None).is_ok());
    pp.spec.auth_secret =
        Some(serde_json::from_value(json!({"name": "mine", "externallyManaged": true})).unwrap());
    let err = check_rotate_auth(&req, &pp, None).unwrap_err();
    assert_eq!(err.0, "AuthSecretExternallyManaged");
    let mut with_ref = req.clone();
    with_ref.spec.authentication =
        Some(serde_json::from_value(json!({"secretRef": {"name": "new"}})).unwrap());
    assert_eq!(
        check_rotate_auth(&with_ref, &pp, None).unwrap_err().0,
        "AuthSecretNotFound"
    );
    let empty = secret(&[("username", "pcp")], &[]);
    assert_eq!(
        check_rotate_auth(&with_ref, &pp, Some(&empty))
            .unwrap_err()
            .0,
        "AuthSecretInvalid"
    );
    assert!(check_rotate_auth(&with_ref, &pp, Some(&current)).is_ok());
}
