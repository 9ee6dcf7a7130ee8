//! The pure steps of the Pgpool controller: validate (table of problems) and build (golden
//! YAML files of the PetSet with its pod template, the Services, the PDB, the ServiceMonitor
//! and the auth Secret).
//!
//! Inputs: `tests/builders/<case>/input.yaml` (the Pgpool, its PgpoolVersion, AppBinding and
//! the AppBinding's Secret). Golden files: `tests/builders/<case>/*.yaml`. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p pgpool-provisioner --test builders` and review the diff.

use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::ResourceExt;
use kube::core::{ApiResource, GroupVersionKind};
use pgpool_api::{AppBinding, Pgpool, PgpoolVersion, names};
use pgpool_provisioner::pgpool::build::{Desired, build};
use pgpool_provisioner::pgpool::dereference::{GroupBackend, Observed};
use pgpool_provisioner::pgpool::validate::{AuthPlan, Generator, Plan, Problem, validate};
use serde::Deserialize;
use serde_json::{Value, json};

/// Fixed "random" values.
struct Fixed;
impl Generator for Fixed {
    fn password(&mut self) -> String {
        "generated-pcp-password".into()
    }
    fn pool_key(&mut self) -> String {
        "generatedpoolkey0123456789".into()
    }
}

struct NoRandom;
impl Generator for NoRandom {
    fn password(&mut self) -> String {
        panic!("no password may be generated here")
    }
    fn pool_key(&mut self) -> String {
        panic!("no pool key may be generated here")
    }
}

fn case_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/builders")
        .join(case)
}

/// Reads a case's input: the Pgpool and what dereference would have found.
fn load(case: &str) -> (Pgpool, Observed) {
    let path = case_dir(case).join("input.yaml");
    let text = std::fs::read_to_string(&path).expect("read input.yaml");
    let mut pgpool = None;
    let mut observed = Observed::default();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).expect("YAML document");
        match value["kind"].as_str() {
            Some("Pgpool") => pgpool = Some(serde_json::from_value(value).expect("Pgpool")),
            Some("PgpoolVersion") => {
                observed.version = Some(serde_json::from_value(value).expect("PgpoolVersion"))
            }
            Some("AppBinding") => {
                observed.appbinding = Some(serde_json::from_value(value).expect("AppBinding"))
            }
            Some("Secret") => {
                let mut s: Secret = serde_json::from_value(value).expect("Secret");
                // the API server turns stringData into data
                if let Some(sd) = s.string_data.take() {
                    let data = s.data.get_or_insert_with(Default::default);
                    for (k, v) in sd {
                        data.insert(k, ByteString(v.into_bytes()));
                    }
                }
                observed.backend_secret = Some(s);
            }
            other => panic!("unexpected kind {other:?} in {path:?}"),
        }
    }
    (pgpool.expect("a Pgpool in the input"), observed)
}

fn service_monitor_api() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// Compares `value` as YAML with the golden file (or writes it with `UPDATE_GOLDEN=1`).
fn golden(case: &str, file: &str, value: &impl serde::Serialize) {
    let text = serde_yaml::to_string(value).expect("to YAML");
    let path = case_dir(case).join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path:?} ({e}); run with UPDATE_GOLDEN=1 to create it"));
    assert!(
        expected == text,
        "{path:?} differs; run with UPDATE_GOLDEN=1 and review the diff.\n--- got ---\n{text}"
    );
}

fn desired(case: &str, adjust: impl FnOnce(&mut Observed)) -> (Pgpool, Plan, Desired) {
    let (pgpool, mut observed) = load(case);
    adjust(&mut observed);
    let plan = validate(&pgpool, &observed, &mut Fixed).expect("valid input");
    let desired = build(&pgpool, &plan);
    (pgpool, plan, desired)
}

fn services(d: &Desired) -> Vec<&Service> {
    let mut out = vec![&d.primary_service, &d.pods_service];
    out.extend(d.stats_service.as_ref());
    out
}

#[test]
fn example_golden() {
    let (_, plan, d) = desired("example", |_| {});
    golden("example", "petset.yaml", &d.petset);
    golden("example", "services.yaml", &services(&d));
    golden("example", "auth-secret.yaml", &d.auth_secret);
    assert!(d.pdb.is_none());
    assert!(d.stats_service.is_none());
    assert!(d.service_monitor.is_none());
    assert_eq!(plan.pgpool_image, "ghcr.io/appscode-images/pgpool2:4.5.3");
}

#[test]
fn full_golden() {
    let (_, plan, d) = desired("full", |o| {
        o.standby_exists = true;
        o.service_monitor_api = Some(service_monitor_api());
    });
    golden("full", "petset.yaml", &d.petset);
    golden("full", "services.yaml", &services(&d));
    golden("full", "pdb.yaml", &d.pdb);
    golden("full", "servicemonitor.yaml", &d.service_monitor);
    assert!(plan.notes.is_empty());
    let conf = &plan.rendered.pgpool_conf;
    assert!(conf.contains("pg-standby.prod.svc"), "standby backend");
    assert!(conf.contains("num_init_children = 64"), "inline override");
}

fn pod_spec(d: &Desired) -> &k8s_openapi::api::core::v1::PodSpec {
    d.petset.spec.template.spec.as_ref().expect("pod spec")
}

#[test]
fn pod_contract() {
    let (pgpool, plan, d) = desired("example", |_| {});
    let spec = pod_spec(&d);
    let pgpool_c = &spec.containers[0];
    assert_eq!(pgpool_c.name, names::CONTAINER_PGPOOL);
    // the binary is PID 1, with the config module's flags
    assert_eq!(
        pgpool_c.command.as_deref(),
        Some(&["/opt/pgpool-II/bin/pgpool".to_string()][..])
    );
    let args = pgpool_c.args.clone().unwrap();
    assert_eq!(args, pgpool_config::pgpool_args(&Default::default()));
    // probes: readiness through the local socket, liveness on pcp
    let readiness = pgpool_c.readiness_probe.as_ref().unwrap();
    let cmd = readiness.exec.as_ref().unwrap().command.clone().unwrap();
    assert_eq!(
        &cmd[..5],
        ["pg_isready", "-h", "/var/run/pgpool", "-p", "9999"]
    );
    // liveness: the pcp port (9595 = 0x257B) listens; no connection, so pgpool logs nothing
    let liveness = pgpool_c.liveness_probe.as_ref().unwrap();
    assert!(liveness.tcp_socket.is_none());
    let live = liveness.exec.as_ref().unwrap().command.clone().unwrap();
    assert_eq!(&live[..2], ["/bin/sh", "-c"]);
    assert!(
        live[2].contains(":257B ") && live[2].contains("/proc/net/tcp"),
        "{live:?}"
    );
    // preStop: drain for 5 s, then pgpool's fast shutdown through its pid file
    let pre_stop = pgpool_c
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap();
    let pre_stop = pre_stop.exec.as_ref().unwrap().command.clone().unwrap();
    assert_eq!(&pre_stop[..2], ["/bin/sh", "-c"]);
    let script: Vec<&str> = pre_stop[2].lines().collect();
    assert_eq!(script[0], "sleep 5");
    assert_eq!(script[1], "pid=\"$(cat /var/run/pgpool/pgpool.pid)\"");
    assert_eq!(script[3], "kill -INT \"$pid\" || exit 1");
    // restricted
    let sc = pgpool_c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let psc = spec.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_user, Some(70));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert!(pgpool_c.resources.is_some());
    // volumes of the pod contract
    let mounts: Vec<(String, String)> = pgpool_c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    for (name, path) in [
        ("pgpool-config", "/etc/pgpool-config"),
        ("pgpool-run", "/var/run/pgpool"),
        ("pgpool-key", "/var/run/pgpool-key"),
        ("tmp", "/tmp"),
    ] {
        assert!(
            mounts.contains(&(name.into(), path.into())),
            "{name} at {path}"
        );
    }
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, names::CONTAINER_INIT);
    assert_eq!(init.image, pgpool_c.image);
    let key_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "pgpool-key")
        .unwrap();
    assert_eq!(
        key_volume.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    // the config hash annotation
    let annotations = d
        .petset
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        annotations.get(names::ANNOTATION_CONFIG_HASH),
        Some(&plan.config_hash)
    );
    // the PetSet per the contract
    let ps = &d.petset.spec;
    assert_eq!(ps.service_name.as_deref(), Some("pp-update-pods"));
    assert_eq!(
        ps.selector.match_labels.as_ref(),
        Some(&names::selector(&pgpool.name_any()))
    );
    assert_eq!(
        ps.update_strategy.as_ref().and_then(|s| s.type_),
        Some(pgpool_api::petset::UpdateStrategyType::OnDelete)
    );
    assert_eq!(
        ps.pod_management_policy,
        Some(pgpool_api::petset::PodManagementPolicy::OrderedReady)
    );
    let labels = d
        .petset
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, v) in names::labels("pp-update") {
        assert_eq!(labels.get(&k), Some(&v));
    }
}

#[test]
fn overrides_are_merged_and_ours_win() {
    let (_, _, d) = desired("full", |o| {
        o.service_monitor_api = Some(service_monitor_api())
    });
    let spec = pod_spec(&d);
    let pgpool_c = &spec.containers[0];
    // podTemplate.spec.resources is the pgpool container's
    assert_eq!(
        pgpool_c
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["cpu"]
            .0,
        "250m"
    );
    // extra env after ours; the pcp env stays
    let env: Vec<&str> = pgpool_c
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["PGPOOL_PCP_USER", "PGPOOL_PCP_PASSWORD", "TZ"]);
    // pod security context: user's fsGroup, catalog's uid
    let psc = spec.security_context.as_ref().unwrap();
    assert_eq!(psc.fs_group, Some(1000));
    assert_eq!(psc.run_as_user, Some(70));
    // exporter sidecar with DATA_SOURCE_*
    let exporter = &spec.containers[1];
    assert_eq!(exporter.name, names::CONTAINER_EXPORTER);
    let env: Vec<&str> = exporter
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        env,
        ["DATA_SOURCE_URI", "DATA_SOURCE_USER", "DATA_SOURCE_PASS"]
    );
    assert_eq!(
        exporter.ports.as_ref().unwrap()[0].container_port,
        9800,
        "exporter port override"
    );
    // user labels do not replace ours
    let labels = d
        .petset
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("db"));
    assert_eq!(
        labels.get(names::LABEL_INSTANCE).map(String::as_str),
        Some("pp-full")
    );
    // the user's affinity is absent: the default soft anti-affinity
    assert!(
        spec.affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .is_some()
    );
    // the primary Service override
    let primary = d.primary_service.spec.as_ref().unwrap();
    assert_eq!(primary.type_.as_deref(), Some("NodePort"));
    assert_eq!(primary.ports.as_ref().unwrap()[0].node_port, Some(30999));
}

#[test]
fn auth_secret_is_generated_only_when_absent() {
    let (pgpool, mut observed) = load("example");
    let plan = validate(&pgpool, &observed, &mut Fixed).unwrap();
    assert_eq!(
        plan.auth,
        AuthPlan::Managed {
            name: "pp-update-auth".into(),
            username: "pcp".into(),
            password: "generated-pcp-password".into(),
            exists: false,
        }
    );
    let debug = format!("{plan:?}");
    assert!(
        !debug.contains("generated-pcp-password") && !debug.contains("backend-password"),
        "no credentials in Debug output: {debug}"
    );
    // ours exists: its password is kept, and the config Secret's pool key too
    let built = build(&pgpool, &plan);
    observed.children.auth_secret = built.auth_secret.clone();
    let mut config = built.config_secret.clone();
    config
        .data
        .as_mut()
        .unwrap()
        .insert("pgpoolkey".into(), ByteString(b"existingkey".to_vec()));
    observed.children.config_secret = Some(config);
    let again = validate(&pgpool, &observed, &mut NoRandom).unwrap();
    assert_eq!(
        again.auth,
        AuthPlan::Managed {
            name: "pp-update-auth".into(),
            username: "pcp".into(),
            password: "generated-pcp-password".into(),
            exists: true,
        }
    );
    assert_eq!(again.rendered.pool_key, "existingkey");

    // a user's Secret of that name (not labelled by us) is used as is
    let mut users = built.auth_secret.clone().unwrap();
    users.metadata.labels = None;
    users.metadata.owner_references = None;
    users.data = Some(
        [("username", "admin"), ("password", "theirs")]
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    observed.children.auth_secret = Some(users);
    let theirs = validate(&pgpool, &observed, &mut NoRandom).unwrap();
    assert_eq!(
        theirs.auth,
        AuthPlan::UserSupplied {
            name: "pp-update-auth".into()
        }
    );
    assert!(theirs.rendered.pcp_conf.starts_with("admin:"));
    assert!(
        build(&pgpool, &theirs).auth_secret.is_none(),
        "never written"
    );
}

fn problem(case: &str, edit: impl FnOnce(&mut Pgpool, &mut Observed)) -> Problem {
    let (mut pgpool, mut observed) = load(case);
    edit(&mut pgpool, &mut observed);
    validate(&pgpool, &observed, &mut Fixed).expect_err("a problem")
}

fn secret(pairs: &[(&str, &str)]) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": "x", "namespace": "demo"},
        "data": pairs.iter().map(|(k, v)| (k.to_string(), json!(base64_encode(v)))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn problems_name_the_fix() {
    type Edit = Box<dyn FnOnce(&mut Pgpool, &mut Observed)>;
    let cases: Vec<(&str, Edit, &str, &[&str])> = vec![
        (
            "unknown version",
            Box::new(|_, o| o.version = None),
            "VersionNotFound",
            &["4.5.3", "spec.version"],
        ),
        (
            "deprecated version",
            Box::new(|_, o| {
                if let Some(v) = o.version.as_mut() {
                    v.spec.deprecated = Some(true)
                }
            }),
            "VersionDeprecated",
            &["deprecated", "spec.version"],
        ),
        (
            "missing AppBinding",
            Box::new(|_, o| o.appbinding = None),
            "AppBindingNotFound",
            &["demo/ha-postgres", "spec.postgresRef"],
        ),
        (
            "AppBinding without Secret",
            Box::new(|_, o| {
                if let Some(ab) = o.appbinding.as_mut() {
                    ab.spec.secret = None
                }
            }),
            "AppBindingInvalid",
            &["spec.secret"],
        ),
        (
            "missing backend Secret",
            Box::new(|_, o| o.backend_secret = None),
            "BackendSecretNotFound",
            &["ha-postgres-auth", "username and password"],
        ),
        (
            "Secret without password",
            Box::new(|_, o| o.backend_secret = Some(secret(&[("username", "postgres")]))),
            "BackendSecretInvalid",
            &["password"],
        ),
        (
            "externally managed auth Secret missing",
            Box::new(|p, _| {
                p.spec.auth_secret =
                    serde_json::from_value(json!({"name": "mine", "externallyManaged": true}))
                        .unwrap()
            }),
            "AuthSecretNotFound",
            &["demo/mine", "create it"],
        ),
        (
            "auth Secret without password",
            Box::new(|_, o| o.children.auth_secret = Some(secret(&[("username", "pcp")]))),
            "AuthSecretInvalid",
            &["password"],
        ),
        (
            "missing config Secret",
            Box::new(|p, _| {
                p.spec.configuration =
                    serde_json::from_value(json!({"secretName": "conf"})).unwrap()
            }),
            "ConfigSecretNotFound",
            &["demo/conf"],
        ),
        (
            "bad inline pgpool.conf",
            Box::new(|p, _| {
                p.spec.configuration =
                    serde_json::from_value(json!({"inline": {"pgpool.conf": "= broken"}})).unwrap()
            }),
            "InvalidConfiguration",
            &["line 1"],
        ),
        (
            "managed parameter overridden",
            Box::new(|p, _| {
                p.spec.configuration =
                    serde_json::from_value(json!({"inline": {"pgpool.conf": "port = 5432"}}))
                        .unwrap()
            }),
            "InvalidConfiguration",
            &["port", "managed by the operator"],
        ),
        (
            "monitoring without exporter image",
            Box::new(|p, o| {
                p.spec.monitor = serde_json::from_value(json!({})).unwrap();
                if let Some(v) = o.version.as_mut() {
                    v.spec.exporter = None
                }
            }),
            "VersionInvalid",
            &["exporter", "spec.monitor"],
        ),
        (
            "unknown container override",
            Box::new(|p, _| {
                p.spec.pod_template =
                    serde_json::from_value(json!({"spec": {"containers": [{"name": "sidecar"}]}}))
                        .unwrap()
            }),
            "InvalidConfiguration",
            &["sidecar"],
        ),
        (
            "missing backend group",
            Box::new(|p, o| {
                p.spec.configuration =
                    serde_json::from_value(json!({"backends": [{"group": "other"}]})).unwrap();
                o.group_backends = vec![GroupBackend {
                    name: "other".into(),
                    appbinding: None,
                    standby_exists: false,
                }];
            }),
            "AppBindingNotFound",
            &["demo/other"],
        ),
        (
            "child controlled by someone else",
            Box::new(|_, o| {
                let mut s = secret(&[]);
                s.metadata.owner_references = Some(vec![
                    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "other", "controller": true}))
                        .unwrap(),
                ]);
                s.metadata.name = Some("pp-update-config".into());
                o.children.config_secret = Some(s);
            }),
            "ChildConflict",
            &["pp-update-config", "Thing t"],
        ),
    ];
    for (what, edit, reason, words) in cases {
        let p = problem("example", edit);
        assert_eq!(p.reason, reason, "{what}: {p:?}");
        for w in words {
            assert!(p.message.contains(w), "{what}: {:?} lacks {w:?}", p.message);
        }
    }
}

#[test]
fn deprecated_version_keeps_a_provisioned_pgpool_running() {
    let (mut pgpool, mut observed) = load("example");
    if let Some(v) = observed.version.as_mut() {
        v.spec.deprecated = Some(true);
    }
    let mut status = pgpool_api::PgpoolStatus::default();
    pgpool_api::conditions::set(
        &mut status.conditions,
        pgpool_api::conditions::NewCondition {
            type_: pgpool_api::conditions::pgpool::PROVISIONED,
            status: "True",
            reason: "Provisioned",
            message: String::new(),
            observed_generation: Some(1),
        },
        chrono::Utc::now(),
    );
    pgpool.status = Some(status);
    assert!(validate(&pgpool, &observed, &mut Fixed).is_ok());
}

#[test]
fn explicit_backends_and_url_appbindings() {
    let (mut pgpool, mut observed) = load("example");
    pgpool.spec.configuration = serde_json::from_value(json!({"backends": [
        {"hostName": "10.0.0.5", "port": 6432, "weight": 2},
        {"hostName": "db2.example", "flag": "DISALLOW_TO_FAILOVER"}
    ]}))
    .unwrap();
    let plan = validate(&pgpool, &observed, &mut Fixed).unwrap();
    let conf = &plan.rendered.pgpool_conf;
    assert!(conf.contains("backend_hostname0 = '10.0.0.5'"), "{conf}");
    assert!(conf.contains("backend_port0 = 6432"), "{conf}");
    assert!(conf.contains("backend_hostname1 = 'db2.example'"), "{conf}");

    let (pgpool, _) = load("example");
    let ab: AppBinding = serde_json::from_value(json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "ha-postgres", "namespace": "demo"},
        "spec": {"clientConfig": {"url": "postgresql://pg.example:5433/app"}, "secret": {"name": "ha-postgres-auth"}}
    }))
    .unwrap();
    observed.appbinding = Some(ab);
    observed.standby_exists = true;
    let plan = validate(&pgpool, &observed, &mut Fixed).unwrap();
    let conf = &plan.rendered.pgpool_conf;
    assert!(conf.contains("backend_hostname0 = 'pg.example'"), "{conf}");
    assert!(
        !conf.contains("backend_hostname1"),
        "no standby for a URL backend"
    );
}

#[test]
fn catalog_fixture_matches_the_example() {
    // the input's catalog entry is the repository's example
    let (_, observed) = load("example");
    let example: PgpoolVersion = serde_yaml::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/pgpoolversion.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(observed.version.unwrap().spec, example.spec);
}
