//! What the rendering is given: the backends, the client authentication mode, the paths
//! pgpool is told about and the rest of the [`RenderInput`].

use std::path::PathBuf;

use super::contract::{
    CONFIG_DIR, KEY_FILE, KEY_PCP_CONF, KEY_PGPOOL_CONF, KEY_POOL_HBA_CONF, KEY_POOL_PASSWD,
    PID_FILE_NAME, RUN_DIR,
};
use super::parameters::{DEFAULT_PCP_PORT, DEFAULT_PORT};
use super::tls_input::TlsInput;

/// How clients authenticate to pgpool (the `pool_hba.conf` method for TCP clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// `md5` (the Pgpool default).
    #[default]
    Md5,
    /// `scram-sha-256`.
    Scram,
    /// `cert`: a client certificate signed by the CA in `ssl_ca_cert` whose CN is the user
    /// name (TLS only).
    Cert,
}

impl ClientAuthMode {
    /// The `pool_hba.conf` method name.
    pub fn hba_method(self) -> &'static str {
        match self {
            ClientAuthMode::Md5 => "md5",
            ClientAuthMode::Scram => "scram-sha-256",
            ClientAuthMode::Cert => "cert",
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
    /// `num_init_children`; default [`DEFAULT_NUM_INIT_CHILDREN`](super::parameters::DEFAULT_NUM_INIT_CHILDREN).
    pub num_init_children: Option<u32>,
    /// `max_pool`; default [`DEFAULT_MAX_POOL`](super::parameters::DEFAULT_MAX_POOL).
    pub max_pool: Option<u32>,
    /// File locations; default the pod contract.
    pub paths: Paths,
    /// Client port; default [`DEFAULT_PORT`].
    pub port: u16,
    /// PCP port; default [`DEFAULT_PCP_PORT`].
    pub pcp_port: u16,
    /// TLS to clients and backends; default none.
    pub tls: TlsInput,
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
            tls: TlsInput::default(),
        }
    }
}
