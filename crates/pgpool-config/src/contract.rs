//! The pod contract: where the pod template mounts and finds the files (see the module
//! documentation of [`super`]).

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
