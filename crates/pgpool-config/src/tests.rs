//! Unit tests of the rendering.

use std::collections::HashSet;
use std::path::PathBuf;

use super::*;

fn input() -> RenderInput {
    RenderInput {
        version: "4.5.3".into(),
        backends: vec![Backend::new("pg.demo.svc.cluster.local", 5432)],
        backend_user: "postgres".into(),
        backend_password: "backend-pass".into(),
        pcp_user: "pcp".into(),
        pcp_password: "pcp-pass".into(),
        pool_key: "pool-key-for-tests".into(),
        ..RenderInput::default()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

fn value_of<'a>(conf: &'a str, key: &str) -> Vec<&'a str> {
    lines(conf)
        .into_iter()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
        .collect()
}

#[test]
fn renders_the_pod_contract() {
    let r = render(&input()).unwrap();
    let conf = &r.pgpool_conf;
    assert_eq!(
        value_of(conf, "backend_clustering_mode"),
        ["'streaming_replication'"]
    );
    assert_eq!(value_of(conf, "listen_addresses"), ["'*'"]);
    assert_eq!(value_of(conf, "port"), ["9999"]);
    assert_eq!(value_of(conf, "pcp_port"), ["9595"]);
    assert_eq!(
        value_of(conf, "unix_socket_directories"),
        ["'/var/run/pgpool'"]
    );
    assert_eq!(value_of(conf, "pcp_socket_dir"), ["'/var/run/pgpool'"]);
    assert_eq!(
        value_of(conf, "pid_file_name"),
        ["'/var/run/pgpool/pgpool.pid'"]
    );
    assert_eq!(value_of(conf, "logdir"), ["'/var/run/pgpool'"]);
    assert_eq!(
        value_of(conf, "pool_passwd"),
        ["'/etc/pgpool-config/pool_passwd'"]
    );
    assert_eq!(value_of(conf, "enable_pool_hba"), ["on"]);
    assert_eq!(
        value_of(conf, "backend_hostname0"),
        ["'pg.demo.svc.cluster.local'"]
    );
    assert_eq!(
        value_of(conf, "backend_flag0"),
        ["'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'"]
    );
    assert_eq!(value_of(conf, "load_balance_mode"), ["off"]);
    assert_eq!(value_of(conf, "sr_check_user"), ["'postgres'"]);
    assert_eq!(value_of(conf, "health_check_user"), ["'postgres'"]);
    assert_eq!(value_of(conf, "health_check_period"), ["0"]);
    assert_eq!(value_of(conf, "failover_on_backend_error"), ["off"]);
    assert_eq!(value_of(conf, "use_watchdog"), ["off"]);
    assert_eq!(value_of(conf, "num_init_children"), ["32"]);
    assert_eq!(value_of(conf, "max_pool"), ["2"]);
    assert_eq!(value_of(conf, "socket_dir"), ["'/var/run/pgpool'"]);
    assert_eq!(value_of(conf, "work_dir"), ["'/var/run/pgpool'"]);
    // every key once
    let keys: Vec<&str> = lines(conf)
        .iter()
        .map(|l| l.split(" = ").next().unwrap())
        .collect();
    let unique: HashSet<&&str> = keys.iter().collect();
    assert_eq!(keys.len(), unique.len(), "duplicate keys in {conf}");

    assert_eq!(r.pcp_conf, "pcp:018b69fb1cfbd59643a8f2bdebf1b037\n");
    assert_eq!(r.pool_key, "pool-key-for-tests");
    let (user, secret) = r.pool_passwd.trim_end().split_once(':').unwrap();
    assert_eq!(user, "postgres");
    assert_eq!(
        decrypt_aes_secret("pool-key-for-tests", secret).as_deref(),
        Some("backend-pass")
    );
    assert!(
        r.pool_hba_conf
            .contains("\nlocal   all       all              trust\n")
    );
    assert!(
        r.pool_hba_conf
            .contains("host    all       all   0.0.0.0/0  md5\n")
    );
    assert!(
        r.pool_hba_conf
            .contains("host    all       all   ::/0       md5\n")
    );
}

/// Every renamed parameter is written under both names with the same value, for every
/// supported release: a rename rendered for one version only would leave the other
/// version's binary without it (pgpool ignores unknown names silently).
#[test]
fn every_release_gets_both_spellings_of_each_renamed_parameter() {
    assert_eq!(
        version::RENAMED_PARAMETERS
            .iter()
            .map(|p| (p.old, p.new))
            .collect::<Vec<_>>(),
        [
            ("socket_dir", "unix_socket_directories"),
            ("logdir", "work_dir")
        ],
        "a new rename must be added to the table and rendered under both names"
    );
    for v in [
        "4.3", "4.3.5", "4.4.5", "4.5.3", "4.6.0", "4.6.1", "4.7.0", "4.7.3",
    ] {
        let conf = render(&RenderInput {
            version: v.into(),
            ..input()
        })
        .unwrap()
        .pgpool_conf;
        for p in version::RENAMED_PARAMETERS {
            let old = value_of(&conf, p.old);
            assert_eq!(old, ["'/var/run/pgpool'"], "{v}: {}", p.old);
            assert_eq!(value_of(&conf, p.new), old, "{v}: {}", p.new);
            assert!(MANAGED_PARAMETERS.contains(&p.old) && MANAGED_PARAMETERS.contains(&p.new));
        }
    }
    assert!(matches!(
        render(&RenderInput {
            version: "4.2.9".into(),
            ..input()
        }),
        Err(ConfigError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        render(&RenderInput {
            version: "latest".into(),
            ..input()
        }),
        Err(ConfigError::InvalidVersion { .. })
    ));
}

#[test]
fn scram_mode_and_standbys() {
    let mut i = input();
    i.auth_mode = ClientAuthMode::Scram;
    i.backends
        .push(Backend::new("pg-standby.demo.svc.cluster.local", 5432));
    i.backends.push(Backend {
        host: "10.0.0.7".into(),
        port: 5433,
        weight: Some(3),
        flag: Some("ALLOW_TO_FAILOVER".into()),
    });
    let r = render(&i).unwrap();
    assert!(r.pool_hba_conf.contains("0.0.0.0/0  scram-sha-256\n"));
    assert!(r.pool_hba_conf.contains("::/0       scram-sha-256\n"));
    let conf = &r.pgpool_conf;
    assert_eq!(value_of(conf, "backend_flag1"), ["'DISALLOW_TO_FAILOVER'"]);
    assert_eq!(value_of(conf, "backend_flag2"), ["'ALLOW_TO_FAILOVER'"]);
    assert_eq!(value_of(conf, "backend_weight2"), ["3"]);
    assert_eq!(value_of(conf, "backend_port2"), ["5433"]);
    assert_eq!(value_of(conf, "load_balance_mode"), ["on"]);
}

#[test]
fn overrides_replace_in_place_and_append_new_keys() {
    let mut i = input();
    i.user_overrides = parse_pgpool_conf(
        "num_init_children = 100\nLOG_CONNECTIONS = on\nload_balance_mode = on\n\
         log_line_prefix = '%m: '\nlog_connections = off\n",
    )
    .unwrap();
    let conf = render(&i).unwrap().pgpool_conf;
    assert_eq!(value_of(&conf, "num_init_children"), ["100"]);
    assert_eq!(value_of(&conf, "load_balance_mode"), ["on"]);
    assert_eq!(value_of(&conf, "log_connections"), ["off"]);
    assert_eq!(value_of(&conf, "log_line_prefix"), ["'%m: '"]);
    let overrides_at = conf.find("# User overrides").unwrap();
    assert!(conf.find("log_connections").unwrap() > overrides_at);
    assert!(conf.find("num_init_children").unwrap() < overrides_at);
}

#[test]
fn an_override_cannot_inject_lines() {
    let mut i = input();
    i.user_overrides = vec![(
        "log_line_prefix".into(),
        "x'\nbackend_hostname1 = 'evil".into(),
    )];
    assert!(matches!(
        render(&i),
        Err(ConfigError::InvalidValue { key, .. }) if key == "log_line_prefix"
    ));
    i.user_overrides = vec![("bad key\nport".into(), "1".into())];
    assert!(matches!(render(&i), Err(ConfigError::InvalidKey { .. })));
}

#[test]
fn managed_parameters_are_refused() {
    for key in [
        "port",
        "pool_passwd",
        "unix_socket_directories",
        "logdir",
        "Work_Dir",
    ] {
        let mut i = input();
        i.user_overrides = vec![(key.into(), "1".into())];
        assert_eq!(
            render(&i),
            Err(ConfigError::ManagedParameter {
                key: key.to_ascii_lowercase()
            })
        );
    }
}

#[test]
fn pool_passwd_holds_all_users_once() {
    let mut i = input();
    i.extra_users = vec![
        ("app".into(), "app-pass".into()),
        ("postgres".into(), "backend-pass".into()),
    ];
    let r = render(&i).unwrap();
    let users: Vec<&str> = r
        .pool_passwd
        .lines()
        .map(|l| l.split_once(':').unwrap().0)
        .collect();
    assert_eq!(users, ["postgres", "app"]);
    for line in r.pool_passwd.lines() {
        assert!(line.split_once(':').unwrap().1.starts_with("AES"));
    }
    i.extra_users = vec![("postgres".into(), "other".into())];
    assert_eq!(
        render(&i),
        Err(ConfigError::DuplicateUser {
            user: "postgres".into()
        })
    );
}

#[test]
fn bad_credentials_and_settings_are_refused() {
    let check = |f: &dyn Fn(&mut RenderInput)| {
        let mut i = input();
        f(&mut i);
        render(&i).unwrap_err()
    };
    assert!(matches!(
        check(&|i| i.backend_user = "a:b".into()),
        ConfigError::InvalidCredentials { .. }
    ));
    assert!(matches!(
        check(&|i| i.backend_user = String::new()),
        ConfigError::InvalidCredentials { .. }
    ));
    assert!(matches!(
        check(&|i| i.backend_password = String::new()),
        ConfigError::InvalidCredentials { .. }
    ));
    assert!(matches!(
        check(&|i| i.pcp_user = "p\ncp".into()),
        ConfigError::InvalidCredentials { .. }
    ));
    assert!(matches!(
        check(&|i| i.pcp_password = String::new()),
        ConfigError::InvalidCredentials { .. }
    ));
    assert!(matches!(
        check(&|i| i.pool_key = String::new()),
        ConfigError::InvalidPoolKey { .. }
    ));
    assert!(matches!(
        check(&|i| i.pool_key = "key\n".into()),
        ConfigError::InvalidPoolKey { .. }
    ));
    assert!(matches!(
        check(&|i| i.backends.clear()),
        ConfigError::NoBackends
    ));
    assert!(matches!(
        check(&|i| i.backends[0].host = "a b".into()),
        ConfigError::InvalidBackend { index: 0, .. }
    ));
    assert!(matches!(
        check(&|i| i.backends[0].port = 0),
        ConfigError::InvalidBackend { .. }
    ));
    assert!(matches!(
        check(&|i| i.backends[0].flag = Some("ALWAYS_MASTER".into())),
        ConfigError::InvalidBackend { .. }
    ));
    assert!(matches!(
        check(&|i| i.max_pool = Some(0)),
        ConfigError::InvalidSetting { .. }
    ));
    assert!(matches!(
        check(&|i| i.port = 80),
        ConfigError::InvalidSetting { .. }
    ));
    assert!(matches!(
        check(&|i| i.pcp_port = i.port),
        ConfigError::InvalidSetting { .. }
    ));
    assert!(matches!(
        check(&|i| i.paths.run_dir = PathBuf::from("relative/run")),
        ConfigError::InvalidPath { .. }
    ));
    assert!(matches!(
        check(&|i| i.paths.config_dir = PathBuf::from("/etc/it's")),
        ConfigError::InvalidPath { .. }
    ));
}

#[test]
fn paths_and_args_follow_the_pod_contract() {
    assert_eq!(
        pgpool_args(&Paths::default()),
        [
            "-n",
            "-D",
            "-f",
            "/etc/pgpool-config/pgpool.conf",
            "-F",
            "/etc/pgpool-config/pcp.conf",
            "-a",
            "/etc/pgpool-config/pool_hba.conf",
            "-k",
            "/var/run/pgpool-key/.pgpoolkey",
        ]
    );
}

#[test]
fn hash_is_stable_and_sensitive() {
    let r = render(&input()).unwrap();
    assert_eq!(config_hash(&r), config_hash(&render(&input()).unwrap()));
    assert_eq!(config_hash(&r).len(), 64);
    let mut other = r.clone();
    other.pool_passwd.push('\n');
    assert_ne!(config_hash(&r), config_hash(&other));
    let mut moved = r.clone();
    moved.pcp_conf = format!("{}{}", moved.pcp_conf, moved.pool_key);
    moved.pool_key = String::new();
    assert_ne!(config_hash(&r), config_hash(&moved));
    assert_eq!(r.secret_data().len(), 5);
}

#[test]
fn generated_pool_keys_are_usable_and_differ() {
    let a = generate_pool_key();
    let b = generate_pool_key();
    assert_eq!(a.len(), 40);
    assert_ne!(a, b);
    assert!(check_pool_key(&a).is_ok());
}
