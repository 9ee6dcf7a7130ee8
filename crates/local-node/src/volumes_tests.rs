use std::os::unix::fs::MetadataExt;

use k8s_openapi::api::core::v1::{
    DownwardAPIProjection, EmptyDirVolumeSource, PodSecurityContext, PodSpec,
    ProjectedVolumeSource, SecretVolumeSource, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn pod(fs_group: Option<i64>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p-0".into()),
            namespace: Some("ns".into()),
            labels: Some([("app".to_string(), "x".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            security_context: Some(PodSecurityContext {
                fs_group,
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn sources() -> Sources {
    let mut s = Sources::default();
    s.secrets.insert(
        "cfg".into(),
        [
            ("a.conf".to_string(), b"A".to_vec()),
            ("b.conf".to_string(), b"B".to_vec()),
            ("key".to_string(), b"K".to_vec()),
        ]
        .into(),
    );
    s
}

fn secret_volume(items: Option<Vec<KeyToPath>>, default_mode: Option<i32>) -> Volume {
    Volume {
        name: "v".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some("cfg".into()),
            items,
            default_mode,
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        mode,
    }
}

fn files(plan: VolumePlan) -> Vec<(String, u32)> {
    let VolumePlan::Files { files, .. } = plan else {
        panic!("not files: {plan:?}")
    };
    files
        .into_iter()
        .map(|f| (f.path.display().to_string(), f.mode))
        .collect()
}

#[test]
fn every_key_with_the_default_mode_without_items() {
    let plan = plan_volume(&pod(None), &secret_volume(None, None), &sources(), None).unwrap();
    assert_eq!(
        files(plan),
        [
            ("a.conf".into(), 0o644),
            ("b.conf".into(), 0o644),
            ("key".into(), 0o644)
        ]
    );
}

#[test]
fn items_pick_keys_paths_and_modes_over_default_mode() {
    let v = secret_volume(
        Some(vec![
            item("a.conf", "conf/pgpool.conf", None),
            item("key", ".key", Some(0o600)),
        ]),
        Some(0o400),
    );
    let plan = plan_volume(&pod(None), &v, &sources(), None).unwrap();
    assert_eq!(
        files(plan),
        [("conf/pgpool.conf".into(), 0o400), (".key".into(), 0o600)]
    );
}

#[test]
fn fs_group_owns_the_files_and_makes_them_group_readable() {
    let v = secret_volume(Some(vec![item("key", "key", Some(0o600))]), Some(0o400));
    let plan = plan_volume(&pod(Some(70)), &v, &sources(), None).unwrap();
    let VolumePlan::Files { gid, .. } = &plan else {
        panic!()
    };
    assert_eq!(*gid, Some(70));
    assert_eq!(files(plan), [("key".into(), 0o640)]);
}

#[test]
fn missing_sources_and_keys_fail_unless_optional() {
    let mut v = secret_volume(Some(vec![item("nope", "x", None)]), None);
    assert_eq!(
        plan_volume(&pod(None), &v, &sources(), None),
        Err(VolumeError::MissingKey {
            kind: "secret",
            name: "cfg".into(),
            key: "nope".into()
        })
    );
    v.secret.as_mut().unwrap().secret_name = Some("gone".into());
    assert!(matches!(
        plan_volume(&pod(None), &v, &sources(), None),
        Err(VolumeError::MissingSource { .. })
    ));
    v.secret.as_mut().unwrap().optional = Some(true);
    assert_eq!(
        files(plan_volume(&pod(None), &v, &sources(), None).unwrap()),
        []
    );
}

#[test]
fn item_paths_may_not_leave_the_volume() {
    let v = secret_volume(Some(vec![item("key", "../etc/passwd", None)]), None);
    assert_eq!(
        plan_volume(&pod(None), &v, &sources(), None),
        Err(VolumeError::BadPath("../etc/passwd".into()))
    );
}

#[test]
fn projected_volumes_combine_secrets_and_downward_api() {
    let v = Volume {
        name: "proj".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                VolumeProjection {
                    secret: Some(k8s_openapi::api::core::v1::SecretProjection {
                        name: "cfg".into(),
                        items: Some(vec![item("a.conf", "a", None)]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "name".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.name".into(),
                                api_version: None,
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    };
    let VolumePlan::Files { files, .. } = plan_volume(&pod(None), &v, &sources(), None).unwrap()
    else {
        panic!()
    };
    assert_eq!(files[0].data, b"A");
    assert_eq!(files[1].data, b"p-0");
    assert_eq!(files[1].mode, 0o440);
}

#[test]
fn field_values_cover_labels_by_key_and_pod_ip() {
    let p = pod(None);
    let f = |path: &str| ObjectFieldSelector {
        field_path: path.into(),
        api_version: None,
    };
    assert_eq!(field_value(&p, &f("metadata.labels['app']"), None), "x");
    assert_eq!(field_value(&p, &f("metadata.labels"), None), "app=\"x\"\n");
    assert_eq!(
        field_value(&p, &f("status.podIP"), Some("10.0.0.2")),
        "10.0.0.2"
    );
}

#[test]
fn written_files_carry_the_planned_modes_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let gid = rustix::process::getgid().as_raw();
    let v = secret_volume(Some(vec![item("key", "sub/key", Some(0o600))]), None);
    let plan = plan_volume(&pod(Some(i64::from(gid))), &v, &sources(), None).unwrap();
    write_volume(&dir.path().join("v"), &plan).unwrap();
    let meta = std::fs::metadata(dir.path().join("v/sub/key")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), gid);
    assert_eq!(std::fs::read(dir.path().join("v/sub/key")).unwrap(), b"K");

    let empty = Volume {
        name: "e".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let plan = plan_volume(&pod(None), &empty, &sources(), None).unwrap();
    write_volume(&dir.path().join("e"), &plan).unwrap();
    let meta = std::fs::metadata(dir.path().join("e")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o2777);
}
