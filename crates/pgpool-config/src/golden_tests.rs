//! Golden files: the rendered set per catalog version under `tests/golden/<case>/`.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite them after an intended change, then review the diff.

use std::path::PathBuf;

use super::*;

/// The default catalog versions, plus 4.3 (old socket/log names) and 4.7 (`work_dir`).
const VERSIONS: &[&str] = &["4.3", "4.4.5", "4.4.8", "4.5.0", "4.5.3", "4.6.0", "4.7.0"];

fn base(version: &str) -> RenderInput {
    RenderInput {
        version: version.into(),
        backends: vec![
            Backend::new("postgres.demo.svc.cluster.local", 5432),
            Backend::new("postgres-standby.demo.svc.cluster.local", 5432),
        ],
        auth_mode: ClientAuthMode::Md5,
        backend_user: "postgres".into(),
        backend_password: "golden-backend-password".into(),
        pcp_user: "pcp".into(),
        pcp_password: "golden-pcp-password".into(),
        pool_key: "golden-pool-key-0123456789abcdefghijklmn".into(),
        ..RenderInput::default()
    }
}

fn cases() -> Vec<(String, RenderInput)> {
    let mut cases: Vec<(String, RenderInput)> =
        VERSIONS.iter().map(|v| (v.to_string(), base(v))).collect();
    let mut scram = base("4.5.3");
    scram.auth_mode = ClientAuthMode::Scram;
    scram.backends.truncate(1);
    scram.extra_users = vec![("app".into(), "golden-app-password".into())];
    scram.num_init_children = Some(50);
    scram.user_overrides =
        parse_pgpool_conf("max_pool = 4\nlog_connections = on\nlog_line_prefix = '%m: pid %p: '\n")
            .expect("override text parses");
    cases.push(("4.5.3-scram-overrides".into(), scram));
    cases
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn rendered_files_match_golden_files() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut mismatches = Vec::new();
    for (name, input) in cases() {
        let rendered = render(&input).unwrap_or_else(|e| panic!("case {name}: {e}"));
        let dir = golden_dir().join(&name);
        let files = [
            (KEY_PGPOOL_CONF, &rendered.pgpool_conf),
            (KEY_POOL_HBA_CONF, &rendered.pool_hba_conf),
            (KEY_PCP_CONF, &rendered.pcp_conf),
            (KEY_POOL_PASSWD, &rendered.pool_passwd),
        ];
        if update {
            std::fs::create_dir_all(&dir).expect("create golden dir");
        }
        for (file, text) in files {
            let path = dir.join(file);
            if update {
                std::fs::write(&path, text).expect("write golden file");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(expected) if expected == *text => {}
                Ok(expected) => {
                    let first_diff = expected
                        .lines()
                        .zip(text.lines())
                        .position(|(a, b)| a != b)
                        .map(|i| format!("first difference at line {}", i + 1))
                        .unwrap_or_else(|| "line counts differ".into());
                    mismatches.push(format!("{}: {first_diff}", path.display()));
                }
                Err(e) => mismatches.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "rendered files differ from the golden files (rerun with UPDATE_GOLDEN=1 if intended):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn golden_cases_carry_both_spellings_of_the_renamed_parameters() {
    // Guards the golden set itself: 4.3 and 4.7 must read their own names from it.
    let conf = |v: &str| render(&base(v)).expect("renders").pgpool_conf;
    for v in ["4.3", "4.4.5", "4.7.0"] {
        for name in [
            "socket_dir",
            "unix_socket_directories",
            "logdir",
            "work_dir",
        ] {
            assert!(conf(v).contains(&format!("\n{name} = ")), "{v}: {name}");
        }
    }
}

/// An UpdateVersion restarts pods on the new image with the config Secret as it is (the
/// provisioner is paused), so every supported release must render the same text: then the
/// config hash, and with it the PetSet template, stays as it was after the update, and no
/// second restart is needed once the provisioner resumes.
#[test]
fn every_release_renders_the_same_files() {
    let render_all = |v: &str| {
        let r = render(&base(v)).unwrap();
        (r.pgpool_conf, r.pool_hba_conf, r.pcp_conf, r.pool_passwd)
    };
    let family = render_all("4.4.5");
    for v in [
        "4.3", "4.3.5", "4.4.8", "4.5.0", "4.5.3", "4.6.0", "4.6.1", "4.7.0", "4.7.3",
    ] {
        assert!(
            render_all(v) == family,
            "{v} renders differently from 4.4.5"
        );
    }
}
