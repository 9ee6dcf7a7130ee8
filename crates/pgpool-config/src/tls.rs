//! TLS: the `ssl*` parameters of `pgpool.conf` and the `pool_hba.conf` lines that follow the
//! client SSL policy.
//!
//! pgpool-II has one switch, `ssl`, for both sides: with it on, pgpool offers TLS to clients
//! when `ssl_cert` and `ssl_key` are set, and asks every backend for TLS (falling back to
//! plain text when the backend declines). `ssl_ca_cert` verifies client certificates (the
//! `cert` method) and, when set, the backends' certificates too, so the CA file is a bundle of
//! the Pgpool's CA and the backend's CA. All `ssl*` parameters are read at server start only:
//! new certificates take a pod restart (checked on the real binaries,
//! `crates/provisioner/tests/real_pgpool/tls.rs`).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::contract::KEY_DIR;
use crate::error::ConfigError;
use crate::input::{ClientAuthMode, RenderInput};
use crate::pgpool_conf::Value;

/// File name of the server certificate (also the Secret key, as cert-manager writes it).
pub const TLS_CERT_FILE: &str = "tls.crt";
/// File name of the server private key.
pub const TLS_KEY_FILE: &str = "tls.key";
/// File name of the CA bundle (clients' CA and the backend's CA).
pub const TLS_CA_FILE: &str = "ca.crt";

/// What clients must do about TLS, from the Pgpool's `sslMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientTls {
    /// `disable`: plain text only (pgpool offers no TLS).
    #[default]
    Disabled,
    /// `allow`, `prefer`: TLS offered, plain text accepted.
    Optional,
    /// `require`, `verify-ca`, `verify-full`: TCP clients must use TLS (`hostssl` only).
    Required,
}

/// The files pgpool reads for TLS (in the pod: copied by the init container, mode 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Server certificate (chain) pgpool presents to clients.
    pub cert: PathBuf,
    /// Its private key (pgpool does not check its mode; the pod keeps it 0600).
    pub key: PathBuf,
    /// CA bundle that verifies client certificates and the backends' certificates.
    pub ca: Option<PathBuf>,
}

impl Default for TlsFiles {
    /// The pod contract: the files in [`KEY_DIR`].
    fn default() -> Self {
        let dir = PathBuf::from(KEY_DIR);
        Self {
            cert: dir.join(TLS_CERT_FILE),
            key: dir.join(TLS_KEY_FILE),
            ca: Some(dir.join(TLS_CA_FILE)),
        }
    }
}

/// The TLS part of a [`RenderInput`](crate::RenderInput).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInput {
    /// Client TLS policy; anything but [`ClientTls::Disabled`] needs `files`.
    pub clients: ClientTls,
    /// Server certificate, key and CA; `None` when pgpool has no certificate.
    pub files: Option<TlsFiles>,
    /// Ask the backends for TLS (the AppBinding's `sslmode` is not `disable`).
    pub backend: bool,
}

impl TlsInput {
    /// Whether pgpool's `ssl` switch is on.
    pub fn ssl_on(&self) -> bool {
        self.files.is_some() || self.backend
    }
}

/// The `ssl*` parameters, in the order they are written.
pub(crate) fn conf_entries(tls: &TlsInput) -> Vec<(&'static str, Value)> {
    let path = |p: &PathBuf| Value::Str(p.to_string_lossy().into_owned());
    let mut entries = vec![("ssl", Value::Bool(tls.ssl_on()))];
    if let Some(files) = &tls.files {
        entries.push(("ssl_cert", path(&files.cert)));
        entries.push(("ssl_key", path(&files.key)));
        if let Some(ca) = &files.ca {
            entries.push(("ssl_ca_cert", path(ca)));
        }
    }
    entries
}

/// TLS for clients and `cert` authentication need a certificate; `cert` needs the CA that
/// signs client certificates; the paths must be writable into `pgpool.conf`.
pub(crate) fn check(input: &RenderInput) -> Result<(), ConfigError> {
    let tls = &input.tls;
    let invalid = |reason: &str| ConfigError::InvalidSetting {
        field: "tls".into(),
        reason: reason.into(),
    };
    if tls.clients != ClientTls::Disabled && tls.files.is_none() {
        return Err(invalid(
            "TLS for clients needs a server certificate and key",
        ));
    }
    if input.auth_mode == ClientAuthMode::Cert {
        if tls.files.as_ref().and_then(|f| f.ca.as_ref()).is_none() {
            return Err(invalid(
                "client certificate authentication needs TLS with a CA certificate",
            ));
        }
        if tls.clients == ClientTls::Disabled {
            return Err(invalid(
                "client certificate authentication needs TLS for clients, not sslMode disable",
            ));
        }
    }
    if let Some(files) = &tls.files {
        for path in [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
            .into_iter()
            .flatten()
        {
            let text = path.to_string_lossy();
            if !path.is_absolute()
                || text.contains(['\'', '"'])
                || text.chars().any(char::is_control)
            {
                return Err(ConfigError::InvalidPath {
                    path: text.into_owned(),
                    reason: "not absolute, or contains a quote or control character".into(),
                });
            }
        }
    }
    Ok(())
}

/// `pool_hba.conf`: the local socket is trusted (in-pod probes and tools); TCP clients use
/// `host` lines (TLS optional) or `hostssl` lines (TLS required) with the client
/// authentication method. `cert` always takes `hostssl`: a certificate needs TLS.
pub(crate) fn render_pool_hba(mode: ClientAuthMode, tls: &TlsInput) -> String {
    let method = mode.hba_method();
    let kind = if mode == ClientAuthMode::Cert || tls.clients == ClientTls::Required {
        "hostssl"
    } else {
        "host   "
    };
    let mut out = String::new();
    out.push_str("# pool_hba.conf generated by the pgpool operator; do not edit.\n");
    out.push_str("# TYPE  DATABASE  USER  ADDRESS    METHOD\n");
    out.push_str("# in-pod probes and tools over the Unix socket\n");
    out.push_str("local   all       all              trust\n");
    let _ = writeln!(out, "{kind} all       all   0.0.0.0/0  {method}");
    let _ = writeln!(out, "{kind} all       all   ::/0       {method}");
    out
}
