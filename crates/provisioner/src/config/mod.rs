//! Rendering of the Pgpool-II configuration files the provisioner stores in the
//! `<name>-config` Secret: `pgpool.conf`, `pool_hba.conf`, `pcp.conf`, `pool_passwd` and the
//! pool key (`pgpoolkey`).
//!
//! Everything here is pure: the controller collects the facts (catalog version, backends,
//! credentials, user overrides) into a [`RenderInput`], calls [`render`], stores the
//! [`Rendered`] texts and puts [`config_hash`] into the pod template. No randomness happens
//! inside `render`; the pool key is an input ([`generate_pool_key`] makes one).
//!
//! # Pod contract
//! The pod template (written elsewhere) and this module agree on these paths:
//! - the config Secret is mounted read-only at [`CONFIG_DIR`] with the keys [`KEY_PGPOOL_CONF`],
//!   [`KEY_POOL_HBA_CONF`], [`KEY_PCP_CONF`], [`KEY_POOL_PASSWD`], [`KEY_POOL_KEY`];
//! - an init container copies `pgpoolkey` to [`KEY_FILE`] with mode 0600 (pgpool refuses a key
//!   file with group or world bits);
//! - one emptyDir at [`RUN_DIR`] holds the sockets, the pid file and `pgpool_status`;
//! - the container command is [`PGPOOL_BINARY`] followed by [`pgpool_args`].
//!
//! The readiness probe must log in as a user that exists on the backend (for example
//! `pg_isready -h /var/run/pgpool -p 9999 -U <backend user> -d postgres`): through pgpool,
//! `pg_isready` as an unknown user reports "no response" even though pgpool is up.

mod pgpool_conf;
mod secrets;
mod version;

#[cfg(test)]
mod golden_tests;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use pgpool_conf::{Value, parse_pgpool_conf};
pub use secrets::{aes_secret, decrypt_aes_secret, pcp_md5};
pub use version::{MIN_SUPPORTED, PgpoolRelease, RENAMED_PARAMETERS, RenamedParameter, renamed};

/// Where the config Secret is mounted in the pgpool container.
pub const CONFIG_DIR: &str = "/etc/pgpool-config";
/// Directory (an emptyDir) the init container copies the pool key into.
pub const KEY_DIR: &str = "/var/run/pgpool-key";
/// The pool key file pgpool reads (`-k`), mode 0600.
pub const KEY_FILE: &str = "/var/run/pgpool-key/.pgpoolkey";
/// The emptyDir for sockets, pid file and `pgpool_status`.
pub const RUN_DIR: &str = "/var/run/pgpool";
/// The pgpool binary in `ghcr.io/appscode-images/pgpool2` images; run directly as PID 1.
pub const PGPOOL_BINARY: &str = "/opt/pgpool-II/bin/pgpool";

/// Secret key (and file name under [`CONFIG_DIR`]) of `pgpool.conf`.
pub const KEY_PGPOOL_CONF: &str = "pgpool.conf";
/// Secret key (and file name) of `pool_hba.conf`.
pub const KEY_POOL_HBA_CONF: &str = "pool_hba.conf";
/// Secret key (and file name) of `pcp.conf`.
pub const KEY_PCP_CONF: &str = "pcp.conf";
/// Secret key (and file name) of `pool_passwd`.
pub const KEY_POOL_PASSWD: &str = "pool_passwd";
/// Secret key (and file name) of the pool key.
pub const KEY_POOL_KEY: &str = "pgpoolkey";
/// File name of the pid file inside the run directory.
pub const PID_FILE_NAME: &str = "pgpool.pid";

/// Client port of pgpool (the `primary` Service port).
pub const DEFAULT_PORT: u16 = 9999;
/// PCP port of pgpool (the `pcp` Service port; the liveness probe's target).
pub const DEFAULT_PCP_PORT: u16 = 9595;
/// Default `num_init_children`: pgpool's own default. It is the hard cap on concurrent client
/// sessions per pod (further clients wait in the listen queue), so it is also roughly the
/// number of backend connections one pod holds.
pub const DEFAULT_NUM_INIT_CHILDREN: u32 = 32;
/// Default `max_pool`: cached backend connections per child, one per distinct
/// (user, database) pair. Worst case per pod is `num_init_children x max_pool` backend
/// connections (64 with the defaults), which keeps one pod below PostgreSQL's default
/// `max_connections = 100`; pgpool's own default of 4 would allow 128.
pub const DEFAULT_MAX_POOL: u32 = 2;
/// pgpool accepts at most this many backends (`MAX_NUM_BACKENDS`).
pub const MAX_BACKENDS: usize = 128;

/// Parameters the pod contract depends on; a user override of one of them is refused with
/// [`ConfigError::ManagedParameter`] because the pod would no longer match its Services,
/// probes or volumes.
pub const MANAGED_PARAMETERS: &[&str] = &[
    "port",
    "pcp_port",
    "socket_dir",
    "unix_socket_directories",
    "pcp_socket_dir",
    "pid_file_name",
    "logdir",
    "work_dir",
    "pool_passwd",
    "use_watchdog",
    "backend_clustering_mode",
];

/// Errors of configuration rendering; each names what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The catalog version is not a version number.
    #[error("Pgpool version {version:?} is not a version number like 4.5.3")]
    InvalidVersion {
        /// The text given.
        version: String,
    },
    /// The version is older than we can render for.
    #[error("Pgpool version {version} is not supported: the oldest supported version is {minimum}")]
    UnsupportedVersion {
        /// The version given.
        version: String,
        /// [`MIN_SUPPORTED`].
        minimum: String,
    },
    /// No backend at all.
    #[error("no backend: pgpool needs at least one PostgreSQL server")]
    NoBackends,
    /// More backends than pgpool supports.
    #[error("{count} backends given, pgpool supports at most {MAX_BACKENDS}")]
    TooManyBackends {
        /// Number given.
        count: usize,
    },
    /// A backend is unusable.
    #[error("backend {index}: {reason}")]
    InvalidBackend {
        /// Position in the backend list (the pgpool backend number).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A user name or password cannot be written to the auth files.
    #[error("credentials of {what}: {reason}")]
    InvalidCredentials {
        /// Which credentials (`backend user`, `pcp user`, `user "x"`).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The same database user twice with different passwords.
    #[error("user {user:?} is given twice with different passwords")]
    DuplicateUser {
        /// The user name.
        user: String,
    },
    /// The pool key is unusable.
    #[error("pool key: {reason}")]
    InvalidPoolKey {
        /// What is wrong.
        reason: String,
    },
    /// A path is not absolute or not writable into pgpool.conf.
    #[error("path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A port or sizing number is out of range.
    #[error("{field}: {reason}")]
    InvalidSetting {
        /// Which setting.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A user override names a parameter that is not a valid pgpool parameter name.
    #[error("pgpool.conf override {key:?}: not a valid parameter name")]
    InvalidKey {
        /// The key.
        key: String,
    },
    /// A user override sets a parameter the operator manages.
    #[error(
        "pgpool.conf override {key:?} is managed by the operator (the pod's ports, sockets and files depend on it); remove it from the configuration"
    )]
    ManagedParameter {
        /// The key.
        key: String,
    },
    /// A value cannot be written safely into pgpool.conf.
    #[error("pgpool.conf value of {key:?} cannot be used: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A user's pgpool.conf text does not parse.
    #[error("pgpool.conf line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// How clients authenticate to pgpool (the `pool_hba.conf` method for TCP clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// `md5` (the Pgpool default).
    #[default]
    Md5,
    /// `scram-sha-256`.
    Scram,
}

impl ClientAuthMode {
    /// The `pool_hba.conf` method name.
    pub fn hba_method(self) -> &'static str {
        match self {
            ClientAuthMode::Md5 => "md5",
            ClientAuthMode::Scram => "scram-sha-256",
        }
    }
}

/// One PostgreSQL server behind pgpool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Host name (for example the AppBinding Service's FQDN) or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Load-balancing weight; `None` means 1.
    pub weight: Option<u32>,
    /// pgpool `backend_flag`, tokens joined by `|` (`ALWAYS_PRIMARY`, `DISALLOW_TO_FAILOVER`,
    /// `ALLOW_TO_FAILOVER`); `None` means `ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER` for the first
    /// backend and `DISALLOW_TO_FAILOVER` for the others.
    pub flag: Option<String>,
}

impl Backend {
    /// A backend with default weight and flag.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            weight: None,
            flag: None,
        }
    }
}

/// Default flag of the first backend: the primary, never failed over.
pub const PRIMARY_FLAG: &str = "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER";
/// Default flag of further backends (standbys).
pub const STANDBY_FLAG: &str = "DISALLOW_TO_FAILOVER";
const FLAG_TOKENS: &[&str] = &[
    "ALWAYS_PRIMARY",
    "DISALLOW_TO_FAILOVER",
    "ALLOW_TO_FAILOVER",
];

/// Filesystem locations pgpool is told about. [`Paths::default`] is the pod contract; tests
/// point them at temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Directory holding the four config files (the Secret mount).
    pub config_dir: PathBuf,
    /// The pool key file passed with `-k`.
    pub key_file: PathBuf,
    /// Directory for sockets, pid file and `pgpool_status`.
    pub run_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            config_dir: PathBuf::from(CONFIG_DIR),
            key_file: PathBuf::from(KEY_FILE),
            run_dir: PathBuf::from(RUN_DIR),
        }
    }
}

impl Paths {
    /// `pgpool.conf` under the config directory.
    pub fn pgpool_conf(&self) -> PathBuf {
        self.config_dir.join(KEY_PGPOOL_CONF)
    }
    /// `pool_hba.conf` under the config directory.
    pub fn pool_hba_conf(&self) -> PathBuf {
        self.config_dir.join(KEY_POOL_HBA_CONF)
    }
    /// `pcp.conf` under the config directory.
    pub fn pcp_conf(&self) -> PathBuf {
        self.config_dir.join(KEY_PCP_CONF)
    }
    /// `pool_passwd` under the config directory.
    pub fn pool_passwd(&self) -> PathBuf {
        self.config_dir.join(KEY_POOL_PASSWD)
    }
    /// The pid file in the run directory.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join(PID_FILE_NAME)
    }
}

/// The arguments after the pgpool binary: stay in the foreground (`-n`, so pgpool is PID 1
/// and gets SIGTERM), discard a stale `pgpool_status` (`-D`), and the four file paths.
pub fn pgpool_args(paths: &Paths) -> Vec<String> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    vec![
        "-n".into(),
        "-D".into(),
        "-f".into(),
        path(paths.pgpool_conf()),
        "-F".into(),
        path(paths.pcp_conf()),
        "-a".into(),
        path(paths.pool_hba_conf()),
        "-k".into(),
        path(paths.key_file.clone()),
    ]
}

/// Everything the rendering needs; the controller fills it from the Pgpool, the
/// PgpoolVersion and the AppBinding (and its Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderInput {
    /// Catalog version (`spec.version` of the PgpoolVersion), e.g. `4.5.3`; parsed leniently.
    pub version: String,
    /// Backends in pgpool order; the first is the primary.
    pub backends: Vec<Backend>,
    /// Client authentication method in `pool_hba.conf`.
    pub auth_mode: ClientAuthMode,
    /// Database user from the AppBinding Secret: goes into `pool_passwd` and is used as
    /// `sr_check_user` and `health_check_user` (their passwords stay empty, so pgpool takes
    /// them from `pool_passwd`).
    pub backend_user: String,
    /// Password of `backend_user`.
    pub backend_password: String,
    /// Further database users for `pool_passwd` (every user that logs in through pgpool
    /// needs an entry).
    pub extra_users: Vec<(String, String)>,
    /// PCP user (from the auth Secret).
    pub pcp_user: String,
    /// PCP password (from the auth Secret); stored as MD5 in `pcp.conf`.
    pub pcp_password: String,
    /// The pool key that encrypts `pool_passwd` entries: generated once by the controller
    /// (see [`generate_pool_key`]) and kept in the config Secret.
    pub pool_key: String,
    /// User `pgpool.conf` overrides (see [`parse_pgpool_conf`]), applied last: a key we
    /// already set is replaced in place, new keys are appended in the given order.
    pub user_overrides: Vec<(String, String)>,
    /// `num_init_children`; default [`DEFAULT_NUM_INIT_CHILDREN`].
    pub num_init_children: Option<u32>,
    /// `max_pool`; default [`DEFAULT_MAX_POOL`].
    pub max_pool: Option<u32>,
    /// File locations; default the pod contract.
    pub paths: Paths,
    /// Client port; default [`DEFAULT_PORT`].
    pub port: u16,
    /// PCP port; default [`DEFAULT_PCP_PORT`].
    pub pcp_port: u16,
}

impl Default for RenderInput {
    fn default() -> Self {
        Self {
            version: String::new(),
            backends: Vec::new(),
            auth_mode: ClientAuthMode::default(),
            backend_user: String::new(),
            backend_password: String::new(),
            extra_users: Vec::new(),
            pcp_user: String::new(),
            pcp_password: String::new(),
            pool_key: String::new(),
            user_overrides: Vec::new(),
            num_init_children: None,
            max_pool: None,
            paths: Paths::default(),
            port: DEFAULT_PORT,
            pcp_port: DEFAULT_PCP_PORT,
        }
    }
}

/// The rendered file texts, keyed in the config Secret by the `KEY_*` constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `pgpool.conf`.
    pub pgpool_conf: String,
    /// `pool_hba.conf`.
    pub pool_hba_conf: String,
    /// `pcp.conf`.
    pub pcp_conf: String,
    /// `pool_passwd`.
    pub pool_passwd: String,
    /// The pool key (no trailing newline).
    pub pool_key: String,
}

impl Rendered {
    /// The config Secret's data: Secret key -> file text.
    pub fn secret_data(&self) -> BTreeMap<String, String> {
        [
            (KEY_PGPOOL_CONF, &self.pgpool_conf),
            (KEY_POOL_HBA_CONF, &self.pool_hba_conf),
            (KEY_PCP_CONF, &self.pcp_conf),
            (KEY_POOL_PASSWD, &self.pool_passwd),
            (KEY_POOL_KEY, &self.pool_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }
}

/// SHA-256 (lower-case hex) over all rendered files, for the pod-template annotation: any
/// change in any file changes the hash.
pub fn config_hash(r: &Rendered) -> String {
    let mut hasher = Sha256::new();
    for (key, text) in r.secret_data() {
        // length-prefixed so that moving text between files changes the hash
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A fresh random pool key (40 alphanumeric characters) for a new config Secret.
pub fn generate_pool_key() -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// Renders all files. Deterministic: the same input gives byte-identical output.
pub fn render(input: &RenderInput) -> Result<Rendered, ConfigError> {
    let release = PgpoolRelease::parse(&input.version)?;
    release.ensure_supported()?;
    check_pool_key(&input.pool_key)?;
    check_paths(&input.paths)?;
    let users = collect_users(input)?;
    check_user_name("pcp user", &input.pcp_user)?;
    if input.pcp_password.is_empty() {
        return Err(ConfigError::InvalidCredentials {
            what: "pcp user".into(),
            reason: "the password is empty".into(),
        });
    }

    Ok(Rendered {
        pgpool_conf: render_pgpool_conf(input)?,
        pool_hba_conf: render_pool_hba(input.auth_mode),
        pcp_conf: format!("{}:{}\n", input.pcp_user, pcp_md5(&input.pcp_password)),
        pool_passwd: users
            .iter()
            .map(|(user, password)| format!("{user}:{}\n", aes_secret(&input.pool_key, password)))
            .collect(),
        pool_key: input.pool_key.clone(),
    })
}

fn check_pool_key(key: &str) -> Result<(), ConfigError> {
    let reason = if key.is_empty() {
        "it is empty"
    } else if key.len() > 1024 {
        "it is longer than 1024 bytes"
    } else if key.chars().any(|c| c.is_control()) || key.trim() != key {
        "it contains a line break, a control character or leading/trailing blanks, which pgpool would not read back"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidPoolKey {
        reason: reason.into(),
    })
}

fn check_paths(paths: &Paths) -> Result<(), ConfigError> {
    for path in [&paths.config_dir, &paths.key_file, &paths.run_dir] {
        let text = path.to_string_lossy();
        let fail = |reason: &str| ConfigError::InvalidPath {
            path: text.to_string(),
            reason: reason.into(),
        };
        if !path.is_absolute() {
            return Err(fail("not absolute"));
        }
        if path.to_str().is_none() {
            return Err(fail("not valid UTF-8"));
        }
        if text.contains(['\'', ',', '"']) || text.chars().any(|c| c.is_control()) {
            return Err(fail("contains a quote, comma or control character"));
        }
    }
    Ok(())
}

/// A user name that can stand before the `:` of a pool_passwd / pcp.conf line.
fn check_user_name(what: &str, user: &str) -> Result<(), ConfigError> {
    let reason = if user.is_empty() {
        "the user name is empty"
    } else if user.contains(':') {
        "the user name contains ':', which separates name and secret in the file"
    } else if user.chars().any(|c| c.is_control()) {
        "the user name contains a line break or control character"
    } else if user.contains('\'') {
        "the user name contains a single quote, which pgpool.conf cannot hold"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidCredentials {
        what: what.into(),
        reason: reason.into(),
    })
}

/// Backend user first, then the extra users; identical duplicates dropped.
fn collect_users(input: &RenderInput) -> Result<Vec<(&str, &str)>, ConfigError> {
    let mut users: Vec<(&str, &str)> = Vec::new();
    let all = std::iter::once((
        "backend user".to_string(),
        &input.backend_user,
        &input.backend_password,
    ))
    .chain(
        input
            .extra_users
            .iter()
            .map(|(u, p)| (format!("user {u:?}"), u, p)),
    );
    for (what, user, password) in all {
        check_user_name(&what, user)?;
        if password.is_empty() {
            return Err(ConfigError::InvalidCredentials {
                what,
                reason: "the password is empty".into(),
            });
        }
        match users.iter().find(|(u, _)| *u == user.as_str()) {
            Some((_, p)) if *p == password.as_str() => {}
            Some(_) => {
                return Err(ConfigError::DuplicateUser {
                    user: user.to_string(),
                });
            }
            None => users.push((user, password)),
        }
    }
    Ok(users)
}

fn check_backend(index: usize, backend: &Backend) -> Result<String, ConfigError> {
    let fail = |reason: String| ConfigError::InvalidBackend { index, reason };
    let host = &backend.host;
    if host.is_empty() {
        return Err(fail("the host name is empty".into()));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | ',' | '\\'))
    {
        return Err(fail(format!(
            "host name {host:?} contains characters a host name cannot have"
        )));
    }
    if backend.port == 0 {
        return Err(fail("port 0".into()));
    }
    let flag = match &backend.flag {
        None if index == 0 => PRIMARY_FLAG.to_string(),
        None => STANDBY_FLAG.to_string(),
        Some(flag) => {
            let tokens: Vec<&str> = flag.split('|').map(str::trim).collect();
            if let Some(bad) = tokens.iter().find(|t| !FLAG_TOKENS.contains(t)) {
                return Err(fail(format!(
                    "flag {flag:?}: {bad:?} is not one of {}",
                    FLAG_TOKENS.join(", ")
                )));
            }
            if tokens.contains(&"ALLOW_TO_FAILOVER") && tokens.contains(&"DISALLOW_TO_FAILOVER") {
                return Err(fail(format!(
                    "flag {flag:?}: ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER contradict each other"
                )));
            }
            tokens.join("|")
        }
    };
    Ok(flag)
}

fn check_sizing(field: &str, value: u32) -> Result<i64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::InvalidSetting {
            field: field.into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(i64::from(value))
}

/// An ordered list of `key = value` entries grouped in commented sections.
struct ConfBuilder {
    sections: Vec<(String, Vec<(String, Value)>)>,
}

impl ConfBuilder {
    fn new() -> Self {
        Self {
            sections: Vec::new(),
        }
    }

    fn section(&mut self, title: &str) {
        self.sections.push((title.to_string(), Vec::new()));
    }

    fn set(&mut self, key: impl Into<String>, value: Value) {
        if let Some((_, entries)) = self.sections.last_mut() {
            entries.push((key.into(), value));
        }
    }

    /// Replaces an existing key wherever it is; false when the key is not present.
    fn replace(&mut self, key: &str, value: &Value) -> bool {
        for (_, entries) in &mut self.sections {
            if let Some(entry) = entries.iter_mut().find(|(k, _)| k == key) {
                entry.1 = value.clone();
                return true;
            }
        }
        false
    }

    fn finish(self) -> Result<String, ConfigError> {
        let mut out = String::new();
        out.push_str("# pgpool.conf generated by the pgpool operator; do not edit.\n");
        out.push_str("# Put overrides into spec.configuration of the Pgpool instead.\n");
        for (title, entries) in self.sections {
            if entries.is_empty() {
                continue;
            }
            let _ = write!(out, "\n# {title}\n");
            for (key, value) in entries {
                let _ = writeln!(out, "{key} = {}", value.render(&key)?);
            }
        }
        Ok(out)
    }
}

/// The same text for every supported release (see `version::RENAMED_PARAMETERS`): an update
/// or a rollback restarts pods on another binary with this file as it is.
fn render_pgpool_conf(input: &RenderInput) -> Result<String, ConfigError> {
    if input.backends.is_empty() {
        return Err(ConfigError::NoBackends);
    }
    if input.backends.len() > MAX_BACKENDS {
        return Err(ConfigError::TooManyBackends {
            count: input.backends.len(),
        });
    }
    for (field, port) in [("port", input.port), ("pcp_port", input.pcp_port)] {
        // pgpool refuses ports below 1024 for both parameters
        if port < 1024 {
            return Err(ConfigError::InvalidSetting {
                field: field.into(),
                reason: format!("{port} is below 1024, which pgpool does not accept"),
            });
        }
    }
    if input.port == input.pcp_port {
        return Err(ConfigError::InvalidSetting {
            field: "pcp_port".into(),
            reason: "the client port and the PCP port must differ".into(),
        });
    }
    let num_init_children = check_sizing(
        "num_init_children",
        input.num_init_children.unwrap_or(DEFAULT_NUM_INIT_CHILDREN),
    )?;
    let max_pool = check_sizing("max_pool", input.max_pool.unwrap_or(DEFAULT_MAX_POOL))?;
    let dir = |p: &Path| Value::Str(p.to_string_lossy().into_owned());
    let run_dir = dir(&input.paths.run_dir);
    let str_value = |s: &str| Value::Str(s.to_string());

    let mut conf = ConfBuilder::new();
    conf.section("Clustering mode");
    conf.set(
        "backend_clustering_mode",
        str_value("streaming_replication"),
    );

    conf.section("Connections");
    conf.set("listen_addresses", str_value("*"));
    conf.set("port", Value::Int(i64::from(input.port)));
    // Both spellings of each renamed parameter: one file for every release (see
    // `version::RENAMED_PARAMETERS`).
    conf.set("socket_dir", run_dir.clone());
    conf.set("unix_socket_directories", run_dir.clone());
    conf.set("pcp_listen_addresses", str_value("*"));
    conf.set("pcp_port", Value::Int(i64::from(input.pcp_port)));
    conf.set("pcp_socket_dir", run_dir.clone());

    conf.section("Backends (the first one is the primary)");
    for (index, backend) in input.backends.iter().enumerate() {
        let flag = check_backend(index, backend)?;
        conf.set(
            format!("backend_hostname{index}"),
            Value::Str(backend.host.clone()),
        );
        conf.set(
            format!("backend_port{index}"),
            Value::Int(i64::from(backend.port)),
        );
        conf.set(
            format!("backend_weight{index}"),
            Value::Int(i64::from(backend.weight.unwrap_or(1))),
        );
        conf.set(format!("backend_flag{index}"), Value::Str(flag));
    }

    conf.section("Authentication");
    conf.set("enable_pool_hba", Value::Bool(true));
    conf.set("pool_passwd", dir(&input.paths.pool_passwd()));
    conf.set("allow_clear_text_frontend_auth", Value::Bool(false));
    conf.set("ssl", Value::Bool(false));

    conf.section("Pools");
    conf.set("num_init_children", Value::Int(num_init_children));
    conf.set("max_pool", Value::Int(max_pool));

    conf.section("Files (the run directory is an emptyDir; the root filesystem is read-only)");
    conf.set("pid_file_name", dir(&input.paths.pid_file()));
    conf.set("logdir", run_dir.clone());
    conf.set("work_dir", run_dir);

    conf.section("Logging");
    conf.set("log_destination", str_value("stderr"));

    conf.section("Load balancing");
    conf.set("load_balance_mode", Value::Bool(input.backends.len() > 1));

    conf.section("Streaming replication check (off; the user still has to be set, from 4.6 on)");
    conf.set("sr_check_period", Value::Int(0));
    conf.set("sr_check_user", Value::Str(input.backend_user.clone()));
    conf.set("sr_check_password", str_value(""));

    conf.section("Health check and failover (off: the backends' own operator handles failover)");
    conf.set("health_check_period", Value::Int(0));
    conf.set("health_check_user", Value::Str(input.backend_user.clone()));
    conf.set("health_check_password", str_value(""));
    conf.set("failover_on_backend_error", Value::Bool(false));
    conf.set("failover_command", str_value(""));
    conf.set("failback_command", str_value(""));
    conf.set("auto_failback", Value::Bool(false));

    conf.section("Watchdog (off: each pod is an independent pooler)");
    conf.set("use_watchdog", Value::Bool(false));

    let mut seen = HashSet::new();
    let mut appended = Vec::new();
    for (raw_key, value) in &input.user_overrides {
        let key = raw_key.trim().to_ascii_lowercase();
        if !pgpool_conf::is_valid_key(&key) {
            return Err(ConfigError::InvalidKey {
                key: raw_key.clone(),
            });
        }
        if MANAGED_PARAMETERS.contains(&key.as_str()) {
            return Err(ConfigError::ManagedParameter { key });
        }
        let value = Value::Raw(value.clone());
        // validate now so the error names the override, not a later line
        value.render(&key)?;
        if !conf.replace(&key, &value) {
            if seen.insert(key.clone()) {
                appended.push((key, value));
            } else if let Some(entry) = appended.iter_mut().find(|(k, _)| *k == key) {
                entry.1 = value;
            }
        }
    }
    if !appended.is_empty() {
        conf.section("User overrides");
        for (key, value) in appended {
            conf.set(key, value);
        }
    }
    conf.finish()
}

fn render_pool_hba(mode: ClientAuthMode) -> String {
    let method = mode.hba_method();
    let mut out = String::new();
    out.push_str("# pool_hba.conf generated by the pgpool operator; do not edit.\n");
    out.push_str("# TYPE  DATABASE  USER  ADDRESS    METHOD\n");
    out.push_str("# in-pod probes and tools over the Unix socket\n");
    out.push_str("local   all       all              trust\n");
    let _ = writeln!(out, "host    all       all   0.0.0.0/0  {method}");
    let _ = writeln!(out, "host    all       all   ::/0       {method}");
    out
}

#[cfg(test)]
mod tests {
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
}
