use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext, PodSpec, SecretKeySelector,
    SecurityContext, ServiceSpec, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("pp-0".into()),
            namespace: Some("demo".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_user: Some(70),
                fs_group: Some(70),
                supplemental_groups: Some(vec![5]),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn secret_env(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "auth".into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

#[test]
fn env_resolves_values_secret_keys_and_field_refs() {
    let mut sources = Sources::default();
    sources.secrets.insert(
        "auth".into(),
        [("username".to_string(), b"pcp".to_vec())].into(),
    );
    let c = Container {
        name: "c".into(),
        env: Some(vec![
            EnvVar {
                name: "A".into(),
                value: Some("1".into()),
                ..EnvVar::default()
            },
            secret_env("USER", "username"),
            EnvVar {
                name: "IP".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.podIP".into(),
                        api_version: None,
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
        ]),
        ..Container::default()
    };
    let got = env(&pod(), &c, &sources, Some("10.244.0.2")).unwrap();
    let want = [("A", "1"), ("USER", "pcp"), ("IP", "10.244.0.2")];
    assert_eq!(
        got,
        want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
    );
    let missing = Container {
        env: Some(vec![secret_env("P", "password")]),
        ..c
    };
    assert!(matches!(
        env(&pod(), &missing, &sources, None),
        Err(ConfigError::MissingKey { .. })
    ));
}

#[test]
fn user_takes_the_container_over_the_pod_and_fs_group_as_a_group() {
    let mut c = Container::default();
    assert_eq!(
        user(&pod(), &c),
        Some(User {
            uid: 70,
            gid: 70,
            groups: vec![5, 70]
        })
    );
    c.security_context = Some(SecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(1001),
        ..SecurityContext::default()
    });
    assert_eq!(user(&pod(), &c).unwrap().uid, 1000);
    assert_eq!(user(&pod(), &c).unwrap().gid, 1001);
    assert_eq!(user(&Pod::default(), &Container::default()), None);
}

#[test]
fn mounts_put_image_paths_first_and_files_read_only() {
    let runtime = ImageRuntime {
        mounts: [("/opt/pgpool-II".to_string(), "/cache/4.6".into())].into(),
        command: None,
    };
    let plans = BTreeMap::from([
        (
            "cfg".to_string(),
            VolumePlan::Files {
                files: vec![],
                gid: None,
            },
        ),
        ("run".to_string(), VolumePlan::EmptyDir { gid: None }),
    ]);
    let c = Container {
        volume_mounts: Some(vec![
            VolumeMount {
                name: "cfg".into(),
                mount_path: "/etc/cfg".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "run".into(),
                mount_path: "/var/run/pgpool".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let m = mounts(&c, &runtime, &plans, Path::new("/v")).unwrap();
    let got: Vec<_> = m
        .iter()
        .map(|m| {
            (
                m.source.display().to_string(),
                m.target.as_str(),
                m.read_only,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/cache/4.6".to_string(), "/opt/pgpool-II", true),
            ("/v/cfg".to_string(), "/etc/cfg", true),
            ("/v/run".to_string(), "/var/run/pgpool", false),
        ]
    );
    let bad = Container {
        volume_mounts: Some(vec![VolumeMount {
            name: "nope".into(),
            mount_path: "/x".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    assert_eq!(
        mounts(&bad, &runtime, &plans, Path::new("/v")),
        Err(ConfigError::NoVolume("nope".into()))
    );
}

#[test]
fn argv_is_command_then_args_unless_the_image_replaces_it() {
    let c = Container {
        command: Some(vec!["/bin/pgpool".into()]),
        args: Some(vec!["-n".into()]),
        ..Container::default()
    };
    assert_eq!(argv(&c, &ImageRuntime::default()), ["/bin/pgpool", "-n"]);
    let crash = ImageRuntime {
        command: Some(vec!["false".into()]),
        ..ImageRuntime::default()
    };
    assert_eq!(argv(&c, &crash), ["false"]);
}

#[test]
fn hosts_resolve_services_by_their_cluster_names() {
    let svc = |name: &str, ns: &str, ip: &str| Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let h = hosts(
        &pod(),
        "10.244.0.2",
        &[
            svc("postgres", "demo", "10.96.0.3"),
            svc("other", "x", "10.96.0.4"),
            svc("headless", "demo", "None"),
        ],
    );
    assert!(h.contains("10.244.0.2\tpp-0\n"), "{h}");
    assert!(h.contains(
        "10.96.0.3\tpostgres.demo.svc postgres.demo.svc.cluster.local postgres.demo postgres\n"
    ));
    assert!(h.contains("10.96.0.4\tother.x.svc other.x.svc.cluster.local\n"));
    assert!(!h.contains("headless"));
}
