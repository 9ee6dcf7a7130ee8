//! Parameter tables: the defaults the operator sets, the parameters the pod contract
//! depends on, and the `backend_flag` tokens.

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
    "ssl",
    "ssl_cert",
    "ssl_key",
    "ssl_ca_cert",
];

/// Default flag of the first backend: the primary, never failed over.
pub const PRIMARY_FLAG: &str = "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER";
/// Default flag of further backends (standbys).
pub const STANDBY_FLAG: &str = "DISALLOW_TO_FAILOVER";
pub(crate) const FLAG_TOKENS: &[&str] = &[
    "ALWAYS_PRIMARY",
    "DISALLOW_TO_FAILOVER",
    "ALLOW_TO_FAILOVER",
];
