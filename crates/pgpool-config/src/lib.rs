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

mod checks;
mod contract;
mod error;
mod input;
mod parameters;
mod pgpool_conf;
mod secrets;
mod tls;
mod tls_input;
mod version;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use checks::{check_paths, check_pool_key, check_user_name, collect_users};
use pgpool_conf::render_pgpool_conf;

pub use contract::{
    CONFIG_DIR, KEY_DIR, KEY_FILE, KEY_PCP_CONF, KEY_PGPOOL_CONF, KEY_POOL_HBA_CONF, KEY_POOL_KEY,
    KEY_POOL_PASSWD, PGPOOL_BINARY, PID_FILE_NAME, RUN_DIR,
};
pub use error::ConfigError;
pub use input::{Backend, ClientAuthMode, Paths, RenderInput, pgpool_args};
pub use parameters::{
    DEFAULT_MAX_POOL, DEFAULT_NUM_INIT_CHILDREN, DEFAULT_PCP_PORT, DEFAULT_PORT,
    MANAGED_PARAMETERS, MAX_BACKENDS, PRIMARY_FLAG, STANDBY_FLAG,
};
pub use pgpool_conf::{Value, check_override, check_overrides, parse_pgpool_conf, render_problem};
pub use secrets::{aes_secret, decrypt_aes_secret, pcp_md5};
pub use tls_input::{ClientTls, TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, TlsFiles, TlsInput};
pub use version::{MIN_SUPPORTED, PgpoolRelease, RENAMED_PARAMETERS, RenamedParameter, renamed};

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
    tls::check(input)?;

    Ok(Rendered {
        pgpool_conf: render_pgpool_conf(input)?,
        pool_hba_conf: tls::render_pool_hba(input.auth_mode, &input.tls),
        pcp_conf: format!("{}:{}\n", input.pcp_user, pcp_md5(&input.pcp_password)),
        pool_passwd: users
            .iter()
            .map(|(user, password)| format!("{user}:{}\n", aes_secret(&input.pool_key, password)))
            .collect(),
        pool_key: input.pool_key.clone(),
    })
}
