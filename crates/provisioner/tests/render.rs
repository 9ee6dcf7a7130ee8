//! `pgpool-provisioner render`: the binary on the example manifests, without a cluster.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pgpool_config::{KEY_PCP_CONF, KEY_PGPOOL_CONF, KEY_POOL_HBA_CONF, KEY_POOL_PASSWD};

const BIN: &str = env!("CARGO_BIN_EXE_pgpool-provisioner");
const BACKEND_PASSWORD: &str = "s3cret-backend";

/// The AppBinding's Secret, which the examples leave to the backend's operator.
fn backend_secret() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ha-postgres-auth\n  namespace: demo\n\
         stringData:\n  username: postgres\n  password: {BACKEND_PASSWORD}\n"
    )
}

fn repo_examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The shared examples next to the repository, when they are there.
fn shared_examples() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples");
    dir.join("pgpool.yaml").exists().then_some(dir)
}

/// Runs `render` with `args` and `stdin`.
fn render(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("render")
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait")
}

fn files_args(dir: &Path) -> Vec<String> {
    ["pgpool.yaml", "pgpoolversion.yaml", "appbinding.yaml"]
        .iter()
        .flat_map(|f| ["-f".to_string(), dir.join(f).display().to_string()])
        .collect()
}

fn run(dir: &Path, extra: &[&str], stdin: &str) -> Output {
    let mut args: Vec<String> = files_args(dir);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    render(&args, stdin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The files of the default output: name -> text.
fn split_files(out: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if line.starts_with("##") {
            continue;
        }
        if let Some(name) = line.strip_prefix("# ")
            && [
                KEY_PGPOOL_CONF,
                KEY_POOL_HBA_CONF,
                KEY_PCP_CONF,
                KEY_POOL_PASSWD,
            ]
            .contains(&name)
        {
            files.push((name.to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = files.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    files
}

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![repo_examples()];
    match shared_examples() {
        Some(d) => dirs.push(d),
        None => eprintln!("no shared examples next to the repository; the repository's only"),
    }
    dirs
}

#[test]
fn the_examples_render_the_four_files_with_secrets_masked() {
    for dir in example_dirs() {
        let out = run(&dir, &["-f", "-"], &backend_secret());
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", dir.display());
        assert!(stderr.is_empty(), "{stderr}");
        let files = split_files(&stdout);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["pgpool.conf", "pool_hba.conf", "pcp.conf", "pool_passwd"]
        );
        let conf = &files[0].1;
        assert!(
            conf.contains("backend_hostname0 = 'ha-postgres.demo.svc'"),
            "{conf}"
        );
        // both spellings of every renamed parameter: one file fits every release
        for p in pgpool_config::RENAMED_PARAMETERS {
            for name in [p.old, p.new] {
                assert!(conf.contains(&format!("\n{name} = ")), "{name} in {conf}");
            }
        }
        assert_eq!(files[2].1, "pcp:********\n");
        assert_eq!(files[3].1, "postgres:********\n");
        assert!(stdout.contains("## auth Secret pp-update-auth: generated"));
        assert!(stdout.contains("--show-secrets prints them"));
        assert!(!stdout.contains("AES"), "{stdout}");
    }
}

#[test]
fn show_secrets_prints_the_credentials() {
    let out = run(
        &repo_examples(),
        &["-f", "-", "--show-secrets"],
        &backend_secret(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let files = split_files(&stdout);
    let pcp = &files[2].1;
    let hash = pcp.strip_prefix("pcp:").unwrap().trim();
    assert_eq!(hash.len(), 32, "an md5 hash: {pcp}");
    assert!(files[3].1.starts_with("postgres:AES"), "{}", files[3].1);
    assert!(!stdout.contains("masked"), "{stdout}");
}

#[test]
fn a_given_auth_secret_is_used_and_not_generated() {
    let auth = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pp-update-auth\n  namespace: demo\n\
                stringData:\n  username: admin\n  password: pcp-pass\n";
    let input = format!("{}---\n{auth}", backend_secret());
    let out = run(&repo_examples(), &["-f", "-", "--show-secrets"], &input);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("auth Secret pp-update-auth: generated"),
        "{stdout}"
    );
    let pcp = &split_files(&stdout)[2].1;
    let md5 = pgpool_config::pcp_md5("pcp-pass");
    assert_eq!(pcp, &format!("admin:{md5}\n"));
}

#[test]
fn yaml_output_lists_the_children_with_secrets_masked() {
    // monitoring puts the backend password into the config Secret
    let pgpool = std::fs::read_to_string(repo_examples().join("pgpool.yaml")).unwrap()
        + "  monitor:\n    agent: prometheus.io/operator\n";
    let dir = repo_examples();
    let input = format!("{pgpool}---\n{}", backend_secret());
    let args = |extra: &[&'static str]| {
        let mut a: Vec<String> = ["pgpoolversion.yaml", "appbinding.yaml"]
            .iter()
            .flat_map(|f| ["-f".to_string(), dir.join(f).display().to_string()])
            .collect();
        a.extend(["-f", "-", "-o", "yaml"].iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let masked = args(&[]);
    let out = render(
        &masked.iter().map(String::as_str).collect::<Vec<_>>(),
        &input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains(BACKEND_PASSWORD), "{stdout}");
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Secret", "pp-update-auth"),
            ("Secret", "pp-update-config"),
            ("Service", "pp-update"),
            ("Service", "pp-update-pods"),
            ("Service", "pp-update-stats"),
            ("PetSet", "pp-update"),
        ]
    );
    assert_eq!(docs[0]["stringData"]["password"], "********");
    assert_eq!(docs[0]["stringData"]["username"], "pcp");
    assert_eq!(docs[1]["stringData"]["monitor-password"], "********");
    assert_eq!(docs[1]["stringData"]["pgpoolkey"], "********");
    let image = &docs[5]["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "ghcr.io/appscode-images/pgpool2:4.5.3");

    let shown = args(&["--show-secrets"]);
    let out = render(
        &shown.iter().map(String::as_str).collect::<Vec<_>>(),
        &input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(BACKEND_PASSWORD));
}

#[test]
fn a_problem_prints_the_condition_message_and_exits_2() {
    // the examples without the AppBinding's Secret
    let out = run(&repo_examples(), &[], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "BackendSecretNotFound: Secret demo/ha-postgres-auth of AppBinding ha-postgres not found; create it with keys username and password\n"
    );
    // a version the catalog does not hold
    let pgpool = std::fs::read_to_string(repo_examples().join("pgpool.yaml"))
        .unwrap()
        .replace("version: \"4.5.3\"", "version: \"9.9.9\"");
    let out = render(
        &[
            "-f",
            "-",
            "-f",
            &repo_examples()
                .join("pgpoolversion.yaml")
                .display()
                .to_string(),
        ],
        &pgpool,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("VersionNotFound: PgpoolVersion \"9.9.9\" not found;"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unreadable_input_exits_1_with_one_line() {
    for (args, stdin) in [
        (vec!["-f", "/nonexistent/pgpool.yaml"], ""),
        (vec!["-f", "-"], "kind: [unclosed"),
        (vec!["-f", "-"], "kind: Service\nmetadata: {name: x}\n"),
    ] {
        let out = render(&args, stdin);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("pgpool-provisioner render: "),
            "{stderr}"
        );
    }
    let out = render(&[], "");
    assert_eq!(out.status.code(), Some(2), "clap: -f is required");
}
